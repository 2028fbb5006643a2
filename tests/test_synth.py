"""DefocusSynth: determinism, ground truth physics, families, pairing, data loading, CLI; version 2.0 optics."""

import csv
import hashlib
import os

import numpy as np
import pytest
import torch
from scipy import signal
from scipy.optimize import curve_fit
from scipy.special import ndtr

from defocus_xai.cli import main
from defocus_xai.data import collate
from defocus_xai.data.synth import (
    FAMILIES,
    FAMILIES_V2,
    SIGMA_AA,
    SIGMA_PER_COC,
    Aperture,
    DefocusSynth,
    ThinLens,
    render_scene,
)
from defocus_xai.data.synth.layers import _Canvas, _Layer, _Scene
from defocus_xai.data.synth.optics import _render_lens, _truth_v2

SIZE = 64


@pytest.fixture(scope="module")
def scenes():
    """Every family of three scenes, rendered once (no JPEG, so differences are exact)."""
    out = {}
    for seed in (1, 2, 3):
        for fam in ("real",) + FAMILIES:
            out[seed, fam] = render_scene(size=SIZE, family=fam, seed=seed, return_camera=True, version="1.0")
    return out


def test_thin_lens_formula_and_inverse_depth_monotonicity():
    cam = ThinLens(f=0.085, N=1.8, d_f=2.0, pixel_pitch=2e-4)
    d = np.array([0.5, 1.0, 2.0, 4.0, 100.0])
    A = 0.085 / 1.8
    expected = A * 0.085 * np.abs(d - 2.0) / (d * (2.0 - 0.085))
    np.testing.assert_allclose(cam.coc(d), expected)
    np.testing.assert_allclose(cam.sigma_px(d), SIGMA_PER_COC * expected / 2e-4)
    assert cam.sigma_px(2.0) == 0
    # c is proportional to |1/d - 1/d_f|: equal inverse-depth distances, equal blur
    near, far = 1 / (1 / 2.0 + 0.3), 1 / (1 / 2.0 - 0.3)
    assert cam.sigma_px(near) == pytest.approx(cam.sigma_px(far))
    t = torch.tensor([1.0, 3.0])
    assert torch.is_tensor(cam.sigma_px(t))
    with pytest.raises(ValueError, match="d_f"):
        ThinLens(f=0.1, N=2, d_f=0.05, pixel_pitch=1e-4)
    with pytest.raises(ValueError, match="depth"):
        cam.coc(np.array([0.0, 1.0]))


def test_same_seed_same_sample_and_other_seed_differs():
    a = render_scene(size=SIZE, family="splice", seed=11, jpeg_quality=85)
    b = render_scene(size=SIZE, family="splice", seed=11, jpeg_quality=85)
    c = render_scene(size=SIZE, family="splice", seed=12, jpeg_quality=85)
    for key in ("image", "sigma", "depth", "mask"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["image"], c["image"])
    ds1, ds2 = DefocusSynth(6, size=SIZE, seed=5), DefocusSynth(50, size=SIZE, seed=5)
    # sample i depends on (seed, i) only: not on n, not on access order
    for i in (3, 1):
        assert torch.equal(ds1[i]["image"], ds2[i]["image"])
    assert not torch.equal(ds1[3]["image"], DefocusSynth(6, size=SIZE, seed=6)[3]["image"])
    # the seed field reproduces the sample through render_scene
    s = ds1[3]
    again = render_scene(size=SIZE, family=s["family"], seed=s["seed"], jpeg_quality=s["jpeg_quality"] or None)
    assert torch.equal(s["image"], again["image"])


def test_pixels_of_a_seed_are_pinned():
    """The samples a seed produces are fixed for a version (v1 stays reproducible after v2 became the default).

    If this fails, a change altered the rendered data: bump SYNTH_VERSION (and retrain the bundled
    detectors) or undo the change. No JPEG, so only numpy / scipy / Pillow resampling are involved.
    """
    ds = DefocusSynth(8, size=40, seed=3, jpeg=None, version="1.0")
    assert ds.sample_families == ["real", "no_dof", "real", "splice", "real", "depth_inconsistent", "real",
                                  "generator_smoothing"]
    h = hashlib.sha256()
    for i in range(len(ds)):
        s = ds[i]
        h.update(np.round(s["image"].numpy() * 255).astype(np.uint8).tobytes())
        h.update(s["mask"].numpy().tobytes())
        h.update(np.round(s["sigma"].numpy(), 4).astype(np.float32).tobytes())
        h.update(np.round(s["depth"].numpy(), 4).astype(np.float32).tobytes())
    assert h.hexdigest() == "027f6d41b585a58b1f6e78196a3ad9d052455242f4e1a93840bcc461d4be7dac"


