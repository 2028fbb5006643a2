"""recipe="robust": closed form kept on isolated edges; edges with neighbours, junctions, known noise.

All scenes are exact: Gaussian-blurred steps point-sampled through the erf profile (no discretization of
the blur), so every error below is the estimator's own.
"""

import numpy as np
import pytest
import torch
from scipy.special import erf

import defocus_xai as dx
from defocus_xai.defocus import EstimatorConfig
from defocus_xai.defocus.edges import edge_thresholds
from defocus_xai.defocus.noise import noise_gradient_energy, noise_level
from defocus_xai.defocus.robust import SIGMA_FLOOR


def _phi(t, sigma):
    return 0.5 * (1 + erf(t / (np.sqrt(2) * sigma)))


def step_with_bar(n=96, sigma=2.0, gap=4.0):
    """An isolated step at x = 24.3 and a bar (two opposite steps ``gap`` px apart) at x = 60.3, all
    blurred by ``sigma``: the bar's edges have a neighbour within the re-blur support."""
    x = np.arange(n, dtype=np.float64)
    p = 0.2 + 0.5 * _phi(x - 24.3, sigma) + 0.3 * (_phi(x - 60.3, sigma) - _phi(x - 60.3 - gap, sigma))
    return np.tile(p, (n, 1)).astype(np.float32)


def noisy_step(n=96, sigma=1.0, noise=0.04, seed=0):
    x = np.arange(n, dtype=np.float64)
    img = np.tile(0.3 + 0.4 * _phi(x - 48.3, sigma), (n, 1))
    return (img + noise * np.random.default_rng(seed).standard_normal(img.shape)).astype(np.float32)


