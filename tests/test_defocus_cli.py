"""`defocus-xai maps` end to end on tiny images."""

import json

import numpy as np
import pytest
from PIL import Image

import defocus_xai as dx
from defocus_xai.cli import main


def _write_images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(40, 48), (56, 40), (48, 48)]):
        img = np.kron(rng.integers(0, 256, (h // 8, w // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        p = tmp_path / f"img{i}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def test_maps_writes_png_npy_json(tmp_path):
    paths = _write_images(tmp_path)
    out = tmp_path / "maps"
    code = main(["maps", *map(str, paths), "--out", str(out), "--size", "32", "--batch-size", "2",
                 "--device", "cpu"])
    assert code == 0
    for p in paths:
        sigma = np.load(out / f"{p.stem}_sigma.npy")
        assert sigma.shape == (32, 32) and sigma.dtype == np.float32
        meta = json.loads((out / f"{p.stem}_sigma.json").read_text())
        assert meta["scale"] == 1000.0 and meta["estimator"]["size"] == 32
        assert meta["estimator"]["std1"] == 1.5 and meta["estimator"]["recipe"] == "ours"
        with Image.open(out / f"{p.stem}_sigma.png") as im:
            assert im.mode.startswith("I;16") or im.mode == "I"
            assert float(im.text["defocus_xai:scale"]) == 1000.0
            assert json.loads(im.text["defocus_xai:config"]) == meta["estimator"]
            png = np.asarray(im, dtype=np.float64) / 1000.0
        np.testing.assert_allclose(png, sigma, atol=0.0006)
        # The same map as the Python API on the same image.
        ref = dx.estimate_defocus(np.asarray(Image.open(p).convert("RGB")), size=32).dense[0, 0]
        np.testing.assert_allclose(sigma, ref.numpy(), atol=1e-5)


def test_maps_options_are_recorded(tmp_path):
    (p,) = _write_images(tmp_path)[:1]
    out = tmp_path / "o"
    assert main(["maps", str(p), "--out", str(out), "--size", "24", "--std1", "1.2", "--std2",
                 "2.4", "--propagation", "none"]) == 0
    meta = json.loads((out / "img0_sigma.json").read_text())["estimator"]
    assert (meta["std1"], meta["std2"], meta["propagation"]) == (1.2, 2.4, "none")


def test_unreadable_and_missing_files_are_named(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert main(["maps", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "broken.png" in capsys.readouterr().err
    assert main(["maps", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_maps_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        main(["maps", "--help"])
    text = capsys.readouterr().out
    for opt in ("--out", "--size", "--std1", "--std2", "--propagation", "--device", "--batch-size"):
        assert opt in text