def test_shapes_dtypes_ranges(scenes):
    for (seed, fam), s in scenes.items():
        assert s["image"].shape == (3, SIZE, SIZE) and s["image"].dtype == torch.float32
        assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
        assert s["sigma"].shape == (1, SIZE, SIZE) and s["sigma"].dtype == torch.float32
        assert s["depth"].shape == (1, SIZE, SIZE) and s["depth"].dtype == torch.float32
        assert s["mask"].shape == (1, SIZE, SIZE) and s["mask"].dtype == torch.uint8
        assert float(s["sigma"].min()) >= 0 and float(s["depth"].min()) > 0
        assert torch.isfinite(s["sigma"]).all() and torch.isfinite(s["image"]).all()
        assert s["label"] == (0 if fam == "real" else 1) and s["family"] == fam
        assert isinstance(s["source_id"], str) and isinstance(s["seed"], int) and isinstance(s["index"], int)
        # 8-bit grid: the PNG written by the CLI is the sample exactly
        u8 = s["image"] * 255
        assert torch.allclose(u8, u8.round(), atol=1e-3)


def test_real_sigma_is_thin_lens_and_monotone_in_inverse_depth_distance(scenes):
    for seed in (1, 2, 3):
        s = scenes[seed, "real"]
        cam = s["camera"]
        sigma, depth = s["sigma"][0].double().numpy(), s["depth"][0].double().numpy()
        np.testing.assert_allclose(sigma, cam.sigma_px(depth), rtol=1e-4, atol=1e-4)
        key = np.abs(1 / depth - 1 / cam.d_f).ravel()
        order = np.argsort(key, kind="stable")
        assert np.all(np.diff(sigma.ravel()[order]) >= -1e-4)
        assert sigma.max() > 0.5 * SIZE / 128  # there is depth of field
        assert sigma.min() < 0.05  # the camera focuses on something visible


def test_masks_nonempty_exactly_for_local_families(scenes):
    for (seed, fam), s in scenes.items():
        nonempty = int(s["mask"].sum()) > 0
        assert nonempty == (fam == "splice"), (seed, fam)


def test_pairs_differ_only_by_the_manipulation(scenes):
    for seed in (1, 2, 3):
        real = scenes[seed, "real"]
        ids = {scenes[seed, f]["source_id"] for f in ("real",) + FAMILIES}
        assert len(ids) == 1
        for fam in FAMILIES:
            assert torch.equal(scenes[seed, fam]["depth"], real["depth"]), fam
        # no_dof: sharp everywhere
        assert float(scenes[seed, "no_dof"]["sigma"].abs().max()) == 0.0
        # splice: image and sigma change only inside the mask, and sigma is inconsistent there
        sp = scenes[seed, "splice"]
        m = sp["mask"].bool()
        assert torch.equal(sp["image"][:, ~m[0]], real["image"][:, ~m[0]])
        assert torch.equal(sp["sigma"][~m], real["sigma"][~m])
        assert float((sp["sigma"][m] - real["sigma"][m]).abs().min()) >= 0.9 * SIZE / 128
        assert not torch.equal(sp["image"], real["image"])
        # depth_inconsistent: same set of layer blurs, reassigned to other depths
        di = scenes[seed, "depth_inconsistent"]
        assert not torch.allclose(di["sigma"], real["sigma"])
        cam = real["camera"]
        key = np.abs(1 / di["depth"][0].double().numpy() - 1 / cam.d_f).ravel()
        order = np.argsort(key, kind="stable")
        assert np.diff(di["sigma"][0].numpy().ravel()[order]).min() < -0.5 * SIZE / 128
        # generator_smoothing: a blur floor everywhere, sigma^2 adds
        gs = scenes[seed, "generator_smoothing"]
        floor2 = (gs["sigma"] ** 2 - real["sigma"] ** 2)
        assert float(floor2.min()) >= 1.0 - 1e-4 and float(floor2.max() - floor2.min()) < 1e-3
        assert float(gs["sigma"].min()) >= 1.0 - 1e-4


