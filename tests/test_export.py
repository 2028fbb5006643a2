"""export_attributions: round trip, single .npz file, resume after a real kill, sharding, merge, torchrun."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from defocus_xai.explain import AttributionSettings, export_attributions
from defocus_xai.explain import export as export_mod
from defocus_xai.store import load_attributions, merge_exports, read_index
from tests._toy_models import ToyData, export_script, tiny_defocus_detector, tiny_rgb_detector

torch.set_num_threads(1)
N = 8
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _export(out, n=N, **kw):
    args = dict(methods=("shap_gradient", "saliency"), rgb_detector=tiny_rgb_detector(), background=2,
                n_samples=6, seed=5, batch_size=2, chunk_size=2, progress=False)
    args.update(kw)
    return export_attributions(tiny_defocus_detector(16), ToyData(n), out, **args)


def _assert_same(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a.keys():
        x, y = a[k], b[k]
        if exact or x.dtype.kind not in "f":
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7, err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    _export(out)
    return load_attributions(out)


def test_round_trip(reference):
    s = reference
    assert len(s) == N
    assert s["dmaps"].shape == (N, 16, 16) and s["dmaps"].dtype == np.float32
    assert s["defocus_shaps"].shape == (N, 16, 16)
    assert s["rgb_shaps"].shape == (N, 3, 16, 16)
    assert s["attr_defocus_saliency"].shape == (N, 16, 16)
    np.testing.assert_array_equal(s["labels"], np.arange(N) % 2)
    np.testing.assert_array_equal(s["sample_index"], np.arange(N))
    assert s["paths"][3] == "toy/0003.png" and s["source_ids"][3] == "scene1"
    assert s["gt_masks"].dtype == np.uint8 and s["gt_masks"][1].all() and not s["gt_masks"][0].any()
    m = s.meta
    assert m["schema_version"] == 1 and m["image_grid"] == {"height": 16, "width": 16}
    a = m["attributions"]["defocus_shaps"]
    assert a["engine"] == "batched" and a["n_samples"] == 6 and a["seed"] == 5
    assert a["background"].startswith("data: 2 real samples of the explained data (indices 0, 2)")
    assert a["background_info"]["paths"] == ["toy/0000.png", "toy/0002.png"]
    assert m["attributions"]["rgb_shaps"]["space"] == "rgb"
    assert m["estimator"]["size"] == 16 and "fingerprint" in m["export"]
    assert "arch" in m["detector"]
    idx = read_index(s.source)
    assert idx["complete"] and idx["num_samples"] == N and len(idx["shards"]) == N // 2
    # plain arrays only
    for f in Path(s.source).glob("shard-*.npz"):
        with np.load(f, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)


def test_chunked_writer_bounds_files(tmp_path, reference):
    out = _export(tmp_path / "c3", chunk_size=3, batch_size=3)
    idx = read_index(out)
    assert [e["n"] for e in idx["shards"]] == [3, 3, 2]
    # values do not depend on the chunk or batch size
    _assert_same(load_attributions(out), reference, exact=False)


def test_resume_skips_done_and_redoes_missing(tmp_path, reference):
    out = _export(tmp_path / "r")
    files = sorted(out.glob("shard-*.npz"))
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    files[1].unlink()
    (out / "index.json").unlink()
    _export(out)
    assert all(f.stat().st_mtime_ns == mtimes[f] for f in files if f != files[1])
    _assert_same(load_attributions(out), reference)


def test_resume_refuses_other_settings(tmp_path):
    out = _export(tmp_path / "s", n=4)
    with pytest.raises(ValueError, match="other settings"):
        _export(out, n=4, seed=6)
    _export(out, n=4, seed=6, resume=False)  # starts over
    assert load_attributions(out).meta["attributions"]["defocus_shaps"]["seed"] == 6


def test_resume_after_kill(tmp_path, reference):
    """A real SIGKILL part-way; the rerun equals the uninterrupted run exactly."""
    out = tmp_path / "killed"
    # saliency only: the child process skips importing shap (seconds on a busy machine)
    script = export_script(str(out), N, delay=0.25, methods=("saliency",))
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV, cwd=ROOT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(out.glob("shard-*.npz")):
            assert proc.poll() is None, "export finished or failed before it could be killed"
            time.sleep(0.02)
        assert list(out.glob("shard-*.npz")), "no shard file appeared"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    n_done = len(list(out.glob("shard-*.npz")))
    assert 1 <= n_done < N // 2, n_done
    assert not (out / "index.json").exists() or not read_index(out)["complete"]
    # the partial store is readable (complete files only)
    with pytest.warns(UserWarning, match="not complete"):
        assert len(load_attributions(out)) == 2 * n_done
    _export(out, methods=("saliency",))
    assert not list(out.glob(".*.tmp"))
    uninterrupted = _export(tmp_path / "whole", methods=("saliency",))
    _assert_same(load_attributions(out), load_attributions(uninterrupted))


def test_shards_and_merge(tmp_path, reference):
    a = _export(tmp_path / "a", num_shards=2, shard_index=0)
    b = _export(tmp_path / "b", num_shards=2, shard_index=1)
    ia, ib = read_index(a), read_index(b)
    assert ia["num_samples"] == ib["num_samples"] == N // 2 and not ia["complete"]
    merged = merge_exports([a, b], tmp_path / "m")
    assert read_index(merged)["complete"]
    _assert_same(load_attributions(merged), reference, exact=False)
    with pytest.raises(ValueError, match="overlap"):
        merge_exports([a, tmp_path / "m"], tmp_path / "m2")


def test_single_npz_file_plain_numpy(tmp_path, reference):
    out = _export(tmp_path / "shap_data.npz")
    assert out == tmp_path / "shap_data.npz" and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shap_data.npz"]  # parts folder removed
    with np.load(out, allow_pickle=False) as z:
        assert {"dmaps", "defocus_shaps", "rgb_shaps", "labels", "paths", "meta"} <= set(z.files)
        for k in reference.keys():
            np.testing.assert_array_equal(z[k], reference[k], err_msg=k)
        meta = json.loads(str(z["meta"]))
    assert meta["attributions"]["defocus_shaps"]["seed"] == 5 and "fingerprint" in meta["export"]
    s = load_attributions(out)
    assert len(s) == N and s.meta["image_grid"] == {"height": 16, "width": 16}
    assert _export(out) == out  # a finished export with the same settings: nothing to do
    with pytest.raises(ValueError, match="other settings"):
        _export(out, seed=6)


def test_resume_into_npz_target(tmp_path, reference, monkeypatch):
    """An export into name.npz that stopped part-way continues from its parts folder."""
    out, parts = tmp_path / "r.npz", tmp_path / "r.npz.parts"
    whole = sorted(_export(tmp_path / "whole").glob("shard-*.npz"))
    parts.mkdir()
    for f in whole[:2]:  # what a killed run leaves: two of four chunks
        shutil.copy2(f, parts / f.name)
    written = []
    real_write = export_mod.write_shard
    monkeypatch.setattr(export_mod, "write_shard", lambda path, *a, **kw: written.append(Path(path).name)
                        or real_write(path, *a, **kw))
    _export(out)
    assert written == [f.name for f in whole[2:]]
    assert not parts.exists()  # assembled, parts removed
    with np.load(out, allow_pickle=False) as z:
        for k in reference.keys():
            np.testing.assert_array_equal(z[k], reference[k], err_msg=k)


def test_npz_target_refuses_a_shard_split_or_a_folder(tmp_path):
    with pytest.raises(ValueError, match="merge_exports"):
        _export(tmp_path / "x.npz", num_shards=2, shard_index=0)
    (tmp_path / "old.npz").mkdir()  # what an export into "old.npz" made before single files
    with pytest.raises(ValueError, match="is a folder"):
        _export(tmp_path / "old.npz", n=2)


def test_merge_into_one_npz(tmp_path, reference):
    a = _export(tmp_path / "a", num_shards=2, shard_index=1)  # order of the inputs does not matter
    b = _export(tmp_path / "b", num_shards=2, shard_index=0)
    out = merge_exports([a, b], tmp_path / "m.npz")
    with np.load(out, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["sample_index"], np.arange(N))
    _assert_same(load_attributions(out), reference, exact=False)


def test_detector_given_back_as_it_came(tmp_path):
    det, rgb = tiny_defocus_detector(16).train(), tiny_rgb_detector().train()
    modes = [m.training for m in det.modules()]
    export_attributions(det, ToyData(2), tmp_path / "o.npz", methods=("saliency",), rgb_detector=rgb,
                        device="cpu", progress=False)
    assert [m.training for m in det.modules()] == modes and det.training and rgb.training
    assert next(det.parameters()).device.type == "cpu"


def test_settings_object_equals_keyword_options(tmp_path):
    kw = dict(methods=("saliency", "integrated_gradients"), n_steps=4, seed=3, progress=False, batch_size=2)
    a = export_attributions(tiny_defocus_detector(16), ToyData(4), tmp_path / "a.npz", **kw)
    settings = AttributionSettings(method="saliency", n_steps=4, seed=3, batch_size=2)
    b = export_attributions(tiny_defocus_detector(16), ToyData(4), tmp_path / "b.npz", settings=settings,
                            methods=kw["methods"], progress=False)
    sa, sb = load_attributions(a), load_attributions(b)
    _assert_same(sa, sb)
    assert sa.meta["export"]["fingerprint"] == sb.meta["export"]["fingerprint"]
    ig = sb.meta["attributions"]["attr_defocus_integrated_gradients"]
    assert ig["n_steps"] == 4 and ig["seed"] == 3 and ig["method"] == "integrated_gradients"
    with pytest.raises(ValueError, match="not both"):
        export_attributions(tiny_defocus_detector(16), ToyData(4), tmp_path / "c.npz", settings=settings, seed=1)


def test_cli_export_and_merge(tmp_path):
    from defocus_xai.cli import main
    from defocus_xai.detect.checkpoints import save_detector

    ckpt = tmp_path / "det.pt"
    save_detector(tiny_defocus_detector(32), ckpt)
    args = ["export", "--data", "synth:4:1", "--size", "32", "--detector", str(ckpt), "--methods", "saliency",
            "--batch-size", "2", "--chunk-size", "2", "--device", "cpu", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "x0"), "--num-shards", "2", "--shard-index", "0"]) == 0
    assert main(args + ["--out", str(tmp_path / "x1"), "--num-shards", "2", "--shard-index", "1"]) == 0
    assert main(["merge", str(tmp_path / "x0"), str(tmp_path / "x1"), "--out", str(tmp_path / "xm"),
                 "--quiet"]) == 0
    s = load_attributions(tmp_path / "xm")
    assert len(s) == 4 and s["paths"][2] == "synth:1:2" and "attr_defocus_saliency" in s
    assert main(["merge", str(tmp_path / "x0"), str(tmp_path / "x1"), "--out", str(tmp_path / "m.npz"),
                 "--quiet"]) == 0
    assert main(args + ["--out", str(tmp_path / "one.npz")]) == 0
    for name in ("m.npz", "one.npz"):
        with np.load(tmp_path / name, allow_pickle=False) as z:
            np.testing.assert_array_equal(z["attr_defocus_saliency"], s["attr_defocus_saliency"])


@pytest.mark.slow
def test_torchrun_two_processes_equal_single(tmp_path, reference):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    if not Path(torchrun).exists():
        pytest.skip("torchrun not found")
    out = tmp_path / "dist"
    script = tmp_path / "run_export.py"
    script.write_text(export_script(str(out), N, delay=0.0))
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(script)], env=ENV, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    idx = read_index(out)
    assert idx["complete"] and {e["shard_index"] for e in idx["shards"]} == {0, 1}
    _assert_same(load_attributions(out), reference, exact=False)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_export_on_cuda(tmp_path, reference):
    out = _export(tmp_path / "gpu", device="cuda")
    _assert_same(load_attributions(out), reference, exact=False)


def test_second_export_into_a_locked_output_fails_at_once(tmp_path):
    from defocus_xai.store.atomic import OutputLocked, output_lock

    for out in (tmp_path / "folder", tmp_path / "one.npz"):
        with output_lock(out):
            with pytest.raises(OutputLocked, match=rf"{out.name}: another export \(pid {os.getpid()}\)"):
                _export(out, n=2, methods=("saliency",), rgb_detector=None, background="zeros")
        assert _export(out, n=2, methods=("saliency",), rgb_detector=None, background="zeros") == out
        assert not list(tmp_path.glob("**/*.lock"))  # released and removed


def test_lock_held_by_another_process(tmp_path):
    out = tmp_path / "held"
    code = ("import sys, time; from defocus_xai.store.atomic import output_lock\n"
            f"with output_lock({str(out)!r}):\n    print('locked', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(OSError, match=rf"pid {proc.pid}\)"):
            _export(out, n=2, methods=("saliency",), rgb_detector=None, background="zeros")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    _export(out, n=2, methods=("saliency",), rgb_detector=None, background="zeros")  # a dead holder blocks nothing


def test_other_shard_split_refused_not_mixed(tmp_path, reference):
    out = _export(tmp_path / "split", num_shards=2, shard_index=0)
    with pytest.raises(ValueError, match="another shard split: 2 shards, not 1"):
        _export(out)
    assert len(list(out.glob("shard-*.npz"))) == 2  # nothing written, nothing removed
    _export(out, resume=False)  # starts over: the old split's files go
    assert read_index(out)["num_samples"] == N and len(list(out.glob("shard-00000-of-00002-*"))) == 0
    _assert_same(load_attributions(out), reference)
    # another shard of the same export into the same folder is fine (same settings and split)
    a = _export(tmp_path / "both", n=4, num_shards=2, shard_index=0)
    _export(a, n=4, num_shards=2, shard_index=1)
    assert read_index(a)["complete"]


def test_disk_full_removes_temporary_files_and_names_the_file(tmp_path, monkeypatch, reference):
    import errno

    calls = []

    def full(f, **arrays):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **arrays)

    real = np.savez
    monkeypatch.setattr(np, "savez", full)
    out = tmp_path / "full"
    with pytest.raises(OSError, match=r"shard-00000-of-00001-chunk-000001\.npz: no space left") as exc:
        _export(out)
    assert exc.value.errno == errno.ENOSPC
    assert not list(out.glob(".*.tmp")) and not (out / ".lock").exists()
    monkeypatch.setattr(np, "savez", real)
    _export(out)  # free space, rerun: resumes
    _assert_same(load_attributions(out), reference)


def test_nan_detector_refused_naming_detector_and_sample(tmp_path):
    det = tiny_defocus_detector(16)
    with torch.no_grad():
        next(det.parameters())[0].fill_(float("nan"))
    with pytest.raises(ValueError, match=r"scores of sample 0 \(toy/0000.png\) are not finite .* detector"):
        export_attributions(det, ToyData(2), tmp_path / "nan.npz", methods=("saliency",), progress=False)
    assert not (tmp_path / "nan.npz").exists() and not list((tmp_path / "nan.npz.parts").glob("shard-*"))


class _Scaled(ToyData):
    def __getitem__(self, i):
        s = super().__getitem__(i)
        return dict(s, image=s["image"] * 5)


def test_inputs_outside_their_range_refused(tmp_path):
    with pytest.raises(ValueError, match=r"sample 0 \(toy/0000.png\): image values span .* expected floats in "
                                         r"\[0, 1\]"):
        export_attributions(tiny_defocus_detector(16), _Scaled(2), tmp_path / "a.npz", methods=("saliency",),
                            progress=False)
    with pytest.raises(ValueError, match=r"background maps \(normalized\): image values span"):
        export_attributions(tiny_defocus_detector(16), ToyData(2), tmp_path / "b.npz", methods=("saliency",),
                            background=torch.full((2, 1, 16, 16), 5.0), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        export_attributions(tiny_defocus_detector(16), ToyData(2), tmp_path / "c.npz", methods=("saliency",),
                            background=torch.full((2, 3, 16, 16), float("nan")), progress=False)


def test_unlabeled_samples_are_label_minus_one(tmp_path):
    class Unlabeled(ToyData):
        def __getitem__(self, i):
            return dict(super().__getitem__(i), label=-1)

    s = load_attributions(export_attributions(tiny_defocus_detector(16), Unlabeled(2), tmp_path / "u.npz",
                                              methods=("saliency",), progress=False))
    assert s["labels"].tolist() == [-1, -1] and len(s.real()) == len(s.fake()) == 0
    with pytest.raises(ValueError, match="label 2"):
        export_attributions(tiny_defocus_detector(16), [{"image": torch.zeros(3, 16, 16), "label": 2}],
                            tmp_path / "v.npz", methods=("saliency",), progress=False)