def t_junction(n=96, sigma=1.5, c=48.3):
    """Three regions meeting at (c, c), blurred by ``sigma`` (exact: products of erf profiles)."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    left, top = _phi(c - x, sigma), _phi(c - y, sigma)
    return (0.2 * left + (1 - left) * (0.8 * top + 0.5 * (1 - top))).astype(np.float32)


def _estimate(img, recipe, **kw):
    return dx.estimate_defocus(torch.from_numpy(img), size=None, recipe=recipe, **kw)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 3.0, 4.0])
def test_isolated_step_stays_exact(sigma):
    x = np.arange(64, dtype=np.float64)
    img = np.tile(0.2 + 0.6 * _phi(x - 31.5, sigma), (64, 1)).astype(np.float32)
    r = _estimate(img, "robust", propagation="none")
    e = r.edges[0, 0] > 0
    assert float((r.sparse[0, 0][e] - sigma).abs().median()) < 0.05


@pytest.mark.parametrize("sigma, expected", [(0.0, SIGMA_FLOOR), (0.3, 0.3)])
def test_sharp_edges_read_the_pixel_aperture_not_zero(sigma, expected):
    """A point-sampled hard step reads 0 with "ours" (sharper than any blurred step); "robust" reports
    the pixel aperture's sigma, sqrt(1/12) px. An edge just above it (DefocusSynth 2.0's 0.3 px
    antialiasing) keeps its own value."""
    x = np.arange(64, dtype=np.float64) - 31.5
    prof = (x > 0).astype(np.float64) if sigma == 0 else _phi(x, sigma)
    img = np.tile(0.2 + 0.6 * prof, (64, 1)).astype(np.float32)
    ours = _estimate(img, "ours", propagation="none")
    robust = _estimate(img, "robust", propagation="none")
    e = robust.edges[0, 0] > 0
    if sigma == 0:
        assert float(ours.sparse[0, 0][ours.edges[0, 0] > 0].max()) == 0.0
    assert float(robust.sparse[0, 0][e].min()) >= SIGMA_FLOOR - 1e-6
    assert float((robust.sparse[0, 0][e] - expected).abs().median()) < 0.05


@pytest.mark.parametrize("gap", [3.0, 4.0])
def test_edges_with_a_neighbour_do_not_pull_the_map_down(gap):
    """Today's ratio reads the bar's edges as 0.0-0.94 px (gap 3) and 0.94-1.31 px (gap 4) instead of
    2; its dense map over the bar has a median of 0.40 / 1.08 px. The consistency test gives those
    edges almost no weight, so the map there comes from the isolated step: error < 0.15 px."""
    img = step_with_bar(sigma=2.0, gap=gap)
    bar = (slice(10, -10), slice(58, 66))
    ours = _estimate(img, "ours").dense[0, 0][bar]
    robust = _estimate(img, "robust").dense[0, 0][bar]
    assert float((ours - 2.0).abs().median()) > 0.5            # today's bias
    assert float((robust - 2.0).abs().median()) < 0.15


def test_t_junction_map_is_right_near_the_junction():
    """Near the junction the sparse error grows (median 0.10 px at sigma 1.5, 0.17 at 2.5, both
    recipes); the straight-edge and consistency weights keep the dense map within 0.15 px."""
    yy, xx = np.mgrid[0:96, 0:96]
    near = torch.from_numpy(np.hypot(yy - 48.3, xx - 48.3) < 8)
    for sigma in (1.0, 1.5, 2.5):
        dense = _estimate(t_junction(sigma=sigma), "robust").dense[0, 0]
        assert float((dense[near] - sigma).abs().max()) < 0.15, sigma


def test_noise_of_known_sigma():
    """Noise std 0.04 on a 0.4 step: today's thresholds let noise through (278 edge pixels, the step has
    96), read as sharp (median error -1.0 px); the noise-aware thresholds keep (almost) only the step and the
    noise-corrected ratio reads it within 0.05 px."""
    for seed in range(3):
        img = noisy_step(noise=0.04, seed=seed)
        ours = _estimate(img, "ours", propagation="none")
        robust = _estimate(img, "robust", propagation="none")
        e_o, e_r = ours.edges[0, 0] > 0, robust.edges[0, 0] > 0
        assert float((ours.sparse[0, 0][e_o] - 1.0).median()) < -0.5      # today's bias
        assert int(e_r.sum()) <= 0.5 * int(e_o.sum())
        assert float((robust.sparse[0, 0][e_r] - 1.0).abs().median()) < 0.15


def test_noise_level_and_gradient_energy():
    g = torch.Generator().manual_seed(3)
    for s in (0.005, 0.02, 0.08):
        x = 0.5 + s * torch.randn(1, 1, 200, 200, generator=g)
        assert abs(float(noise_level(x)[0]) / s - 1) < 0.03
    x = 0.05 * torch.randn(1, 1, 400, 400, generator=g)
    d = dx.defocus.filters.gaussian_derivatives(x, [2.0])
    energy = float((d[0, 0, 0] ** 2 + d[0, 0, 1] ** 2)[20:-20, 20:-20].mean())
    assert abs(energy / float(noise_gradient_energy(torch.tensor(0.05), 2.0)) - 1) < 0.05
    # Thresholds follow the noise: never below 3 (low) and 5 (high) noise gradient stds.
    lo, hi = edge_thresholds(torch.zeros(1, 1, 8, 8), noise=torch.tensor([0.1]), edge_sigma=1.0)
    g_std = 0.1 / np.sqrt(8 * np.pi)
    assert float(lo) == pytest.approx(3 * g_std, rel=1e-5)
    assert float(hi) == pytest.approx(5 * g_std, rel=1e-5)


def test_robust_recipe_contract():
    cfg = EstimatorConfig(recipe="robust")
    assert (cfg.std1, cfg.std2) == (1.0, 1.5)
    assert set(cfg.to_dict()) == set(EstimatorConfig().to_dict())      # no new parameter
    x = torch.rand(2, 3, 48, 48)
    r = dx.estimate_defocus(x, size=None, recipe="robust")
    assert r.dense.shape == (2, 1, 48, 48) and torch.isfinite(r.dense).all()
    assert r.config["recipe"] == "robust"
    with pytest.warns(RuntimeWarning):
        flat = dx.estimate_defocus(torch.full((1, 3, 32, 32), 0.5), size=None, recipe="robust")
    assert bool(flat.edgeless[0]) and float(flat.dense.abs().max()) == 0.0
    xg = torch.from_numpy(step_with_bar(48, sigma=1.5, gap=8.0)).expand(1, 3, 48, 48).clone()
    xg.requires_grad_(True)
    dx.estimate_defocus(xg, size=None, recipe="robust").dense.sum().backward()
    assert torch.isfinite(xg.grad).all() and float(xg.grad.abs().sum()) > 0


def _profile_at_edges(img, sigma0=1.0):
    """The multi-edge profile fit alone (``profile_sigma``) at the robust recipe's edge pixels."""
    from defocus_xai.defocus.robust_profile import profile_sigma

    gray = torch.from_numpy(img)[None, None]
    d = dx.defocus.filters.gaussian_derivatives(gray, [1.0, 1.5])
    edges = _estimate(img, "robust", propagation="none").edges[0, 0] > 0
    idx = edges.reshape(-1).nonzero().squeeze(1)
    g = d[0, 1].reshape(2, -1)[:, idx]
    normal = g / g.norm(dim=0)
    return profile_sigma(d, 0, idx, normal, torch.full((idx.numel(),), sigma0), 1.0, 5.0), idx


