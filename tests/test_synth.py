"""DefocusSynth: determinism, ground truth physics, families, pairing, data loading, CLI."""

import csv
import hashlib
import os

import numpy as np
import pytest
import torch

from defocus_xai.cli import main
from defocus_xai.data import collate
from defocus_xai.data.synth import (
    FAMILIES,
    SIGMA_PER_COC,
    SYNTH_VERSION,
    DefocusSynth,
    ThinLens,
    render_scene,
)

SIZE = 64


@pytest.fixture(scope="module")
def scenes():
    """Every family of three scenes, rendered once (no JPEG, so differences are exact)."""
    out = {}
    for seed in (1, 2, 3):
        for fam in ("real",) + FAMILIES:
            out[seed, fam] = render_scene(size=SIZE, family=fam, seed=seed, return_camera=True)
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
    """The samples a seed produces are fixed for a SYNTH_VERSION (bundled weights were trained on them).

    If this fails, a change altered the rendered data: bump SYNTH_VERSION (and retrain the bundled
    detectors) or undo the change. No JPEG, so only numpy / scipy / Pillow resampling are involved.
    """
    ds = DefocusSynth(8, size=40, seed=3, jpeg=None)
    assert ds.sample_families == ["real", "no_dof", "real", "splice", "real", "depth_inconsistent", "real",
                                  "generator_smoothing"]
    h = hashlib.sha256()
    for i in range(len(ds)):
        s = ds[i]
        h.update(np.round(s["image"].numpy() * 255).astype(np.uint8).tobytes())
        h.update(s["mask"].numpy().tobytes())
        h.update(np.round(s["sigma"].numpy(), 4).astype(np.float32).tobytes())
        h.update(np.round(s["depth"].numpy(), 4).astype(np.float32).tobytes())
    assert (SYNTH_VERSION, h.hexdigest()) == (
        "1.0", "027f6d41b585a58b1f6e78196a3ad9d052455242f4e1a93840bcc461d4be7dac")


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
    ds = DefocusSynth(10, size=48, seed=3, jpeg=None)
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
    s = render_scene(size=48, seed=4, camera=cam, return_camera=True)
    assert s["camera"] == cam
    np.testing.assert_allclose(s["sigma"][0].numpy(), cam.sigma_px(s["depth"][0].double().numpy()),
                               rtol=1e-4, atol=1e-4)


def test_cli_family_names_match_the_generator():
    from defocus_xai.cli.synth import _FAMILY_NAMES

    assert _FAMILY_NAMES == FAMILIES


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
