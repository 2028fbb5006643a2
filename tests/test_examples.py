"""The scripts in ``examples/``: ``--help`` and a run of each on tiny data made on the fly.

The scripts are run in-process (``main(argv)``, loaded from their files) to share one torch import, and
one of them once as a real subprocess. Detectors are tiny untrained ones saved to a temporary folder,
so the tests do not depend on the bundled weights (except ``--demo`` of ``figures_from_npz.py``).
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = ["maps_for_folder", "export_ffpp", "figures_from_npz"]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _save_png(sample, path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (sample["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    """Paths of a tiny defocus detector (64 px maps) and a tiny RGB detector."""
    import torch

    from defocus_xai.detect import DefocusDetector, RGBDetector, save_detector

    d = tmp_path_factory.mktemp("detectors")
    torch.manual_seed(0)
    save_detector(DefocusDetector("small-cnn", estimator={"size": 64}, widths=(4, 8)), d / "defocus.pt",
                  training_data="none (test)")
    save_detector(RGBDetector("small-cnn", widths=(4, 8)), d / "rgb.pt", training_data="none (test)")
    return d / "defocus.pt", d / "rgb.pt"


@pytest.fixture(scope="module")
def ffpp_tree(tmp_path_factory):
    """A FaceForensics++ layout: 5 real videos of 2 frames and their Face2Face fakes ``<k>_<k+1>``."""
    import defocus_xai as dx

    root = tmp_path_factory.mktemp("ffpp")
    synth = dx.DefocusSynth(20, size=64, seed=3, families=("splice",))
    for k in range(5):
        for j in range(2):
            i = 2 * (2 * k + j)
            _save_png(synth[i], root / "original_sequences/youtube/c23/v1faces" / f"{k:03d}" / f"{j:04d}.png")
            _save_png(synth[i + 1], root / "manipulated_sequences/Face2Face/c23/v1faces" /
                      f"{k:03d}_{(k + 1) % 5:03d}" / f"{j:04d}.png")
    return root


@pytest.fixture(scope="module")
def ffpp_store(tmp_path_factory, ffpp_tree, detectors):
    out = tmp_path_factory.mktemp("exports") / "ffpp"
    code = _load("export_ffpp").main([str(ffpp_tree), "--out", str(out), "--methods", "Face2Face",
                                      "--compression", "c23", "--split", "all", "--frames-per-video", "2",
                                      "--detector", str(detectors[0]), "--rgb-detector", str(detectors[1]),
                                      "--n-samples", "4", "--background", "2", "--chunk-size", "8", "--quiet"])
    assert code == 0
    return out


def test_readme_lists_every_example():
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for script in sorted(EXAMPLES.glob("*.py")):
        assert f"`{script.name}`" in readme, f"examples/README.md does not list {script.name}"


@pytest.mark.slow
def test_help_as_a_script():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "maps_for_folder.py"), "--help"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "usage: maps_for_folder.py" in proc.stdout


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        _load(name).main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "usage:" in text and "--out" in text
    assert "Examples" in text and "python examples/" in text  # the docstring's examples are the epilog


@pytest.mark.parametrize("name", SCRIPTS)
def test_without_input_is_a_usage_error(name, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _load(name).main(["--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "one of" in capsys.readouterr().err


def test_maps_for_folder_keeps_the_structure(tmp_path):
    import defocus_xai as dx

    synth = dx.DefocusSynth(4, size=64, seed=0)
    folder = tmp_path / "images"
    for i in range(4):  # the same file names under real/ and fake/: no collision thanks to the sub-folders
        _save_png(synth[i], folder / ("real" if synth[i]["label"] == 0 else "fake") / f"img{i // 2}.png")
    (folder / ".hidden").mkdir()
    _save_png(synth[0], folder / ".hidden" / "skip.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "maps"
    code = _load("maps_for_folder").main([str(folder), "--out", str(out), "--size", "32", "--device", "cpu",
                                          "--preview", "1"])
    assert code == 0
    for sub in ("real", "fake"):
        for k in range(2):
            sigma = np.load(out / sub / f"img{k}_sigma.npy")
            assert sigma.shape == (32, 32) and sigma.dtype == np.float32 and np.isfinite(sigma).all()
            assert json.loads((out / sub / f"img{k}_sigma.json").read_text())["estimator"]["size"] == 32
    assert not (out / ".hidden").exists()
    assert len(list((out / "preview").glob("*_triptych.png"))) == 1


def test_maps_for_folder_on_builtin_data(tmp_path):
    out = tmp_path / "maps"
    assert _load("maps_for_folder").main(["--synth", "2", "--out", str(out), "--size", "32"]) == 0
    assert len(list(out.glob("*_sigma.npy"))) == 2


def test_maps_for_folder_reports_an_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _load("maps_for_folder").main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no image" in capsys.readouterr().err


@pytest.mark.slow
def test_export_ffpp(ffpp_store):
    import defocus_xai as dx

    store = dx.load_attributions(ffpp_store)
    assert len(store) == 20
    assert {"dmaps", "defocus_shaps", "rgb_shaps", "scores", "source_ids", "families"} <= set(store.keys())
    fake, real = store.fake(), store.real()
    assert len(fake) == len(real) == 10
    assert set(fake["families"]) == {"Face2Face"}
    # a fake <k>_<k+1> comes from real video <k>: they share the source id
    assert set(fake["source_ids"]) == set(real["source_ids"])
    assert store.meta["attributions"]["defocus_shaps"]["n_samples"] == 4
    assert len(list(Path(ffpp_store).glob("shard-*.npz"))) == 3  # chunks of 8


@pytest.mark.slow
def test_export_ffpp_demo(tmp_path, detectors):
    import defocus_xai as dx

    out = tmp_path / "demo"
    assert _load("export_ffpp").main(["--demo", "--out", str(out), "--detector", str(detectors[0]),
                                      "--rgb-detector", "none", "--quiet"]) == 0
    store = dx.load_attributions(out)
    assert len(store) == 24 and "rgb_shaps" not in store.keys()


@pytest.mark.slow
def test_figures_from_npz(ffpp_store, tmp_path):
    out = tmp_path / "figures"
    code = _load("figures_from_npz").main([str(ffpp_store), "--out", str(out), "--formats", "png", "--n-boot",
                                           "50", "--n-permutations", "10", "--max-examples", "1", "--dpi", "60"])
    assert code == 0
    index = (out / "figures.md").read_text(encoding="utf-8")
    for stem in ("mask_example_0", "activation_curve", "variance_distributions", "alignment_comparison"):
        assert (out / f"{stem}.png").is_file(), stem
        assert stem in index


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*the export is not complete:UserWarning")
def test_figures_from_npz_reads_several_stores(ffpp_tree, detectors, tmp_path, capsys):
    # the two shards of one export, written by "two machines" into their own directories
    export = _load("export_ffpp").main
    shards = [tmp_path / f"shard{k}" for k in range(2)]
    for k, out in enumerate(shards):
        assert export([str(ffpp_tree), "--out", str(out), "--methods", "Face2Face", "--compression", "c23",
                       "--split", "all", "--frames-per-video", "2", "--detector", str(detectors[0]),
                       "--rgb-detector", "none", "--n-samples", "2", "--num-shards", "2", "--shard-index",
                       str(k), "--quiet"]) == 0
    assert "defocus-xai merge" in capsys.readouterr().out
    out = tmp_path / "figures"
    code = _load("figures_from_npz").main([*map(str, shards), "--out", str(out), "--formats", "png", "--n-boot",
                                           "20", "--n-permutations", "5", "--max-examples", "1", "--dpi", "40",
                                           "--embed-method", "pca"])
    assert code == 0
    assert "20 samples (10 fake)" in capsys.readouterr().out
    assert (out / "mask_example_0.png").is_file()


@pytest.mark.slow
def test_figures_from_npz_demo(tmp_path):
    out = tmp_path / "figures"
    assert _load("figures_from_npz").main(["--demo", "--out", str(out), "--formats", "png", "--n-boot", "50",
                                           "--n-permutations", "10", "--dpi", "60"]) == 0
    assert (out / "figures.md").is_file() and (out / "demo_store" / "index.json").is_file()
