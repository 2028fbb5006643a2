"""The compiled path's C library (``defocus/edge_pixels.c`` through ``defocus/native.py``) against the
torch code it replaces: hysteresis with the edge-pixel lists, order statistics; its build, cache and
the fallback when it cannot be built."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import defocus_xai as dx
from defocus_xai.defocus import native
from defocus_xai.defocus.edges import hysteresis
from tests.test_defocus import layered_scene


def _hysteresis_case(B, H, W, seed, density=0.6):
    g = torch.Generator().manual_seed(seed)
    mag = torch.rand(B, 1, H, W, generator=g)
    peaks = torch.rand(B, 1, H, W, generator=g) < density
    lo = torch.rand(B, generator=g) * 0.5
    hi = lo + torch.rand(B, generator=g) * 0.5
    want = hysteresis(peaks & (mag >= hi.view(B, 1, 1, 1)), peaks & (mag >= lo.view(B, 1, 1, 1)))
    return mag, peaks.to(torch.uint8), lo, hi, want


@pytest.mark.parametrize("shape", [(2, 37, 29), (1, 1, 1), (3, 1, 17), (2, 8, 8), (1, 64, 3)])
def test_edge_pixels_equal_hysteresis_and_list_the_pixels(shape):
    B, H, W = shape
    for seed in range(5):
        mag, peaks, lo, hi, want = _hysteresis_case(B, H, W, seed)
        edges, idx, centre, block = native.edge_pixels(mag, peaks, lo, hi, frame=2)
        assert edges.dtype == torch.uint8 and torch.equal(edges.bool(), want)
        flat = want.reshape(-1).nonzero().squeeze(1)
        assert torch.equal(idx, flat)
        b, rem = flat // (H * W), flat % (H * W)
        y, x = rem // W, rem % W
        assert torch.equal(centre, (b * (H + 4) + y + 2) * (W + 4) + x + 2)
        assert torch.equal(block, (b * ((H + 1) // 2) + y // 2) * ((W + 1) // 2) + x // 2)
        framed = torch.nn.functional.pad(mag, (1, 2, 3, 1), value=9.0)   # a view with row strides
        again = native.edge_pixels(framed[..., 3:H + 3, 1:W + 1], peaks, lo, hi, frame=2)
        assert all(torch.equal(a, b) for a, b in zip(again, (edges, idx, centre, block)))


def test_edge_pixels_follow_long_chains_and_keep_images_apart():
    # A weak serpentine of 1,000+ pixels reached from one strong end; in a second image, a weak
    # pixel at the end of a row next (in memory, not in the image) to a strong one starting the next.
    H = W = 48
    mag = torch.zeros(2, 1, H, W)
    peaks = torch.zeros(2, 1, H, W, dtype=torch.uint8)
    path = []
    for i, y in enumerate(range(1, H - 2, 2)):
        xs = range(1, W - 1) if i % 2 == 0 else range(W - 2, 0, -1)
        path += [(y, x) for x in xs] + [(y + 1, xs[-1])]
    for y, x in path:
        mag[0, 0, y, x], peaks[0, 0, y, x] = 0.5, 1
    mag[0, 0, path[0]] = 1.0
    mag[1, 0, 0, W - 1], mag[1, 0, 1, 0] = 0.5, 1.0
    peaks[1, 0, 0, W - 1] = peaks[1, 0, 1, 0] = 1
    lo, hi = torch.tensor([0.4, 0.4]), torch.tensor([0.9, 0.9])
    edges, idx, _, _ = native.edge_pixels(mag, peaks, lo, hi)
    want = hysteresis(peaks.bool() & (mag >= 0.9), peaks.bool() & (mag >= 0.4))
    assert torch.equal(edges.bool(), want) and int(edges[0].sum()) == len(path) > 1000
    assert edges[1].nonzero().tolist() == [[0, 1, 0]] and idx.numel() == len(path) + 1


def test_thresholds_equal_edge_thresholds():
    from defocus_xai.defocus.edges import _percentile_sample, contrast_floor, edge_thresholds

    g = torch.Generator().manual_seed(0)
    mags = [torch.rand(3, 1, 299, 299, generator=g) ** 3, torch.rand(2, 1, 40, 30, generator=g),
            torch.rand(3, 1, 1, 41, generator=g) ** 4,
            torch.randint(0, 4, (2, 1, 30, 30), generator=g).float() / 4,
            torch.zeros(1, 1, 16, 16), torch.rand(1, 1, 1, 1, generator=g), torch.rand(1, 1, 1, 2)]
    for mag in mags:
        for low, high, contrast in ((0.05, 0.15, 0.02), (0.2, 0.3, 0.0), (0.1, 0.1, 5.0)):
            want = edge_thresholds(mag, low=low, high=high, min_contrast=contrast, edge_sigma=1.5)
            got = native.edge_thresholds(_percentile_sample(mag), low, high,
                                         contrast_floor(contrast, 1.5))
            for a, b in zip(got, want):                      # within three float32 ulps
                assert torch.allclose(a, b.flatten(), rtol=3.6e-7, atol=0), (a, b)
    nan = torch.rand(1, 100, generator=g)
    nan[0, ::7] = float("nan")
    native.edge_thresholds(nan, 0.05, 0.15, 0.01)       # a meaningless value, no crash
    with pytest.raises(ValueError, match="sample"):
        native.edge_thresholds(torch.rand(1, 0), 0.05, 0.15, 0.01)


def test_apply_coefficients_equal_interpolate_then_apply():
    g = torch.Generator().manual_seed(1)
    for h, w, H, W in ((150, 150, 299, 299), (3, 5, 7, 11), (1, 1, 4, 4), (150, 120, 299, 240)):
        coef = torch.randn(2, 2, h, w, generator=g)
        gray = torch.rand(2, 1, H, W, generator=g)
        ab = torch.nn.functional.interpolate(coef, size=(H, W), mode="bilinear", align_corners=False)
        want = torch.addcmul(ab[:, 1:], ab[:, :1], gray).clamp(0.0, 2.0)
        out = torch.full((2, 1, H, W), float("nan"))
        got = native.apply_coefficients(coef, gray, 2.0, out=out)
        assert got is out and float((got - want).abs().max()) < 1e-6
    with pytest.raises(ValueError, match="contiguous"):
        native.apply_coefficients(coef, gray, 2.0, out=torch.empty(2, 1, W, H).transpose(-1, -2))


@pytest.mark.parametrize("shape, fill_std", [((2, 299, 299), 2.0), ((1, 64, 48), 2.0),
                                             ((3, 33, 41), 2.0), ((1, 31, 200), 2.0),
                                             ((1, 6, 6), 1.2), ((1, 40, 6), 1.2)])
def test_guided_coefficients_equal_the_guided_propagation(shape, fill_std):
    # The half-resolution guided propagation of propagation.py (torch), from the same block sums;
    # down to grids where the fill's kernel is as wide as the grid.
    from defocus_xai.defocus.filters import _taps
    from defocus_xai.defocus.propagation import guided_propagation

    B, H, W = shape
    blur = _taps(fill_std / 2, math.ceil(3 * fill_std / 2), None)[0]
    g = torch.Generator().manual_seed(H)
    conf = (torch.rand(B, 1, H, W, generator=g) < 0.05) * torch.rand(B, 1, H, W, generator=g)
    sparse = torch.rand(B, 1, H, W, generator=g) * 5 * (conf > 0)
    gray = torch.rand(B, 1, H, W, generator=g)
    pad = (0, W % 2, 0, H % 2)
    sums = torch.stack([F.avg_pool2d(F.pad(m, pad), 2) * 4 for m in (sparse * conf, conf)])
    want = guided_propagation(sparse, conf, gray, fill_std=fill_std, radius=4, eps=1e-3).clamp(0, 10)
    coef = native.guided_coefficients(sums, gray, blur, 2, 1e-3)
    got = native.apply_coefficients(coef, gray, 10.0)
    assert float((got - want).abs().max()) < 2e-5 * float(want.abs().max())
    # shapes the C code cannot take are refused before it runs
    for bad in ((sums, gray, blur, min(H, W)), (sums[:1], gray, blur, 2), (sums, gray[:, :1, :-2], blur, 2),
                (torch.cat([sums, sums], 2), gray, blur, 2)):
        with pytest.raises(ValueError, match="kernels shorter"):
            native.guided_coefficients(*bad, 1e-3)
    with pytest.raises(ValueError, match="coefficients"):
        native.apply_coefficients(torch.rand(B, 2, 0, 3), gray, 1.0)


def test_library_is_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFOCUS_XAI_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_LIB", [])
    lib = native.library()
    built = list(tmp_path.glob("defocus_xai_native-*.so"))
    assert len(built) == 1 and not list(tmp_path.glob("*.so.tmp*"))
    assert native.library() is lib
    monkeypatch.setattr(native, "_LIB", [])
    stamp = built[0].stat().st_mtime_ns
    native.library()                                 # found in the cache, not rebuilt
    assert built[0].stat().st_mtime_ns == stamp
    # a read-only first folder: the per-user folder in the temporary directory
    monkeypatch.setattr(native, "_LIB", [])
    monkeypatch.setattr(native, "_cache_dirs", lambda: [tmp_path / "file" / "below", tmp_path / "tmp"])
    (tmp_path / "file").write_text("not a folder")
    native.library()
    assert len(list((tmp_path / "tmp").glob("defocus_xai_native-*.so"))) == 1
    monkeypatch.setattr(native, "_LIB", [])
    monkeypatch.setattr(native, "_cache_dirs", lambda: [tmp_path / "file" / "below"])
    with pytest.raises(OSError, match="no writable cache folder"):
        native.library()
    # a folder others may write (a library planted there would run here): skipped
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setattr(native, "_LIB", [])
    monkeypatch.setattr(native, "_cache_dirs", lambda: [shared, tmp_path / "private"])
    native.library()
    assert not list(shared.glob("*.so")) and list((tmp_path / "private").glob("*.so"))


def test_without_a_compiler_the_compiled_path_runs_the_eager_code(monkeypatch):
    from defocus_xai.defocus import fused

    def no_compiler():
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(native, "_LIB", [])
    monkeypatch.setattr(native, "_compiler", no_compiler)
    monkeypatch.setattr(fused, "_FAILED", [])
    monkeypatch.setattr(fused, "_call", lambda fn, *args: fn(*args))     # the graphs, uncompiled
    x = torch.from_numpy(np.stack([layered_scene(48, seed=2)[0]] * 3))[:, None]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = dx.estimate_defocus(x, size=None)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="no C.. compiler"):
        fast = dx.estimate_defocus(x, size=None, compiled=True)
    assert torch.equal(fast.dense, eager.dense) and torch.equal(fast.edges, eager.edges)
