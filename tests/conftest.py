"""Shared test configuration: small, deterministic, CPU by default."""

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Seed torch and keep tests reproducible (no global state leaks between tests)."""
    import torch

    torch.manual_seed(0)
    yield