def test_dataset_pairs_labels_and_families():
    ds = DefocusSynth(10, size=48, seed=3, jpeg=None, version="1.0")
    assert len(ds) == 10
    assert ds.labels == [0, 1] * 5
    assert ds.sample_families[1::2] == [FAMILIES[k % 4] for k in range(5)]
    ids = ds.source_ids
    assert all(ids[2 * k] == ids[2 * k + 1] for k in range(5)) and len(set(ids)) == 5
    s = ds[-1]
    assert s["index"] == 9 and s["family"] == ds.sample_families[9] and s["jpeg_quality"] == 0
    with pytest.raises(IndexError):
        ds[10]
    one = DefocusSynth(4, size=48, families=("splice",))
    assert one.sample_families == ["real", "splice", "real", "splice"]
    un = DefocusSynth(40, size=48, fake_fraction=0.8, seed=1)
    assert 20 <= sum(un.labels) <= 40 and len(set(un.source_ids)) == 40
    assert sum(DefocusSynth(5, size=48, fake_fraction=0.0).labels) == 0
    with pytest.raises(ValueError, match="families"):
        DefocusSynth(4, families=("nope",))
    with pytest.raises(ValueError, match="family"):
        render_scene(family="nope")
    with pytest.raises(ValueError, match="jpeg"):
        DefocusSynth(4, jpeg=(90, 200))


def test_default_collate_and_dataloader():
    ds = DefocusSynth(4, size=48, seed=0)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 48, 48)
    assert batch["family"][0] == "real" and batch["label"].tolist() == [0, 1, 0, 1]
    assert 75 <= int(batch["jpeg_quality"][0]) <= 95
    b2 = collate([render_scene(size=48, seed=1, return_camera=True)] * 2)
    assert b2["sigma"].shape == (2, 1, 48, 48) and isinstance(b2["camera"][0], ThinLens)
    assert b2["seed"].dtype == torch.int64 and isinstance(b2["layers"][0], list)
    ours = collate([ds[i] for i in range(4)])
    for key in ("image", "sigma", "depth", "mask", "label", "index", "seed", "jpeg_quality"):
        assert torch.equal(ours[key], batch[key]), key
    assert ours["source_id"] == list(batch["source_id"])
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_given_camera_is_used():
    cam = ThinLens(f=0.1, N=2.0, d_f=2.0, pixel_pitch=1e-4)
    s = render_scene(size=48, seed=4, camera=cam, return_camera=True, version="1.0")
    assert s["camera"] == cam
    np.testing.assert_allclose(s["sigma"][0].numpy(), cam.sigma_px(s["depth"][0].double().numpy()),
                               rtol=1e-4, atol=1e-4)


def test_cli_family_names_match_the_generator():
    from defocus_xai.cli.synth import _FAMILY_NAMES

    assert _FAMILY_NAMES == FAMILIES_V2


def test_cli_writes_images_ground_truth_and_index(tmp_path):
    from PIL import Image

    out = tmp_path / "bench"
    rc = main(["synth", "--n", "4", "--size", "40", "--out", str(out), "--seed", "2", "--quiet",
               "--families", "splice", "no_dof"])
    assert rc == 0
    with open(out / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["family"] for r in rows] == ["real", "splice", "real", "no_dof"]
    assert [int(r["label"]) for r in rows] == [0, 1, 0, 1]
    assert rows[0]["source_id"] == rows[1]["source_id"] != rows[2]["source_id"]
    assert set(rows[0]) >= {"file", "label", "family", "source_id", "seed", "index"}
    ds = DefocusSynth(4, size=40, seed=2, families=("splice", "no_dof"))
    for r in rows:
        im = np.asarray(Image.open(out / r["file"]))
        assert im.shape == (40, 40, 3) and im.dtype == np.uint8
        with np.load(out / r["gt"], allow_pickle=False) as gt:
            assert set(gt.files) == {"sigma", "depth", "mask"}
            assert gt["sigma"].shape == (40, 40) and gt["mask"].dtype == np.uint8
            s = ds[int(r["index"])]
            np.testing.assert_array_equal(gt["sigma"], s["sigma"][0].numpy())
            np.testing.assert_array_equal(im, np.round(s["image"].numpy().transpose(1, 2, 0) * 255))
        assert int(r["seed"]) == s["seed"]
    assert not [f for f in os.listdir(out / "images") if f.startswith(".tmp")]


