"""The estimator's compiled CPU path (``compiled=True``) against the eager code, its fallback and switch;
the reference recipe's running-sum box filter."""

import warnings

import numpy as np
import pytest
import torch

import defocus_xai as dx
from tests.test_defocus import layered_scene


@pytest.mark.slow
def test_compiled_path_matches_eager():
    # Compiles two graphs (about a minute on a cold cache); the tolerance is docs/estimator.md's.
    x = torch.from_numpy(np.stack([layered_scene(64, seed=s)[0] for s in (0, 1)]))
    noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    x = (x[:, None].expand(2, 3, 64, 64) + 0.01 * noise).clamp(0, 1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*compiled path failed.*")  # a fallback would pass trivially
        eager = dx.estimate_defocus(x, size=None, compiled=False)
        fast = dx.estimate_defocus(x, size=None, compiled=True)
    assert float((fast.edges == eager.edges).float().mean()) > 0.999
    both = (fast.edges > 0) & (eager.edges > 0)
    assert float((fast.sparse - eager.sparse)[both].abs().max()) < 1e-3
    assert float((fast.dense - eager.dense).abs().median()) < 1e-4
    assert float((fast.dense - eager.dense).abs().max()) < 0.1


def test_compiled_path_falls_back_to_eager(monkeypatch):
    from defocus_xai.defocus import fused

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_FAILED", [])
    monkeypatch.setattr(fused, "_COMPILED", {})
    monkeypatch.setattr(fused, "_READY", set())
    monkeypatch.setattr(torch, "compile", broken)
    x = torch.from_numpy(layered_scene(48, seed=2)[0]).expand(1, 3, 48, 48)
    with torch.no_grad():
        eager = dx.estimate_defocus(x, size=None)
        with pytest.warns(RuntimeWarning, match="compiled path failed"):
            fast = dx.estimate_defocus(x, size=None, compiled=True)
    assert torch.equal(fast.dense, eager.dense) and torch.equal(fast.edges, eager.edges)
    # with gradients the compiled path is not taken: the maps stay differentiable
    img = x.clone().requires_grad_(True)
    dx.estimate_defocus(img, size=None, compiled=True).dense.sum().backward()
    assert float(img.grad.abs().sum()) > 0


def test_compile_switch_reads_the_environment(monkeypatch):
    from defocus_xai.defocus.fused import COMPILE_ENV, compile_requested

    monkeypatch.setenv(COMPILE_ENV, "1")
    assert compile_requested(None) and not compile_requested(False)
    monkeypatch.setenv(COMPILE_ENV, "0")
    assert not compile_requested(None) and compile_requested(True)


def test_reference_box_mean_matches_avg_pool():
    from defocus_xai.defocus.reference import _box_mean

    x = torch.randn(2, 1, 37, 23)
    want = torch.nn.functional.avg_pool2d(x, 15, stride=1, padding=7, count_include_pad=False)
    assert torch.allclose(_box_mean(x, 7), want, atol=1e-6)
