"""The command line as a whole: help texts of every sub-command, one error convention, flag names in messages."""

import argparse

import numpy as np
import pytest
import torch

from defocus_xai.cli import build_parser, main
from defocus_xai.cli._common import BUNDLED_NOTE, bundled_note, flag_names
from defocus_xai.store import load_attributions
from tests._toy_models import tiny_defocus_detector

torch.set_num_threads(1)


def _commands(parser=None, prefix=()):
    """(words, parser) of every sub-command, nested ones included."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _commands(sub, prefix + (name,))


COMMANDS = list(_commands())


def test_every_command_is_listed():
    names = {words[0] for words, _ in COMMANDS}
    assert {"export", "merge", "train", "evaluate", "maps", "demo", "synth"} <= names


@pytest.mark.parametrize("words,sub", COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_help_shows_defaults_and_no_backticks(words, sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main(list(words) + ["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "`" not in text, words
    formatter = sub._get_formatter()
    for action in sub._actions:
        if not action.option_strings or action.default is argparse.SUPPRESS or action.required:
            continue
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert "default" in formatter._expand_help(action).lower(), (words, action.option_strings)


def test_flag_names_translate_keyword_arguments():
    sub = dict(COMMANDS)[("export",)]
    msg = flag_names("use another output or resume=False; chunk_size and batch_size must be >= 1; "
                     "num_shards=2", sub)
    assert msg == ("use another output or --no-resume; --chunk-size and --batch-size must be >= 1; "
                   "--num-shards 2")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from defocus_xai.detect.checkpoints import save_detector

    path = tmp_path_factory.mktemp("det") / "det.pt"
    save_detector(tiny_defocus_detector(32), path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A labelled folder data set: two real and two fake PNGs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(1)
    for side in ("real", "fake"):
        (root / side).mkdir()
        for i in range(2):
            Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / side / f"{i}.png")
    return root


def _export_args(ckpt, out, *extra, data):
    return ["export", "--data", f"folder:{data}", "--size", "32", "--detector", str(ckpt), "--methods", "saliency",
            "--batch-size", "2", "--chunk-size", "2", "--device", "cpu", "--quiet", "--out", str(out), *extra]


def _error(capsys, command):
    err = capsys.readouterr().err
    assert f"defocus-xai {command}: error: " in err, err
    return err


@pytest.mark.parametrize("argv,needle", [
    (["export", "--data", "synth:4", "--out", "x", "--batch-size", "0"], "--batch-size"),
    (["export", "--data", "folder:/no/such/folder", "--out", "x"], "/no/such/folder"),
    (["export", "--data", "imagenet:/x", "--out", "x"], "--data"),
    (["export", "--data", "synth:4", "--detector", "/no/such.pt", "--out", "x"], "--detector"),
    (["export", "--data", "synth:4", "--out", "x", "--num-shards", "2", "--shard-index", "2"], "--shard-index"),
    (["export", "--data", "unlabeled:/no/such/photos", "--out", "x"], "/no/such/photos"),
    (["merge", "/no/such/store", "--out", "x"], "/no/such/store"),
    (["evaluate", "--data", "synth:4", "--detector", "/no/such.pt", "--out", "x"], "--detector"),
    (["evaluate", "--data", "folder:/no/such/folder", "--out", "x"], "--data"),
    (["train", "--data", "folder:/no/such/folder", "--out", "x"], "--data"),
    (["train", "--data", "synth:4", "--epochs", "0", "--out", "x"], "--epochs"),
])
def test_usage_errors_exit_2(argv, needle, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    assert needle in _error(capsys, argv[0])


def test_runtime_errors_exit_1(tmp_path, folder, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(_export_args(bad, tmp_path / "a", data=folder)) == 1
    assert "broken.pt" in _error(capsys, "export")
    assert main(["evaluate", "--data", f"folder:{folder}", "--detector", str(bad), "--out",
                 str(tmp_path / "e")]) == 1
    assert "broken.pt" in _error(capsys, "evaluate")
    (tmp_path / "empty").mkdir()
    assert main(["merge", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 1
    assert "index" in _error(capsys, "merge")


def test_export_rerun_with_other_settings_names_the_flag(tmp_path, ckpt, folder, capsys):
    out = tmp_path / "s"
    assert main(_export_args(ckpt, out, data=folder)) == 0
    assert main(_export_args(ckpt, out, "--seed", "3", "--methods", "integrated_gradients", data=folder)) == 1
    err = _error(capsys, "export")
    assert "other settings" in err and "--no-resume" in err and "resume=False" not in err
    assert main(_export_args(ckpt, out, "--num-shards", "2", data=folder)) == 1
    assert "another shard split" in _error(capsys, "export")
    assert main(_export_args(ckpt, out, "--num-shards", "2", "--no-resume", data=folder)) == 0
    with pytest.warns(UserWarning, match="not complete"):
        assert len(load_attributions(out)) == 2  # shard 0 of 2 only: nothing of the old split mixed in


def test_export_while_another_writes_fails_at_once(tmp_path, ckpt, folder, capsys):
    from defocus_xai.store.atomic import output_lock

    out = tmp_path / "busy"
    with output_lock(out):
        assert main(_export_args(ckpt, out, data=folder)) == 1
        err = _error(capsys, "export")
        assert str(out) in err and "another export (pid " in err
    assert main(_export_args(ckpt, out, data=folder)) == 0


def _photos(folder, n_good=3, bad=True):
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    for i in range(n_good):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(folder / ("sub" if i else "")
                                                                              / f"p{i}.png")
    if bad:
        (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return folder


def test_export_unlabeled_folder_skips_unreadable(tmp_path, ckpt, capsys):
    photos = _photos(tmp_path / "photos")
    args = ["export", "--data", f"unlabeled:{photos}", "--size", "32", "--detector", str(ckpt), "--methods",
            "saliency", "--device", "cpu", "--out"]
    assert main(args + [str(tmp_path / "raise.npz")]) == 1
    err = _error(capsys, "export")
    assert "broken.jpg" in err and "--on-error skip" in err
    assert not (tmp_path / "raise.npz").exists()
    assert main(args + [str(tmp_path / "skip.npz"), "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "skipped 1" in captured.out
    s = load_attributions(tmp_path / "skip.npz")
    assert len(s) == 3 and (s["labels"] == -1).all()
    assert sorted(s["source_ids"].tolist()) == ["p0", "sub/p1", "sub/p2"]
    assert np.isfinite(s["attr_defocus_saliency"]).all() and np.isfinite(s["scores"]).all()
    assert len(s.real()) == 0 and len(s.fake()) == 0


def test_bundled_detector_on_user_images_prints_the_note(tmp_path, ckpt, capsys):
    photos = _photos(tmp_path / "photos", n_good=1, bad=False)
    args = ["export", "--data", f"unlabeled:{photos}", "--methods", "saliency", "--device", "cpu", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "b.npz")]) == 0
    assert BUNDLED_NOTE in capsys.readouterr().err
    assert main(args + ["--detector", str(ckpt), "--out", str(tmp_path / "c.npz")]) == 0
    assert BUNDLED_NOTE not in capsys.readouterr().err  # the user's own detector
    assert bundled_note(["bundled-defocus", None], "synth") is None  # what they were trained on
    assert bundled_note(["x.pt", "bundled-rgb"], "folder") == BUNDLED_NOTE


def test_nan_detector_refused_by_evaluate_and_export(tmp_path, folder, capsys):
    from defocus_xai.detect.checkpoints import save_detector

    det = tiny_defocus_detector(32)
    with torch.no_grad():
        next(det.parameters())[0].fill_(float("nan"))
    path = tmp_path / "nan.pt"
    save_detector(det, path)
    assert main(["evaluate", "--data", f"folder:{folder}", "--detector", str(path), "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "e")]) == 1
    assert "nan.pt" in _error(capsys, "evaluate") and not (tmp_path / "e" / "metrics.json").exists()
    assert main(_export_args(path, tmp_path / "x.npz", data=folder)) == 1
    assert "nan.pt" in _error(capsys, "export") and not (tmp_path / "x.npz").exists()