# ----------------------------------------------------------------------------------------------- version 2.0

def _lens_camera():
    """A camera whose lens sigma is ``K |1/d - 1/d_f|`` with a large K, so any sigma is one depth away."""
    return ThinLens(f=0.05, N=1.0, d_f=5.0, pixel_pitch=2e-5)


def _depth_for(cam, lens_sigma):
    k = SIGMA_PER_COC * cam.aperture * cam.f * cam.d_f / (cam.d_f - cam.f) / cam.pixel_pitch
    return float(1 / (1 / cam.d_f + lens_sigma / k))


def _step_scene(lens_sigma, size=64, pad=40, theta=0.12):
    """A slanted sharp step drawn by the texture path (the canvas' erf edge) at the depth of ``lens_sigma``."""
    cv = _Canvas(size, pad, aa=SIGMA_AA)
    X, Y = cv.grid((0, cv.n, 0, cv.n))
    sd = (X - 0.5) * np.cos(theta) + (Y - 0.5) * np.sin(theta)
    color = np.stack([0.2 + 0.6 * cv.cover(sd)] * 3).astype(np.float32)
    cam = _lens_camera()
    d = _depth_for(cam, lens_sigma)
    scene = _Scene([_Layer("background", 0, color, None, d, (0, cv.n, 0, cv.n))], cam, pad, size)
    return scene, (sd[pad:pad + size, pad:pad + size] * size).ravel()


def _edge_sigmas(img, r, reach):
    """Slanted-edge measurement: (second moment of the line-spread function, sigma of an erf fit), px."""
    v = (img[0].ravel() - 0.2) / 0.6
    sel = np.abs(r) < reach
    bins = np.round(r[sel] / 0.1).astype(int)
    lo = bins.min()
    esf = np.bincount(bins - lo, weights=v[sel]) / np.maximum(np.bincount(bins - lo), 1)
    lsf = -np.diff(esf)
    x = (np.arange(len(lsf)) + lo + 0.5) * 0.1
    lsf = lsf / lsf.sum()
    moment = float(np.sqrt((lsf * (x - (lsf * x).sum()) ** 2).sum()))
    (_, fit), _ = curve_fit(lambda t, t0, sg: ndtr(-(t - t0) / sg), r[sel], v[sel], p0=(0.0, 1.0))
    return moment, abs(float(fit))


@pytest.mark.parametrize("aperture", [Aperture(), Aperture(blades=6, rotation=0.4, soft=0.2)])
def test_v2_sharp_step_through_the_texture_path_recovers_the_stored_sigma(aperture):
    for lens in (0.0, 0.3, 1.5, 4.0):
        scene, r = _step_scene(lens)
        stored = _truth_v2(scene, [lens])[2]
        assert float(stored.std()) < 1e-6
        total = float(stored.mean())
        assert total == pytest.approx(np.hypot(lens, SIGMA_AA), abs=1e-5)
        img = _render_lens(scene, [lens], aperture, {})
        moment, erf = _edge_sigmas(img, r, 4 * total + 3)
        assert moment == pytest.approx(total, abs=0.03, rel=0.01), (lens, moment, total)
        if lens == 0.0:  # the antialiasing edge alone is an exact erf
            assert erf == pytest.approx(SIGMA_AA, abs=0.01)
        else:  # an aperture's edge is steeper than the Gaussian of equal second moment: the erf fit reads high
            assert total * 0.8 < erf < total * 1.12


