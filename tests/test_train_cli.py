"""Train for one short epoch and evaluate end to end through the command line."""

import json

import pandas as pd
import pytest
import torch

from defocus_xai.cli import main
from defocus_xai.data.synth import FAMILIES_V2

torch.set_num_threads(1)


@pytest.mark.slow
def test_train_then_evaluate_cli(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", "synth:32:0", "--val-data", "synth:16:5", "--model", "defocus", "--size", "64",
            "--epochs", "1", "--batch-size", "8", "--seed", "0", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    for name in ("best.pt", "best.json", "last.pt", "checkpoint.pt", "history.json", "train_summary.json"):
        assert (out / name).is_file(), name
    side = json.loads((out / "best.json").read_text())
    assert side["arch"] == "defocus" and side["config"]["estimator"]["size"] == 64
    assert side["training"]["n_train"] == 32 and "synth:32:0" in side["training_data"]
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 1 and hist[0]["epoch"] == 1 and "val_auc" in hist[0]

    # rerunning the same command resumes: nothing left to do, same weights
    before = (out / "last.pt").read_bytes()
    assert main(args) == 0
    assert "resuming" in capsys.readouterr().out
    assert (out / "last.pt").read_bytes() == before
    # a different configuration is refused instead of silently mixing runs
    assert main(args[:-3] + ["--lr", "0.01", "--out", str(out), "--no-progress"]) == 1  # a runtime error
    err = capsys.readouterr().err
    assert "defocus-xai train: error: " in err and "different run" in err
    assert "--no-resume" in err and "resume=False" not in err

    ev = tmp_path / "eval"
    assert main(["evaluate", "--detector", str(out / "best.pt"), "--data", "synth:16:1:v2.0", "--out", str(ev),
                 "--batch-size", "8", "--no-progress"]) == 0
    report = json.loads((ev / "metrics.json").read_text())
    assert report["metrics"]["n"] == 16 and report["size"] == 64
    assert report["detector"]["arch"] == "defocus" and report["detector"]["checksum"].startswith("sha256:")
    per_group = pd.read_csv(ev / "per_group.csv", index_col=0)
    assert set(per_group.index) == {*FAMILIES_V2, "all"}
    assert (per_group["n_real"] == 8).all()
    scores = pd.read_csv(ev / "scores.csv")
    assert len(scores) == 16 and scores["score"].between(0, 1).all()


@pytest.mark.slow
def test_train_rgb_cli_without_cache(tmp_path):
    out = tmp_path / "rgb"
    assert main(["train", "--data", "synth:16", "--model", "rgb", "--size", "48", "--epochs", "1",
                 "--batch-size", "8", "--no-cache", "--out", str(out), "--no-progress"]) == 0
    from defocus_xai.detect import RGBDetector, load_detector

    assert isinstance(load_detector(out / "best.pt", device="cpu"), RGBDetector)


def test_data_spec_parsing():
    from defocus_xai.data.spec import dataset_from_spec, parse_data_spec

    assert parse_data_spec("synth") == ("synth", {})
    assert parse_data_spec("synth:10:4") == ("synth", {"n": 10, "seed": 4})
    assert parse_data_spec("ff++:/x/y") == ("ff++", {"path": "/x/y"})
    assert parse_data_spec("ff++:/x/y:val") == ("ff++", {"path": "/x/y", "split": "val"})
    assert parse_data_spec("folder:/x/test") == ("folder", {"path": "/x/test"})
    for bad in ("synth:a", "synth:1:2:3", "imagenet:/x", "folder", ""):
        with pytest.raises(ValueError):
            parse_data_spec(bad)
    ds = dataset_from_spec("synth:6", size=32, role="test")
    assert len(ds) == 6 and ds.seed == 1 and ds.size == 32
    with pytest.raises(ValueError):
        dataset_from_spec("folder:/definitely/not/here")


def test_evaluate_bundled_default_detector_cli(tmp_path):
    """``evaluate`` defaults to bundled-defocus and feeds it images at its trained size (128 px)."""
    ev = tmp_path / "ev"
    assert main(["evaluate", "--data", "synth:16:1:v2.0", "--out", str(ev), "--batch-size", "16",
                 "--no-progress"]) == 0
    report = json.loads((ev / "metrics.json").read_text())
    assert report["size"] == 128 and report["detector"]["name"] == "bundled-defocus"
    assert report["detector"]["estimator"]["size"] == 128
    assert report["metrics"]["n"] == 16 and report["metrics"]["roc_auc"] > 0.5
