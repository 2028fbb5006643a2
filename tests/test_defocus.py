"""The defocus-map estimator (recipe "ours"): closed-form accuracy, scenes, invariances, config, API."""

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.special import erf
from scipy.stats import ncx2

import defocus_xai as dx
from defocus_xai.defocus.edges import canny, hysteresis, non_maximum_suppression
from defocus_xai.defocus import EstimatorConfig, sigma_from_ratio
from defocus_xai.defocus.filters import box_filter, gaussian_derivatives, guided_filter
from defocus_xai.defocus.matting import matting_laplacian

SIGMAS = [0.5, 1.0, 2.0, 3.0, 4.0]


# ----------------------------------------------------------------------------- synthetic images
def step_image(n, sigma, x0, vertical=True):
    """Step edge blurred by a Gaussian, point-sampled exactly (erf profile)."""
    x = np.arange(n, dtype=np.float64)
    prof = 0.2 + 0.6 * 0.5 * (1 + erf((x - x0) / (np.sqrt(2) * sigma)))
    img = np.tile(prof, (n, 1))
    return (img if vertical else img.T).astype(np.float32)


def disc_image(n, radius, sigma, cy, cx):
    """Disc blurred by an isotropic Gaussian, exactly: P(|centre + sigma Z - p| < r) (Rice CDF)."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    return (0.2 + 0.6 * ncx2.cdf(radius**2 / sigma**2, 2, d2 / sigma**2)).astype(np.float32)


def layered_scene(n=128, seed=0, sigmas=(0.5, 1.5, 2.5, 3.5)):
    """Textured background and three textured rectangles, each blurred by its own sigma and
    composited front to back with an alpha blurred by the same sigma (thin-lens layers)."""
    rng = np.random.default_rng(seed)

    def texture():
        cells = int(rng.integers(8, 13))
        t = rng.random((n // cells + 2, n // cells + 2))
        return 0.15 + 0.7 * np.kron(t, np.ones((cells, cells)))[:n, :n]

    img = ndimage.gaussian_filter(texture(), sigmas[-1], mode="reflect")
    gt = np.full((n, n), sigmas[-1])
    boxes = [(8, 8, 60, 60), (64, 10, 120, 58), (20, 66, 80, 120)]
    boxes = [tuple(int(v * n / 128) for v in b) for b in boxes]
    for (y0, x0, y1, x1), s in zip(boxes, sigmas[:-1]):
        layer = ndimage.gaussian_filter(texture(), s, mode="reflect")
        mask = np.zeros((n, n))
        mask[y0:y1, x0:x1] = 1
        alpha = ndimage.gaussian_filter(mask, s, mode="constant")
        img = alpha * layer + (1 - alpha) * img
        gt[y0:y1, x0:x1] = s
    return img.astype(np.float32), gt.astype(np.float32)


def edge_errors(img, sigma, **kw):
    r = dx.estimate_defocus(torch.from_numpy(img), size=None, propagation="none", **kw)
    e = r.edges[0, 0] > 0
    assert int(e.sum()) > 20
    return (r.sparse[0, 0][e] - sigma).abs()


# ----------------------------------------------------------------------------- closed form
@pytest.mark.parametrize("sigma", SIGMAS)
def test_step_edge_sigma_exact(sigma):
    for x0, vertical in ((31.5, True), (31.3, False)):
        err = edge_errors(step_image(64, sigma, x0, vertical), sigma)
        assert float(err.median()) < 0.05, (sigma, x0, float(err.median()))


@pytest.mark.parametrize("sigma", SIGMAS)
def test_disc_sigma_exact(sigma):
    err = edge_errors(disc_image(128, 40.0, sigma, 63.8, 64.3), sigma)
    assert float(err.median()) < 0.05, float(err.median())


def test_sigma_from_ratio_inverts_the_model_and_clamps():
    s = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    r2 = (s**2 + 4.0) / (s**2 + 2.25)
    torch.testing.assert_close(sigma_from_ratio(r2, 1.5, 2.0, 10.0), s, atol=1e-6, rtol=0)
    r2 = torch.tensor([0.5, 1.0, 1.0 + 1e-9, 1.9, 5.0], requires_grad=True)
    out = sigma_from_ratio(r2, 1.5, 2.0, 5.0)
    assert out.tolist() == [5.0, 5.0, 5.0, 0.0, 0.0]
    out.sum().backward()
    assert torch.isfinite(r2.grad).all()


# ----------------------------------------------------------------------------- scenes
def _scene_metrics(dense, gt):
    mae = float(np.abs(dense - gt).mean())
    base = float(np.abs(np.median(gt) - gt).mean())
    r = float(np.corrcoef(dense.ravel(), gt.ravel())[0, 1])
    return mae, base, r


def test_layered_scene_default_mode_beats_constant_baseline():
    img, gt = layered_scene(128, seed=0)
    r = dx.estimate_defocus(img, size=None)
    mae, base, corr = _scene_metrics(r.dense[0, 0].numpy(), gt)
    assert mae < base, (mae, base)
    assert corr > 0.5, corr
    # Sparse edge values are ordered like the layers' blur.
    e = r.edges[0, 0].numpy() > 0
    med = [np.median(r.sparse[0, 0].numpy()[e & (gt == s)]) for s in (0.5, 1.5, 2.5, 3.5)]
    assert med == sorted(med)


def test_layered_scene_matting_mode():
    img, gt = layered_scene(96, seed=0)
    r = dx.estimate_defocus(img, size=None, propagation="matting")
    dense = r.dense[0, 0].numpy()
    assert np.isfinite(dense).all() and dense.min() >= 0
    mae, base, corr = _scene_metrics(dense, gt)
    assert corr > 0.5, corr
    assert mae < base, (mae, base)


def test_flower_photo_in_focus_flower_is_sharper_than_background():
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    img = data.images[[f.endswith("flower.jpg") for f in data.filenames].index(True)]
    r = dx.estimate_defocus(img, size=128)
    d = r.dense[0, 0].numpy()
    # Boxes on the 128 x 128 grid (checked visually): the dahlia's centre, and two corners of
    # the blurred foliage behind it.
    flower = d[45:80, 45:80]
    background = np.concatenate([d[2:22, 2:22].ravel(), d[2:32, 104:126].ravel()])
    assert np.median(flower) < np.median(background) - 0.5, (np.median(flower),
                                                               np.median(background))


# ----------------------------------------------------------------------------- invariances
def test_constant_and_edgeless_images_give_zeros_flag_and_warning():
    rng = np.random.default_rng(0)
    batch = torch.stack([torch.full((3, 48, 48), 0.4), torch.from_numpy(
        ndimage.zoom(rng.random((6, 6)), 8, order=0)).float().expand(3, 48, 48),
        torch.zeros(3, 48, 48)])
    with pytest.warns(RuntimeWarning, match=r"\[0, 2\]"):
        r = dx.estimate_defocus(batch, size=None)
    assert r.edgeless.tolist() == [True, False, True]
    for t in (r.dense, r.sparse, r.edges):
        assert torch.isfinite(t).all()
        assert float(t[0].abs().max()) == 0.0 and float(t[2].abs().max()) == 0.0
    assert float(r.dense[1].max()) >= 0 and float(r.edges[1].sum()) > 0


def test_tiny_noise_is_not_edges():
    x = 0.5 + 1e-4 * torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning):
        assert dx.estimate_defocus(x, size=None).edgeless.item()


def test_batch_equals_per_sample_and_is_deterministic():
    x = torch.from_numpy(np.stack([disc_image(64, 20, s, 31.7, 32.2) for s in (0.7, 2.2)]))
    x = torch.cat([x[:, None], torch.from_numpy(layered_scene(64)[0])[None, None]])
    for prop in ("guided", "none"):
        rb = dx.estimate_defocus(x, size=None, propagation=prop)
        rb2 = dx.estimate_defocus(x, size=None, propagation=prop)
        for name in ("dense", "sparse", "edges"):
            assert torch.equal(getattr(rb, name), getattr(rb2, name))
        for i in range(len(x)):
            ri = dx.estimate_defocus(x[i:i + 1], size=None, propagation=prop)
            for name in ("dense", "sparse", "edges"):
                torch.testing.assert_close(getattr(rb, name)[i], getattr(ri, name)[0],
                                           atol=1e-5, rtol=0)


def test_all_input_forms_give_the_same_map():
    img = (np.clip(layered_scene(48, seed=2)[0], 0, 1) * 255).round().astype(np.uint8)
    rgb = np.repeat(img[..., None], 3, -1)
    forms = [rgb, rgb[None], rgb.astype(np.float32) / 255, img, img[..., None],
             torch.from_numpy(rgb).permute(2, 0, 1), torch.from_numpy(rgb).permute(2, 0, 1)[None],
             torch.from_numpy(rgb).permute(2, 0, 1).double() / 255, torch.from_numpy(img),
             [rgb]]
    ref = dx.estimate_defocus(forms[0], size=None, device="cpu").dense
    for f in forms[1:]:
        torch.testing.assert_close(dx.estimate_defocus(f, size=None, device="cpu").dense, ref,
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad, exc, match", [
    (np.zeros((32, 32, 4), np.uint8), ValueError, "load_image"),
    (np.full((32, 32, 3), np.nan, np.float32), ValueError, "NaN"),
    (torch.full((1, 3, 32, 32), 2.0), ValueError, r"\[0, 1\]"),
    (torch.zeros(2, 2, 3, 32, 32), ValueError, "rank"),
    (np.zeros((0, 32, 3), np.uint8), ValueError, "empty"),
    (np.zeros((32, 32, 3), bool), TypeError, "bool"),
])
def test_rejected_inputs_raise(bad, exc, match):
    with pytest.raises(exc, match=match):
        dx.estimate_defocus(bad, size=None)


@pytest.mark.parametrize("kw, match", [
    ({"std1": 2.0, "std2": 1.5}, "std1 < std2"),
    ({"propagation": "bilateral"}, "propagation"),
    ({"recipe": "paper"}, "recipe"),
    ({"size": 4}, "size"),
    ({"sigma_max": 0}, "sigma_max"),
])
def test_invalid_parameters_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        dx.DefocusEstimator(**kw)


def test_resize_and_output_contract():
    x = torch.rand(2, 3, 90, 70)
    r = dx.estimate_defocus(x, size=48)
    for t in (r.dense, r.sparse, r.edges):
        assert t.shape == (2, 1, 48, 48) and t.dtype == torch.float32
    assert r.edgeless.shape == (2,) and r.edgeless.dtype == torch.bool
    assert float(r.dense.min()) >= 0 and float(r.dense.max()) <= 5.0
    assert set(torch.unique(r.edges).tolist()) <= {0.0, 1.0}
    assert torch.all(r.sparse[r.edges == 0] == 0)
    assert len(r) == 2 and r.numpy()["dense"].shape == (2, 1, 48, 48)


def test_config_is_json_and_rebuilds_the_estimator():
    est = dx.DefocusEstimator(size=64, std1=1.2, propagation="none")
    cfg = json.loads(json.dumps(est.config()))
    assert cfg["std1"] == 1.2 and cfg["std2"] == 2.0 and cfg["recipe"] == "ours"
    assert dx.DefocusEstimator(**cfg).config() == cfg
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(est(x).dense, dx.estimate_defocus(x, **cfg).dense)
    assert est(x).config == cfg
    assert "std1=1.2" in repr(est)
    assert list(est.parameters()) == []


def test_estimator_config_is_the_single_frozen_source():
    cfg = EstimatorConfig(size=(48, 64), std1=1.2, guided_radius=3.0, recipe="ours")
    assert cfg.std2 == 2.0 and cfg.size == (48, 64) and cfg.grid == (48, 64)
    assert isinstance(cfg.guided_radius, int) and isinstance(cfg.sigma_max, float)
    d = cfg.to_dict()
    assert d["size"] == [48, 64] and EstimatorConfig(**d) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.std1 = 1.0
    with pytest.raises(TypeError, match="positional"):      # keyword-only: no silent mix-up
        EstimatorConfig("ours")
    with pytest.raises(TypeError, match="unexpected keyword"):
        EstimatorConfig(stdd1=1.0)
    est = dx.DefocusEstimator(cfg)
    assert est.settings is cfg and est.config() == d
    x = torch.rand(1, 3, 48, 64)
    assert torch.equal(est(x).dense, dx.estimate_defocus(x, cfg).dense)
    assert torch.equal(est(x).dense, dx.estimate_defocus(x, **d).dense)
    with pytest.raises(TypeError, match="either config or settings"):
        dx.estimate_defocus(x, cfg, size=32)
    with pytest.raises(TypeError, match="EstimatorConfig"):
        dx.DefocusEstimator(d)


def test_reference_recipe_defaults_follow_the_recipe():
    assert (EstimatorConfig(recipe="reference").std1, EstimatorConfig(recipe="reference").std2) == (2.0, 2.5)
    assert EstimatorConfig(recipe="reference", std1=1.5, std2=2.0).std1 == 1.5
    with pytest.raises(ValueError, match="reference_input_range"):
        EstimatorConfig(recipe="reference", reference_input_range="[0,255]")
    with pytest.raises(ValueError, match="subsample"):
        EstimatorConfig(subsample=0)


def test_heavy_upscaling_warns_once_naming_the_input_size():
    with pytest.warns(UserWarning, match="upscaled") as record:
        dx.estimate_defocus(torch.rand(3, 3, 12, 40), size=64)
    notes = [w for w in record if "upscaled" in str(w.message)]
    assert len(notes) == 1 and "12 x 40 px" in str(notes[0].message)
    assert notes[0].filename == __file__
    with pytest.warns(UserWarning, match="upscaled"):         # one axis is enough
        dx.estimate_defocus(torch.rand(1, 3, 64, 15), size=64)
    with pytest.warns(UserWarning, match="2 x 2 px"):
        dx.estimate_defocus(torch.rand(1, 3, 2, 2), size=(64, 32), recipe="ours")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dx.estimate_defocus(torch.rand(1, 3, 16, 16), size=64)          # exactly a quarter: fine
        dx.estimate_defocus(torch.rand(1, 3, 12, 12), size=None)        # no grid, no upscale


def test_gradient_flows_from_dense_to_input():
    img = torch.from_numpy(layered_scene(48, seed=3)[0]).expand(1, 3, 48, 48).clone()
    img.requires_grad_(True)
    r = dx.estimate_defocus(img, size=None)
    r.dense.sum().backward()
    g = img.grad
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0
    img.grad = None
    r = dx.estimate_defocus(img, size=None, propagation="none")
    r.sparse.sum().backward()
    assert torch.isfinite(img.grad).all() and float(img.grad.abs().sum()) > 0
    assert not r.edges.requires_grad


def test_matting_gradient_reaches_sparse_values():
    img = torch.from_numpy(layered_scene(32, seed=4)[0]).expand(1, 3, 32, 32).clone()
    img.requires_grad_(True)
    r = dx.estimate_defocus(img, size=None, propagation="matting")
    r.dense.sum().backward()
    assert torch.isfinite(img.grad).all() and float(img.grad.abs().sum()) > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    img, _ = layered_scene(64, seed=0)
    x = torch.from_numpy(img)[None, None].expand(2, 3, 64, 64)
    cpu = dx.estimate_defocus(x, size=None)
    gpu = dx.estimate_defocus(x.cuda(), size=None)
    assert gpu.dense.device.type == "cuda"
    agree = (gpu.edges.cpu() == cpu.edges).float().mean()
    assert agree > 0.99
    assert float((gpu.dense.cpu() - cpu.dense).abs().median()) < 1e-3


def test_reference_recipe_is_wired():
    r = dx.estimate_defocus(torch.rand(1, 3, 40, 40), size=32, recipe="reference")
    assert r.dense.shape == (1, 1, 32, 32) and r.dense.dtype == torch.float32
    assert (r.config["std1"], r.config["std2"]) == (2.0, 2.5)
    with pytest.raises(ValueError, match="reference"):
        dx.DefocusEstimator(recipe="reference", propagation="matting")


# ----------------------------------------------------------------------------- building blocks
def test_derivative_filters_are_exact_on_polynomials():
    ar = torch.arange(40, dtype=torch.float64)
    yy, xx = torch.meshgrid(ar, ar, indexing="ij")
    img = (0.5 * 0.01 * xx**2 + 0.02 * xx * yy - 0.5 * 0.03 * yy**2 + 0.1 * xx)[None, None]
    d = gaussian_derivatives(img, [1.5, 2.0], second_order=True)[0, :, :, 20, 20]
    expect = torch.tensor([0.01 * 20 + 0.02 * 20 + 0.1, 0.02 * 20 - 0.03 * 20, 0.01, 0.02, -0.03],
                          dtype=torch.float64)
    torch.testing.assert_close(d, expect.expand(2, 5), atol=1e-9, rtol=0)


def test_canny_finds_thin_connected_edges():
    img = torch.from_numpy(disc_image(64, 20, 1.0, 31.6, 32.1))[None, None]
    e = canny(img)
    assert 100 < int(e.sum()) < 160          # one-pixel ring of radius 20: ~ 2 pi 20
    lab, n = ndimage.label(e[0, 0].numpy(), structure=np.ones((3, 3)))
    assert n == 1


def test_nms_keeps_ridge_only():
    gx = torch.tensor([0.1, 0.5, 1.0, 0.5, 0.1]).repeat(5, 1)[None, None]
    keep = non_maximum_suppression(gx, torch.zeros_like(gx))
    assert keep[0, 0, :, 2].all() and keep.sum() == 5


def test_hysteresis_keeps_components_with_a_strong_pixel():
    weak = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    weak[:, 0, 2, 1:11] = True                                  # a line
    weak[:, 0, 3:10, 10] = True                                 # joined diagonally-ish
    weak[:, 0, 8, 2:6] = True                                   # separate segment
    strong = torch.zeros_like(weak)
    strong[0, 0, 9, 10] = True                                  # end of the L in sample 0
    strong[1, 0, 8, 3] = True                                   # the segment in sample 1
    out = hysteresis(strong, weak)
    assert out[0, 0, 2, 1:11].all() and out[0, 0, 3:10, 10].all() and not out[0, 0, 8, 2:6].any()
    assert out[1, 0, 8, 2:6].all() and not out[1, 0, 2].any()
    lab, _ = ndimage.label(weak[0, 0].numpy(), structure=np.ones((3, 3)))
    assert lab.max() == 2


def test_box_and_guided_filter():
    x = torch.rand(1, 2, 20, 20, dtype=torch.float64)
    ref = torch.from_numpy(ndimage.uniform_filter(x.numpy(), size=(1, 1, 5, 5), mode="mirror"))
    torch.testing.assert_close(box_filter(x, 2), ref)
    g = torch.rand(1, 1, 20, 20)
    torch.testing.assert_close(guided_filter(g, 2 * g + 1, 3, 1e-8), 2 * g + 1, atol=1e-3, rtol=0)


def test_matting_laplacian_properties():
    L = matting_laplacian(np.random.default_rng(0).random((9, 7, 3)), eps=1e-5)
    assert L.shape == (63, 63)
    assert abs(L - L.T).max() < 1e-10
    assert np.abs(np.asarray(L.sum(axis=1))).max() < 1e-8
    v = np.random.default_rng(1).random(63)
    assert v @ (L @ v) >= -1e-10


def test_no_warning_for_normal_images():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dx.estimate_defocus(layered_scene(48)[0], size=None)


def test_hysteresis_matches_8_connected_labelling():
    rng = np.random.default_rng(0)
    m = rng.random((3, 40, 50))
    weak, strong = m > 0.55, m > 0.97
    out = hysteresis(torch.from_numpy(strong)[:, None], torch.from_numpy(weak)[:, None])
    for i in range(3):
        lab, _ = ndimage.label(weak[i], structure=np.ones((3, 3)))
        keep = np.isin(lab, np.unique(lab[strong[i]]))
        assert np.array_equal(out[i, 0].numpy(), keep)