@pytest.mark.parametrize("blades", [0, 5, 6, 9])
def test_v2_psf_second_moment_and_shape(blades):
    ap = Aperture(blades=blades, rotation=0.3, soft=0.0)
    for sigma in (0.0, 0.4, 0.8, 2.0, 5.0):
        k = ap.kernel(sigma)
        assert k.sum() == pytest.approx(1.0, abs=1e-5) and (k >= 0).all()
        assert Aperture.second_moment(k) == pytest.approx(sigma**2, rel=1e-3, abs=1e-6)
    k = ap.kernel(5.0).astype(np.float64)
    c = k.shape[0] // 2
    inner = k[c - 5:c + 6, c - 5:c + 6].copy()
    inner[5, 5] = np.median(inner)  # the centre carries the small exact-moment correction
    assert inner.std() / inner.mean() < 1e-3  # flat top: an aperture, not a Gaussian
    y, x = np.mgrid[-c:c + 1, -c:c + 1]
    rad = np.hypot(x, y)
    assert k[rad > 2 * 5.0 / np.cos(np.pi / max(blades, 12)) + 1.5].max() == 0
    if blades:  # a polygon: light reaches further towards its corners than towards its sides
        ang = np.arctan2(y, x) - 0.3
        period = 2 * np.pi / blades  # the sides' normals point at rotation + k period, the corners between
        side = np.abs(((ang + period / 2) % period) - period / 2) < 0.15
        corner = np.abs((ang % period) - period / 2) < 0.15
        assert rad[(k > 0) & corner].max() > rad[(k > 0) & side].max() + 0.5
    flipped = ap.kernel(2.0, flip=True)
    np.testing.assert_array_equal(flipped, ap.kernel(2.0)[::-1, ::-1])
    with pytest.raises(ValueError, match="blades"):
        Aperture(blades=2)


def test_v2_occlusion_compositing_matches_a_direct_two_layer_computation():
    size, pad = 48, 24
    cv = _Canvas(size, pad, aa=SIGMA_AA)
    X, Y = cv.grid((0, cv.n, 0, cv.n))
    back = np.stack([0.3 + 0.5 * cv.cover(np.sin(40 * X) / 40), 0.4 + 0 * X, 0.2 + 0.6 * (Y > 0.5)])
    box = (20, 60, 18, 62)
    Xb, Yb = cv.grid(box)
    alpha = cv.cover(np.hypot(Xb - 0.45, Yb - 0.5) - 0.25)
    front = np.stack([0.9 + 0 * Xb, 0.1 + 0.5 * Xb, 0.5 + 0 * Xb]).astype(np.float32)
    cam = _lens_camera()
    s_back, s_front = 3.0, 1.7
    d_back, d_front = 1 / (1 / cam.d_f - s_back / 5e3), _depth_for(cam, s_front)
    cam = ThinLens(f=cam.f, N=cam.N, d_f=cam.d_f, pixel_pitch=cam.pixel_pitch)
    layers = [_Layer("background", 0, back.astype(np.float32), None, d_back, (0, cv.n, 0, cv.n)),
              _Layer("object0", 2, front, alpha, d_front, box)]
    scene = _Scene(layers, cam, pad, size)
    ap = Aperture(blades=7, rotation=0.2, soft=0.1)
    got = _render_lens(scene, [s_back, s_front], ap, {})
    # direct: K_f * (a C_f) + (1 - K_f * a) (K_b * C_b), on the full canvas; the front layer is nearer than the
    # focus plane, so its kernel is the flipped aperture
    a_full = np.zeros((cv.n, cv.n))
    a_full[box[0]:box[1], box[2]:box[3]] = alpha
    c_full = np.zeros((3, cv.n, cv.n))
    c_full[:, box[0]:box[1], box[2]:box[3]] = front
    k_b, k_f = ap.kernel(s_back), ap.kernel(s_front, flip=True)
    conv = [signal.convolve2d(ch, k_b, mode="same") for ch in back]
    a_blur = signal.convolve2d(a_full, k_f, mode="same")
    want = np.stack([signal.convolve2d(c * a_full, k_f, mode="same") + (1 - a_blur) * b
                     for c, b in zip(c_full, conv)])[:, pad:pad + size, pad:pad + size]
    np.testing.assert_allclose(got, np.clip(want, 0, 1), atol=2e-5)
    # partial occlusion: around the blurred rim the background shows through the front layer's blurred alpha
    rim = (a_blur[pad:pad + size, pad:pad + size] > 0.2) & (a_blur[pad:pad + size, pad:pad + size] < 0.8)
    assert rim.sum() > 20


