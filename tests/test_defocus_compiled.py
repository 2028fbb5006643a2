"""The estimator's compiled CPU path (``compiled=True``) against the eager code, its fallback and switch,
the formulations of its graphs (run eagerly) against the eager functions, the CPU runner's output copies;
the reference recipe's running-sum box filter."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import defocus_xai as dx
from tests.test_defocus import layered_scene


@pytest.mark.slow
def test_compiled_path_matches_eager():
    # Compiles four graphs (about a minute on a cold cache); the tolerance is docs/estimator.md's.
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
    # the range check runs inside the graphs here: the same errors as the eager path's
    for value, message in ((float("nan"), "1 NaN or infinite"), (1.5, r"found values in \[")):
        bad = x.clone()
        bad[1, 2, 7, 9] = value
        with pytest.raises(ValueError, match=message), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dx.estimate_defocus(bad, size=None, compiled=True)


def _scene_rgb(n=64, seeds=(0, 1)):
    x = torch.from_numpy(np.stack([layered_scene(n, seed=s)[0] for s in seeds]))[:, None]
    noise = torch.randn(len(seeds), 3, n, n, generator=torch.Generator().manual_seed(3))
    return (x + 0.01 * noise).clamp(0, 1)


def test_graph_formulas_match_the_eager_functions():
    # The compiled graphs' formulations, run eagerly, and the C library: gray and the range check's
    # extremes, the derivatives with their replicated frame, suppression, the thresholds and
    # hysteresis, sigma and weight gathered at the edge pixels and their block sums, the
    # propagation, and the maps.
    from defocus_xai._images import to_gray
    from defocus_xai.defocus import fast_graphs as fg
    from defocus_xai.defocus import EstimatorConfig
    from defocus_xai.defocus.edges import (_percentile_sample, canny_from_gradients, edge_thresholds,
                                           non_maximum_suppression)
    from defocus_xai.defocus.filters import _taps, gaussian_derivatives
    from defocus_xai.defocus.fused import _eager_maps
    from defocus_xai.defocus.native import apply_coefficients, edge_pixels, guided_coefficients
    from defocus_xai.defocus.ratio import edge_sigma

    cfg = EstimatorConfig(size=None)
    x = _scene_rgb()
    uniq, where = (1.5, 2.0), (0, 0, 1)
    taps = tuple(_taps(s, 10, x.dtype) for s in uniq)
    with torch.no_grad():
        gray, checks, *framed = fg.derivatives(x, taps, where)
        assert torch.equal(gray, to_gray(x))
        assert torch.equal(checks, torch.stack([x.amin((1, 2, 3)), x.amax((1, 2, 3))], 1))
        d = gaussian_derivatives(gray, uniq)
        want = [d[:, i, j:j + 1] for i in (0, 0, 1) for j in (0, 1)]
        for got, ref in zip(framed, want):
            assert torch.equal(got, F.pad(ref, (2, 2, 2, 2), mode="replicate"))
        mag, peaks, sample = fg.front(framed[0], framed[1])
        gx, gy = want[0], want[1]
        assert peaks.dtype == torch.uint8
        assert torch.equal(peaks.bool(), non_maximum_suppression(gx, gy, mag))
        assert torch.equal(sample, _percentile_sample(mag))
        edges = canny_from_gradients(gx, gy, mag, edge_sigma=1.5, low=cfg.low_threshold,
                                     high=cfg.high_threshold, min_contrast=cfg.min_contrast)
        assert int(edges.sum()) > 200 and bool(edges[..., :2, :].any())   # border pixels too
        lo, hi = edge_thresholds(mag, low=cfg.low_threshold, high=cfg.high_threshold,
                                 min_contrast=cfg.min_contrast, edge_sigma=1.5)
        found, idx, centre, block = edge_pixels(mag, peaks, lo, hi, frame=2)
        assert torch.equal(found.bool(), edges)
        sparse, conf = edge_sigma(d, (0, 1), edges, cfg)
        assert torch.equal(idx, edges.reshape(-1).nonzero().squeeze(1))
        sigma, sums = fg.at_edges(*framed[2:], centre, block, cfg)
        assert float((sigma - sparse.reshape(-1)[idx]).abs().max()) < 1e-6
        for got, ref in zip(sums, (sparse * conf, conf)):
            assert torch.allclose(got, F.avg_pool2d(ref, 2) * 4, atol=1e-6)
        coef = guided_coefficients(sums, gray, _taps(1.0, 3, None)[0], 2, cfg.guided_eps)
        dense = apply_coefficients(coef, gray, cfg.sigma_max)
        e_dense, e_sparse, e_edges, e_checks = _eager_maps(cfg, x)
    assert torch.equal(e_edges, edges.float()) and torch.equal(e_checks, checks)
    assert torch.equal(e_sparse, sparse)
    assert float((dense - e_dense).abs().max()) < 1e-4


def test_range_check_from_extremes_matches_as_image_batch():
    from defocus_xai._images import as_image_batch, as_image_batch_unchecked, check_extremes

    bad = torch.rand(3, 3, 8, 8)
    bad[1, 2, 3, 4] = 1.5
    nan = torch.rand(2, 3, 8, 8)
    nan[0, 0, 0, :3] = float("nan")
    for x in (bad, nan, torch.rand(2, 3, 8, 8) - 1.0):
        with pytest.raises(ValueError) as want:
            as_image_batch(x)
        t, unchecked = as_image_batch_unchecked(x)
        assert unchecked is not None
        extremes = torch.stack([t.amin((1, 2, 3)), t.amax((1, 2, 3))], 1)
        with pytest.raises(ValueError) as got:
            check_extremes(extremes, t, "images", unchecked)
        assert str(got.value) == str(want.value)
    ok = torch.rand(2, 3, 8, 8)
    t, unchecked = as_image_batch_unchecked(ok)
    check_extremes(torch.stack([t.amin((1, 2, 3)), t.amax((1, 2, 3))], 1), t, "images", unchecked)
    # uint8 needs no check; one-channel float input is checked before it is expanded
    assert as_image_batch_unchecked(np.zeros((4, 4, 3), np.uint8))[1] is None
    with pytest.raises(ValueError, match="1 NaN"):
        as_image_batch_unchecked(torch.tensor([[float("nan"), 0.5]]))


def test_graph_helpers_match_torch():
    from defocus_xai.defocus import fast_graphs as fg

    x = torch.randn(2, 3, 17, 12, generator=torch.Generator().manual_seed(1))
    for dim, pad in ((-1, (3, 3, 0, 0)), (-2, (0, 0, 3, 3))):
        assert torch.equal(fg._reflect(x, 3, dim), F.pad(x, pad, mode="reflect"))
        assert torch.equal(fg._replicate(x, 3, dim), F.pad(x, pad, mode="replicate"))
    assert torch.equal(fg._zero_frame(x), F.pad(x, (1, 1, 1, 1)))


def test_cpu_runner_copies_parts_in_place_without_gradients():
    from defocus_xai.defocus.chunks import run_in_cpu_chunks

    x = torch.randn(23, 4, 5, 5)
    fn = lambda b: (b * 2, (b > 0).sum((1, 2, 3)), b[:, :1].double())     # noqa: E731
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            got = run_in_cpu_chunks(fn, x, pixels=299 * 299)
        want = fn(x)
        assert all(torch.equal(g, w) and g.dtype == w.dtype for g, w in zip(got, want))
        # preallocated outputs: every chunk writes its slices itself
        outs = (torch.empty(23, 4, 5, 5), torch.empty(23, dtype=torch.long))
        with torch.no_grad():
            written = run_in_cpu_chunks(lambda b, o: (o[0].copy_(b * 2), o[1].copy_(fn(b)[1])), x,
                                        pixels=299 * 299, outputs=outs)
        assert all(w is o for w, o in zip(written, outs))
        assert torch.equal(outs[0], want[0]) and torch.equal(outs[1], want[1])
        y = x.clone().requires_grad_(True)
        run_in_cpu_chunks(lambda b: (b * 3,), y, pixels=299 * 299)[0].sum().backward()
        assert torch.equal(y.grad, torch.full_like(x, 3.0))
    finally:
        torch.set_num_threads(before)


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
    # the range check, deferred to the chunks on this path, refuses as as_image_batch does
    bad = x.clone()
    bad[0, 1, 5, 5] = 1.5
    with pytest.raises(ValueError) as want:
        dx.estimate_defocus(bad, size=None)
    with pytest.raises(ValueError) as got, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dx.estimate_defocus(bad, size=None, compiled=True)
    assert "found values in [" in str(want.value) and str(got.value) == str(want.value)
    slightly = x.clone()
    slightly[0, 0, :4, :4] = 1.0 + 1e-7            # within the tolerance: clamped, as eager
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(dx.estimate_defocus(slightly, size=None, compiled=True).dense,
                           dx.estimate_defocus(slightly, size=None).dense)
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