@pytest.mark.parametrize("sigma", [0.7, 1.5, 3.0])
@pytest.mark.parametrize("angle", [0.0, 0.5])
def test_profile_fit_is_exact_on_oblique_steps(sigma, angle):
    """Bilinear samples along an oblique normal carry the interpolation's own variance; the model adds
    it per sample, so a step at any angle reads its sigma."""
    y, x = np.mgrid[0:96, 0:96].astype(np.float64)
    u = (x - 47.7) * np.cos(angle) + (y - 47.7) * np.sin(angle)
    img = (0.2 + 0.6 * _phi(u, sigma)).astype(np.float32)
    s, idx = _profile_at_edges(img)
    yy, xx = idx // 96, idx % 96
    inner = (yy > 16) & (yy < 80) & (xx > 16) & (xx < 80)
    assert float((s[inner] - sigma).abs().median()) < 0.03


@pytest.mark.parametrize("gap", [3.0, 4.0])
def test_profile_fit_reads_a_bar_next_to_a_step(gap):
    """A bar of width 3-4 px at sigma 2: the ratio reads its edges 1.1-1.6 px (``step_with_bar``); the fit
    with one step per extremum of the profile reads 2 within 0.05 px, at the bar and at the step. The
    recipe's sparse values there (ratio weighted by its step test, local median) stay within 0.15 px."""
    img = step_with_bar(sigma=2.0, gap=gap)
    s, idx = _profile_at_edges(img)
    xx = idx % 96
    assert float((s[xx > 40] - 2.0).abs().max()) < 0.05
    assert float((s[xx < 40] - 2.0).abs().max()) < 0.05
    r = _estimate(img, "robust", propagation="none")
    bar = (r.edges[0, 0] > 0) & (torch.arange(96) > 40).view(1, -1)
    assert float((r.sparse[0, 0][bar] - 2.0).abs().max()) < 0.15


def test_noisy_step_profile_fit():
    """Noise of std 0.02 on a 0.4 step at sigma 1.5: the fit's median error stays within 0.15 px."""
    for seed in range(3):
        img = noisy_step(sigma=1.5, noise=0.02, seed=seed)
        s, _ = _profile_at_edges(img)
        assert float((s - 1.5).abs().median()) < 0.15, seed


