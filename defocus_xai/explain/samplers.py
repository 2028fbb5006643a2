"""Random draws of the sampling attribution methods: per-sample seeds, shap's draws, isolated global RNGs.

The draws of sample ``i`` depend on ``(seed, i)`` only, so batch size, sharding and resuming never change a
value (see ``docs/attribution.md``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

__all__ = ["sample_seed", "shap_draws", "isolated_rng"]


def sample_seed(seed: int, index: int) -> int:
    """The 32-bit seed of the random draws of sample ``index`` under the user's ``seed``.

    Derived with :class:`numpy.random.SeedSequence` from ``(seed, index)``; pass it as shap's ``rseed`` to
    reproduce a value of :func:`~defocus_xai.explain.attribute` with a direct ``shap.GradientExplainer`` call.

    Examples
    --------
    >>> sample_seed(0, 5) == sample_seed(0, 5) != sample_seed(0, 6)
    True
    """
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def shap_draws(rseed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """shap GradientExplainer's ``n`` draws for ``rseed`` over ``k`` background rows.

    Per draw, a background row and then ``t ~ U(0, 1)``, from numpy's legacy generator (shap seeds the
    global one with ``np.random.seed(rseed)``: the same stream).

    Examples
    --------
    >>> rows, ts = shap_draws(1, 3, 4)
    >>> rows.shape, bool(((0 <= ts) & (ts < 1)).all())
    ((3,), True)
    """
    rs = np.random.RandomState(rseed)
    rows = np.empty(n, np.int64)
    ts = np.empty(n, np.float64)
    for j in range(n):
        rows[j] = rs.choice(k)
        ts[j] = rs.uniform()
    return rows, ts


@contextlib.contextmanager
def isolated_rng(device: torch.device) -> Iterator[None]:
    """Save numpy's and torch's global random states (and the CUDA one of ``device``); restore them on exit.

    shap reseeds numpy globally and captum draws from the global generators: this keeps a caller's random
    streams unchanged by an attribution.

    Examples
    --------
    >>> before = np.random.get_state()[1][:3].tolist()
    >>> with isolated_rng(torch.device("cpu")):
    ...     np.random.seed(123)
    >>> np.random.get_state()[1][:3].tolist() == before
    True
    """
    np_state = np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)