def test_v2_deep_focus_share_cameras_and_total_sigma():
    ds = DefocusSynth(120, size=128, seed=2026, version="2.0", jpeg=None, noise=False)
    smax, rec = [], []
    for i in range(0, 120, 2):
        p = ds.plan(i)
        s = render_scene(size=128, family="real", seed=p["seed"], version="2.0", noise=False, return_camera=True)
        smax.append(float(s["sigma"].max()))
        rec.append((s["f_number"], s["focal_length"], s["focus_distance"]))
        if i < 6:  # the stored sigma is the total blur: the lens's and the antialiasing's, added in variance
            cam = s["camera"]
            lens = cam.sigma_px(s["depth"][0].double().numpy())
            np.testing.assert_allclose(s["sigma"][0].numpy(), np.hypot(lens, SIGMA_AA), rtol=1e-4, atol=1e-4)
            assert s["f_number"] == cam.N and s["focus_distance"] == cam.d_f
            assert isinstance(s["aperture"], Aperture)
    smax = np.array(smax)
    assert (smax < 0.5).mean() >= 0.25  # deep-focus reals
    assert (smax >= 1.0).mean() >= 0.4 and smax.max() > 3.0  # and the rest up to strong bokeh
    n, f, d = np.array(rec).T
    assert n.min() >= 1.0 and n.max() <= 32 and len(np.unique(np.round(n, 3))) > 30
    assert f.min() >= 0.018 and f.max() <= 0.2 and (d > f).all()
    # families that need depth of field are rendered on shallow-focus scenes only
    for i in range(1, 120, 10):
        p = ds.plan(i)
        if p["family"] in ("no_dof", "depth_inconsistent"):
            real = render_scene(size=64, seed=p["seed"], version="2.0", noise=False)
            assert float(real["sigma"].max()) > 0.5 * 64 / 128


def test_v2_families_ground_truth_and_face_swap_history():
    seed = DefocusSynth(2, size=64, version="2.0").plan(1)["seed"]  # a shallow-focus scene (no_dof pair)
    real = render_scene(size=64, seed=seed, version="2.0", jpeg_quality=90)
    fakes = {f: render_scene(size=64, family=f, seed=seed, version="2.0", jpeg_quality=90) for f in FAMILIES_V2}
    for fam, s in fakes.items():
        assert s["label"] == 1 and s["source_id"] == real["source_id"] and s["version"] == "2.0"
        assert torch.equal(s["depth"], real["depth"]), fam
        assert float(s["sigma"].min()) >= SIGMA_AA - 1e-6
        assert (int(s["mask"].sum()) > 0) == (fam in ("splice", "face_swap")), fam
    assert torch.allclose(fakes["no_dof"]["sigma"], torch.full_like(real["sigma"], SIGMA_AA))
    fs, m = fakes["face_swap"], fakes["face_swap"]["mask"].bool()
    assert torch.equal(fs["sigma"][~m], real["sigma"][~m])
    assert float((fs["sigma"][m] - real["sigma"][m]).abs().max()) > 0.5
    # processed twice: outside the mask the image differs from the real only by the second compression
    out = (fs["image"] - real["image"])[:, ~m[0]].abs()
    assert 0 < float(out.mean()) < 0.05
    clean = render_scene(size=64, family="face_swap", seed=seed, version="2.0", noise=False)
    clean_real = render_scene(size=64, seed=seed, version="2.0", noise=False)
    assert torch.equal(clean["image"][:, ~m[0]], clean_real["image"][:, ~m[0]])
    with pytest.raises(ValueError, match="family"):
        render_scene(family="face_swap", version="1.0")
    with pytest.raises(ValueError, match="version"):
        DefocusSynth(2, version="3.0")
    ds = DefocusSynth(4, size=48, version="2.0", jpeg=None)
    assert ds.families == FAMILIES_V2 and ds[0]["version"] == "2.0"