def occlusion(n=96, sharp=0.5, blurred=2.0, boundary=48.3, spacing=10.0):
    """Vertical stripes: steps every ``spacing`` px at sigma ``sharp`` left of ``boundary``, at ``blurred``
    right of it; the boundary itself is a step of the sharp side (the occluder)."""
    x = np.arange(n, dtype=np.float64)
    p = 0.2 + 0.3 * _phi(x - boundary, sharp)
    for k in range(1, int(boundary // spacing) + 1):
        sign = 0.15 if k % 2 else -0.15
        p += sign * (_phi(x - boundary + k * spacing, sharp) + _phi(x - boundary - k * spacing, blurred))
    return np.tile(p, (n, 1)).astype(np.float32)


def test_occlusion_boundary_gets_a_low_weight():
    """The boundary edge reads sharp (its occluder); its side medians differ (0.5 vs 2 px), so its
    propagation weight is low (so is that of the first blurred edge, 10 px away, whose window holds the
    boundary), while the edges inside either side keep weight 1 and read their own sigma."""
    from defocus_xai.defocus.noise import noise_level
    from defocus_xai.defocus.robust import STD3_FACTOR, robust_edge_sigma

    img = occlusion()
    gray = torch.from_numpy(img)[None, None]
    cfg = EstimatorConfig(recipe="robust", size=None)
    d = dx.defocus.filters.gaussian_derivatives(gray, [cfg.std1, cfg.std2, STD3_FACTOR * cfg.std2])
    edges = _estimate(img, "robust", propagation="none").edges > 0
    sparse, conf = robust_edge_sigma(d, (0, 1, 2), edges, cfg, noise_level(gray))
    cols = edges[0, 0].any(0).nonzero().flatten().tolist()
    at = {c: float(conf[0, 0, 48, c]) for c in cols}
    boundary = min(cols, key=lambda c: abs(c - 48.3))
    assert at[boundary] < 0.3
    inside = [c for c in cols if abs(c - 48.3) > 12 and 12 < c < 84]
    assert inside and min(at[c] for c in inside) > 0.9
    assert float(sparse[0, 0, 48, boundary]) < 1.0
    for c in inside:
        assert abs(float(sparse[0, 0, 48, c]) - (0.5 if c < 48 else 2.0)) < 0.15, c


def _jpeg(rgb, quality):
    """JPEG round trip (PIL, its default 4:2:0 chroma subsampling) of an ``(H, W, 3)`` image in [0, 1]."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float32) / 255


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_noisy_jpeg_step_reads_its_sigma(sigma):
    """A step under white noise of std 0.01, quantized to 8 bits and JPEG-compressed at quality 85."""
    img = noisy_step(sigma=sigma, noise=0.01)
    rgb = torch.from_numpy(_jpeg(np.repeat(img[..., None], 3, 2), 85)).permute(2, 0, 1)[None]
    r = dx.estimate_defocus(rgb, size=None, recipe="robust", propagation="none")
    e = r.edges[0, 0] > 0
    assert 90 <= int(e.sum()) <= 110                       # the step's 96 pixels, no noise edges
    assert float((r.sparse[0, 0][e] - sigma).abs().median()) < 0.15


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_luma_reads_a_coloured_jpeg_step(sigma):
    """Blue to white, JPEG quality 90: JPEG keeps luma at full resolution, chroma at half; the mean of
    R, G and B mixes the chroma in and misreads the blur, the luma reads it within 0.06 px."""
    from defocus_xai._images import to_gray
    from defocus_xai.defocus.filters import gaussian_derivatives
    from defocus_xai._images import luma
    from defocus_xai.defocus.robust_profile import profile_sigma

    p = _phi(np.arange(64.0) - 32.0, sigma)[None, :, None]
    rgb = (np.array([0.2, 0.2, 0.9]) * (1 - p) + np.array([0.9, 0.9, 0.9]) * p) * np.ones((64, 1, 1))
    x = torch.from_numpy(_jpeg(rgb, 90)).permute(2, 0, 1)[None]
    err = {}
    for name, gray in (("luma", luma(x)), ("mean", to_gray(x))):
        d = gaussian_derivatives(gray, [1.0])
        idx = torch.tensor([20 * 64 + 32, 32 * 64 + 32, 44 * 64 + 32])
        s = profile_sigma(d, 0, idx, torch.tensor([[1.0] * 3, [0.0] * 3]), torch.ones(3), 1.0, 5.0)
        err[name] = float((s - sigma).abs().max())
    assert err["luma"] < 0.06
    assert err["mean"] > 2 * err["luma"]
    # ... and the recipe reads it through the luma.
    r = dx.estimate_defocus(x.float(), size=None, recipe="robust", propagation="none")
    e = r.edges[0, 0] > 0
    assert int(e.sum()) >= 40 and float((r.sparse[0, 0][e] - sigma).abs().median()) < 0.06


def test_fitted_subset_samples_every_line():
    """The profile is fitted at 3 of every 5 consecutive pixels of any row, column or diagonal."""
    from defocus_xai.defocus.robust import _fit_subset

    H = W = 40
    idx = torch.arange(2 * H * W)                          # two frames
    sub = _fit_subset(idx, H, W).view(2, H, W)
    assert torch.equal(sub[0], sub[1])
    s = sub[0].to(torch.int64)
    diag = torch.stack([s.diagonal(k)[:20] for k in range(-5, 6)])
    anti = torch.stack([s.flip(1).diagonal(k)[:20] for k in range(-5, 6)])
    for lines in (s, s.t(), diag, anti):
        windows = lines.unfold(1, 5, 1).sum(-1)
        assert bool((windows == 3).all())


def test_side_medians_pool_cells_and_skip_unfitted_pixels():
    """Cells pool the edge values (NaN: a pixel without a value); the windows reach 10 px each way."""
    from defocus_xai.defocus.robust_consensus import side_medians

    W = 40
    xs = torch.tensor([9, 19, 20, 29])                     # one row; 20 has no value
    idx = 5 * W + xs
    vals = torch.tensor([1.0, 2.0, float("nan"), 4.0])
    n = torch.tensor([[1.0] * 4, [0.0] * 4])
    ahead, behind = side_medians(vals, idx, (1, 12, W), n, window=21)
    assert abs(float(ahead[1]) - 4.0) < 1e-5 and abs(float(behind[1]) - 1.0) < 1e-5
    assert torch.isnan(ahead[3]) and abs(float(behind[3]) - 2.0) < 1e-5


def _robust_weights(img):
    from defocus_xai.defocus.robust import STD3_FACTOR, robust_edge_sigma

    gray = torch.from_numpy(img)[None, None]
    cfg = EstimatorConfig(recipe="robust", size=None)
    d = dx.defocus.filters.gaussian_derivatives(gray, [cfg.std1, cfg.std2, STD3_FACTOR * cfg.std2])
    edges = _estimate(img, "robust", propagation="none").edges > 0
    return edges[0, 0], robust_edge_sigma(d, (0, 1, 2), edges, cfg, noise_level(gray))[1][0, 0]


def test_noise_maxima_on_a_ramp_lose_their_weight():
    """A smooth intensity ramp under noise of std 0.01: Canny keeps noise maxima (no edge is there); their
    maximum does not persist at std3, so their weight is ~0. Blurred steps under the same noise keep 1."""
    x = np.arange(96, dtype=np.float64)
    rng = np.random.default_rng(0)
    ramp = (np.tile(0.2 + 0.6 * x / 95, (96, 1)) + 0.01 * rng.standard_normal((96, 96))).astype(np.float32)
    e, w = _robust_weights(ramp)
    assert int(e.sum()) > 100 and float(w[e].median()) < 0.05 and float((w[e] > 0.5).float().mean()) < 0.2
    for sigma in (0.5, 2.0, 4.0):
        e, w = _robust_weights(noisy_step(sigma=sigma, noise=0.01))
        assert int(e[2:-2].sum()) == 92 and float(w[2:-2][e[2:-2]].min()) > 0.95


def test_gradient_is_finite_on_jpeg_reals():
    """Two DefocusSynth 2.0 reals (development seed 150) with the generator's noise and JPEG: some profile
    fits there place two modelled steps at one position (a singular gradient step without its ridge)."""
    ds = dx.DefocusSynth(2, size=128, seed=150, fake_fraction=0.0, version="2.0")
    x = torch.stack([ds[i]["image"] for i in range(2)]).requires_grad_(True)
    dx.estimate_defocus(x, size=None, recipe="robust").dense.sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("recipe", ["ours", "robust"])
def test_edge_values_then_guided_propagation_is_the_estimator(recipe):
    """The sparse stage benches feed other values or weights to reproduces the estimator exactly."""
    from defocus_xai.defocus.estimator import edge_values
    from defocus_xai.defocus.propagation import guided_propagation

    img = torch.from_numpy(np.stack([step_with_bar(64, 1.5, 4.0), t_junction(64, 1.0, 30.3)]))
    img = img[:, None].expand(-1, 3, -1, -1).contiguous()
    cfg = EstimatorConfig(recipe=recipe, size=None)
    result = dx.estimate_defocus(img, cfg)
    x, gray, sparse, confidence, edges = edge_values(cfg, img)
    dense = guided_propagation(sparse, confidence, gray, fill_std=cfg.fill_std, radius=cfg.guided_radius,
                               eps=cfg.guided_eps, subsample=cfg.subsample).clamp(0.0, cfg.sigma_max)
    assert x.shape == img.shape and edges.dtype == torch.bool
    assert torch.equal(edges.float(), result.edges) and torch.equal(sparse, result.sparse)
    assert torch.allclose(dense, result.dense, atol=1e-6)
    assert (confidence[~edges] == 0).all() and (confidence[edges] > 0).any()
