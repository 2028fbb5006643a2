"""`defocus-xai maps` end to end on tiny images: files and folders, skips, atomic writes, messages."""

import json
import re
import warnings

import numpy as np
import pytest
from PIL import Image

import defocus_xai.cli.maps as maps_cli
from defocus_xai.cli import main
from defocus_xai.defocus import estimate_defocus


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, 256, (h // 8, w // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)


def _write_images(folder, sizes=((40, 48), (56, 40), (48, 48))):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img{i}.png"
        Image.fromarray(_image(h, w, i)).save(p)
        paths.append(p)
    return paths


def _summary(out_text):
    return out_text.strip().splitlines()[-1]


def test_maps_writes_png_npy_json_and_preview(tmp_path, capsys):
    paths = _write_images(tmp_path)
    out = tmp_path / "maps"
    code = main(["maps", *map(str, paths), "--out", str(out), "--size", "32", "--batch-size", "2",
                 "--device", "cpu", "--no-progress"])
    assert code == 0
    assert _summary(capsys.readouterr().out) == f"wrote 3 maps to {out}, skipped 0"
    for p, (h, w) in zip(paths, ((40, 48), (56, 40), (48, 48))):
        sigma = np.load(out / f"{p.stem}_sigma.npy")
        assert sigma.shape == (32, 32) and sigma.dtype == np.float32
        meta = json.loads((out / f"{p.stem}_sigma.json").read_text())
        assert meta["scale"] == 1000.0 and meta["estimator"]["size"] == 32
        assert meta["estimator"]["std1"] == 1.5 and meta["estimator"]["recipe"] == "ours"
        assert meta["original_size"] == [h, w] and meta["map_size"] == [32, 32]
        assert meta["resize_scale"] == {"y": 32 / h, "x": 32 / w}
        with Image.open(out / f"{p.stem}_sigma.png") as im:
            assert im.mode.startswith("I;16") or im.mode == "I"
            assert float(im.text["defocus_xai:scale"]) == 1000.0
            assert json.loads(im.text["defocus_xai:config"]) == meta["estimator"]
            png = np.asarray(im, dtype=np.float64) / 1000.0
        np.testing.assert_allclose(png, sigma, atol=0.0006)
        # A viewable colour preview: 8-bit RGB, never black, brighter where sigma is larger.
        assert meta["preview"]["file"] == f"{p.stem}_preview.png"
        with Image.open(out / meta["preview"]["file"]) as im:
            assert im.mode == "RGB" and im.size == (32, 32)
            rgb = np.asarray(im).astype(float)
        assert rgb.sum(-1).min() > 100           # viridis: no sigma is drawn black
        lum = rgb.sum(-1)
        assert lum[sigma > np.median(sigma)].mean() >= lum[sigma <= np.median(sigma)].mean()
        # The same map as the Python API on the same image.
        ref = estimate_defocus(np.asarray(Image.open(p).convert("RGB")), size=32).dense[0, 0]
        np.testing.assert_allclose(sigma, ref.numpy(), atol=1e-5)
    assert not list(out.glob(".*"))


def test_maps_options_are_recorded_and_preview_can_be_left_out(tmp_path):
    (p,) = _write_images(tmp_path)[:1]
    out = tmp_path / "o"
    assert main(["maps", str(p), "--out", str(out), "--size", "24", "--std1", "1.2", "--std2",
                 "2.4", "--propagation", "none", "--no-preview", "--no-progress"]) == 0
    meta = json.loads((out / "img0_sigma.json").read_text())
    assert (meta["estimator"]["std1"], meta["estimator"]["std2"],
            meta["estimator"]["propagation"]) == (1.2, 2.4, "none")
    assert "preview" not in meta and not (out / "img0_preview.png").exists()


def test_folders_are_searched_recursively_by_extension(tmp_path, capsys):
    photos = tmp_path / "photos"
    _write_images(photos, sizes=((40, 40),))
    _write_images(photos / "sub" / "deeper", sizes=((48, 40), (40, 48)))
    (photos / "notes.txt").write_text("not an image")
    (photos / "sub" / ".hidden.png").write_bytes(b"hidden files are left out")
    single = _write_images(tmp_path / "single", sizes=((40, 40),) * 2)[1]
    out = tmp_path / "maps"
    assert main(["maps", str(photos), str(single), "--out", str(out), "--size", "32",
                 "--no-progress"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_sigma.npy"))
    assert written == ["img0_sigma.npy", "img1_sigma.npy", "sub/deeper/img0_sigma.npy",
                       "sub/deeper/img1_sigma.npy"]
    assert _summary(capsys.readouterr().out) == f"wrote 4 maps to {out}, skipped 0"


def test_unreadable_file_stops_the_run_by_default(tmp_path, capsys):
    good = _write_images(tmp_path, sizes=((40, 40),))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "o"
    assert main(["maps", str(bad), *map(str, good), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("defocus-xai maps: error: ") and "broken.png" in err
    assert "--on-error skip" in err and "on_error" not in err


def test_on_error_skip_writes_the_good_maps_and_lists_the_skipped(tmp_path, capsys):
    good = _write_images(tmp_path / "in", sizes=((40, 40), (48, 40)))
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"not an image")
    empty = tmp_path / "in" / "empty.jpg"
    empty.write_bytes(b"")
    out = tmp_path / "o"
    assert main(["maps", str(tmp_path / "in"), "--out", str(out), "--size", "32", "--batch-size", "2",
                 "--on-error", "skip", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert _summary(captured.out) == f"wrote 2 maps to {out}, skipped 2"
    skipped = [line for line in captured.err.splitlines() if "skipped" in line]
    assert len(skipped) == 2 and "broken.png" in skipped[0] and "empty.jpg" in skipped[1]
    assert sorted(p.name for p in out.glob("*_sigma.npy")) == [f"{p.stem}_sigma.npy" for p in good]


def test_writes_are_atomic_per_image(tmp_path, monkeypatch, capsys):
    paths = _write_images(tmp_path, sizes=((40, 40), (48, 48)))
    out = tmp_path / "o"

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(maps_cli.np, "save", fail)
    assert main(["maps", *map(str, paths), "--out", str(out), "--size", "32", "--no-progress"]) == 1
    assert "No space left" in capsys.readouterr().err
    assert list(out.iterdir()) == []           # neither a half-written map nor a temporary file


def test_missing_input_and_bad_values_are_usage_errors_with_flag_names(tmp_path, capsys):
    (p,) = _write_images(tmp_path, sizes=((40, 40),))
    out = str(tmp_path / "o")
    cases = [([str(tmp_path / "nope.png")], "nope.png"),
             ([str(p), "--batch-size", "0"], "--batch-size"),
             ([str(p), "--std1", "3", "--std2", "2"], "--std1"),
             ([str(p), "--size", "4"], "--size"),
             ([str(p), "--recipe", "reference", "--propagation", "none"], "--propagation"),
             ([str(tmp_path / "o2")], "")]
    (tmp_path / "o2").mkdir()                      # a folder without images
    for argv, word in cases:
        assert main(["maps", *argv, "--out", out, "--no-progress"]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("defocus-xai maps: error: ") and word in err, (argv, err)
        assert not re.search(r"(?<!-)\b(batch_size|std1|size)\b=", err), err


def test_clashing_output_names_are_refused(tmp_path, capsys):
    a = _write_images(tmp_path / "a", sizes=((40, 40),))[0]
    b = _write_images(tmp_path / "b", sizes=((40, 40),))[0]
    assert main(["maps", str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    assert "img0" in capsys.readouterr().err


def test_small_inputs_and_edgeless_images_are_reported(tmp_path, capsys):
    small = tmp_path / "tiny.png"
    Image.fromarray(_image(16, 16)).save(small)
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((80, 80, 3), 128, np.uint8)).save(flat)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # reported as command-line warnings, not Python's
        assert main(["maps", str(small), str(flat), "--out", str(tmp_path / "o"), "--size", "80",
                     "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("defocus-xai maps: warning: ") and "tiny.png" in line and "16 x 16 px" in line
               for line in err), err
    assert any("warning: " in line and "flat.png" in line and "no edge" in line for line in err), err
    assert json.loads((tmp_path / "o" / "flat_sigma.json").read_text())["edgeless"] is True


def test_maps_help_gives_every_option_a_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["maps", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = re.findall(r"^\s+(--[a-z0-9-]+)", text, flags=re.M)
    assert {"--out", "--size", "--std1", "--std2", "--propagation", "--device", "--batch-size",
            "--on-error", "--no-preview", "--no-progress"} <= set(options)
    blocks = re.split(r"\n  (?=-)", text.split("options:")[-1])   # one block per option
    assert len(blocks) > 10
    for block in blocks[1:]:
        if block.startswith("-h"):
            continue
        assert "default" in block or "required" in block, block
