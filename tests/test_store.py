"""The .npz attribution store: round trip, validation, safety against pickles, legacy files."""

import json
import os
import warnings
import zipfile

import numpy as np
import pytest

from defocus_xai.store import (
    AttributionSet,
    load_attributions,
    load_store_arrays,
    merge_exports,
    read_index,
    shard_name,
    write_index,
    write_npz,
    write_shard,
)

S0, S1 = shard_name(0, 1, 0), shard_name(0, 1, 1)


def _arrays(n=4, h=8, w=8, seed=0, offset=0):
    rng = np.random.default_rng(seed)
    return {
        "dmaps": rng.random((n, h, w), dtype=np.float32),
        "defocus_shaps": rng.standard_normal((n, h, w)).astype(np.float32),
        "rgb_shaps": rng.standard_normal((n, 3, h, w)).astype(np.float32),
        "labels": (np.arange(n) % 2).astype(np.int8),
        "paths": np.array([f"img{offset + i}.png" for i in range(n)]),
        "families": np.array(["real" if i % 2 == 0 else "splice" for i in range(n)]),
        "sample_index": np.arange(offset, offset + n, dtype=np.int64),
        "attr_defocus_saliency": rng.random((n, h, w), dtype=np.float32),
    }


def test_round_trip_single_file(tmp_path):
    arrays = _arrays()
    p = write_shard(tmp_path / "a.npz", arrays, meta={"hello": "world"})
    # plain arrays only: loadable without pickle
    with np.load(p, allow_pickle=False) as z:
        assert set(z.files) == set(arrays) | {"meta"}
        meta = json.loads(str(z["meta"]))
    assert meta["hello"] == "world" and meta["schema_version"] == 1 and "library_version" in meta
    s = load_attributions(p)
    assert isinstance(s, AttributionSet) and len(s) == 4
    assert set(s.keys()) == set(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(s[k], v)
        assert s[k].dtype == v.dtype
    assert s.meta["hello"] == "world"
    assert s.shape("rgb_shaps") == (4, 3, 8, 8)
    np.testing.assert_array_equal(s.real()["paths"], arrays["paths"][0::2])
    np.testing.assert_array_equal(s.fake()["dmaps"], arrays["dmaps"][1::2])
    assert len(s.subset(families="splice")) == 2


def test_no_tmp_file_left(tmp_path):
    write_shard(tmp_path / "a.npz", _arrays())
    assert sorted(os.listdir(tmp_path)) == ["a.npz"]


def test_sharded_directory_lazy(tmp_path):
    a, b = _arrays(3, seed=1), _arrays(5, seed=2, offset=3)
    write_shard(tmp_path / S0, a)
    write_shard(tmp_path / S1, b)
    write_index(tmp_path, [{"file": S0, "n": 3}, {"file": S1, "n": 5}], complete=True)
    assert read_index(tmp_path)["num_samples"] == 8
    s = load_attributions(tmp_path)
    assert len(s) == 8 and s.num_shards == 2
    np.testing.assert_array_equal(s["sample_index"], np.arange(8))
    np.testing.assert_array_equal(s["dmaps"], np.concatenate([a["dmaps"], b["dmaps"]]))
    fake = s.fake()
    np.testing.assert_array_equal(fake["labels"], np.ones(len(fake), np.int8))
    parts = list(s.iter_shards(["labels"]))
    assert [len(p["labels"]) for p in parts] == [3, 5]


def test_incomplete_index_warns(tmp_path):
    write_shard(tmp_path / S0, _arrays(2))
    write_index(tmp_path, [{"file": S0, "n": 2}], complete=False)
    with pytest.warns(UserWarning, match="not complete"):
        assert len(load_attributions(tmp_path)) == 2


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("bogus", np.zeros(4, np.float32), "unknown key 'bogus'"),
        ("dmaps", np.zeros((4, 8), np.float32), "'dmaps' has shape"),
        ("labels", np.zeros(4, np.float32), "'labels' has dtype"),
        ("paths", np.zeros(4, np.int64), "'paths' has dtype"),
        ("rgb_shaps", np.zeros((4, 2, 8, 8), np.float32), "rgb_shaps"),
        ("scores", np.zeros(5, np.float32), "number of samples"),
        ("defocus_shaps", np.zeros((4, 9, 9), np.float32), "disagree on"),
    ],
)
def test_write_rejects_bad_arrays(tmp_path, key, value, match):
    arrays = _arrays()
    arrays[key] = value
    with pytest.raises(ValueError, match=match):
        write_shard(tmp_path / "bad.npz", arrays)
    assert not os.listdir(tmp_path)


def test_read_rejects_bad_file_naming_file_and_key(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, labels=np.zeros(3, np.int8), dmaps=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"bad\.npz.*'dmaps'"):
        load_attributions(p)


class _Evil:
    """Unpickling this object creates a file (stands for arbitrary code)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_object_array_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned.txt"
    p = tmp_path / "evil.npz"
    evil = np.empty(2, dtype=object)
    evil[0], evil[1] = _Evil(str(marker)), _Evil(str(marker))
    np.savez(p, dmaps=evil, labels=np.zeros(2, np.int8), meta=np.array("{}"))
    assert not marker.exists()
    with pytest.raises(ValueError, match="unpickling runs code"):
        load_attributions(p)
    with pytest.raises(ValueError, match="unpickling runs code"):
        load_attributions((p, p))
    assert not marker.exists()


def _reference_pair(tmp_path, n_real=3, n_fake=2, hw=6, real_paths=None, fake_paths=None):
    """Files laid out like the reference notebooks' output: object arrays of per-sample arrays.

    With ``real_paths`` / ``fake_paths``, the files also carry each sample's image path (an object array).
    """
    rng = np.random.default_rng(0)

    def obj(items):
        a = np.empty(len(items), dtype=object)
        for i, it in enumerate(items):
            a[i] = it
        return a

    def one(n):
        dm = [rng.random((hw, hw)).astype(np.float32) for _ in range(n)]
        ds = [rng.standard_normal((1, 1, hw, hw, 1)) for _ in range(n)]  # shap output of one image
        rs = [rng.standard_normal((hw, hw)) for _ in range(n)]  # channel 0 only
        return dm, ds, rs

    real, fake = tmp_path / "shap_data_real.npz", tmp_path / "shap_data_fake_Deepfakes.npz"
    r, f = one(n_real), one(n_fake)
    extra_r = {} if real_paths is None else {"paths": obj(real_paths)}
    extra_f = {} if fake_paths is None else {"paths": obj(fake_paths)}
    np.savez(real, dmaps=obj(r[0]), defocus_shaps=obj(r[1]), rgb_shaps=obj(r[2]), **extra_r)
    np.savez(fake, dmaps=obj(f[0]), defocus_shaps=obj(f[1]), rgb_shaps=obj(f[2]), **extra_f)
    return real, fake, r, f


FF = "/data/ff++"
FFPP_REAL = [f"{FF}/original_sequences/youtube/raw/v1faces/800/0000.png",
             f"{FF}/original_sequences/youtube/raw/v1faces/800/0001.png",
             f"{FF}/original_sequences/youtube/raw/v1faces/801/0000.png"]
FFPP_FAKE = [f"{FF}/manipulated_sequences/Deepfakes/raw/v1faces/801_802/0000.png",
             f"{FF}/manipulated_sequences/Deepfakes/raw/v1faces/800_840/0001.png"]


def test_legacy_pair_needs_opt_in(tmp_path):
    real, fake, _, _ = _reference_pair(tmp_path)
    with pytest.raises(ValueError, match="allow_legacy_pickle=True"):
        load_attributions((real, fake))


def test_legacy_pair_opt_in(tmp_path):
    real, fake, r, f = _reference_pair(tmp_path)
    with pytest.warns(UserWarning, match="no video ids"):
        s = load_attributions((real, fake), allow_legacy_pickle=True)
    assert len(s) == 5
    np.testing.assert_array_equal(s["labels"], np.array([0, 0, 0, 1, 1], np.int8))
    assert s["dmaps"].dtype == np.float32 and s["dmaps"].shape == (5, 6, 6)
    np.testing.assert_allclose(s["dmaps"][3], f[0][0])
    assert s["defocus_shaps"].shape == (5, 6, 6)
    np.testing.assert_allclose(s["defocus_shaps"][0], r[1][0][0, 0, :, :, 0], rtol=1e-6)
    assert s["rgb_shaps"].shape == (5, 6, 6)  # the reference's channel 0
    assert s.fake()["families"].tolist() == ["Deepfakes", "Deepfakes"]
    assert s.meta.get("legacy") is True


def test_legacy_pair_groups_inferred_from_ffpp_paths(tmp_path):
    real, fake, _, _ = _reference_pair(tmp_path, real_paths=FFPP_REAL, fake_paths=FFPP_FAKE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # groups found: no warning
        s = load_attributions((real, fake), allow_legacy_pickle=True)
    assert s.real()["source_ids"].tolist() == ["800", "800", "801"]  # the videos
    assert s.fake()["source_ids"].tolist() == ["801", "800"]  # each fake in its target's group
    assert s["paths"].tolist() == FFPP_REAL + FFPP_FAKE


def test_legacy_pair_without_paths_warns_once_naming_the_files(tmp_path):
    real, fake, _, _ = _reference_pair(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = load_attributions((real, fake), allow_legacy_pickle=True)
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1
    assert "carry no video ids" in msgs[0] and "groups=..." in msgs[0] and "about 2 videos" in msgs[0]
    assert str(real) in msgs[0] and str(fake) in msgs[0]
    assert "source_ids" not in s


def test_legacy_pair_with_unparsable_paths_warns(tmp_path):
    real, fake, _, _ = _reference_pair(tmp_path, real_paths=FFPP_REAL,
                                       fake_paths=["frames/a.png", f"{FF}/manipulated_sequences/Deepfakes/x/y.png"])
    with pytest.warns(UserWarning, match="no video ids"):
        s = load_attributions((real, fake), allow_legacy_pickle=True)
    assert "source_ids" not in s


def test_legacy_pair_takes_given_groups(tmp_path):
    real, fake, _, _ = _reference_pair(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = load_attributions((real, fake), allow_legacy_pickle=True, groups=["a", "a", "b", "b", "a"])
    assert s.fake()["source_ids"].tolist() == ["b", "a"]
    with pytest.raises(ValueError, match="5 samples"):
        load_attributions((real, fake), allow_legacy_pickle=True, groups=["a", "b"])
    with pytest.raises(ValueError, match="reference notebooks' files only"):
        load_attributions(write_shard(tmp_path / "ours.npz", _arrays()), groups=["a"] * 4)


def test_legacy_single_file_needs_pair(tmp_path):
    real, _, _, _ = _reference_pair(tmp_path)
    with pytest.raises(ValueError, match="pair"):
        load_attributions(real, allow_legacy_pickle=True)


def test_missing_index_and_missing_shard(tmp_path):
    with pytest.raises(ValueError, match="no index"):
        load_attributions(tmp_path)
    write_index(tmp_path, [{"file": S0, "n": 1}], complete=True)
    with pytest.raises(ValueError, match="does not exist"):
        load_attributions(tmp_path)


def test_load_store_arrays(tmp_path):
    arrays = _arrays()
    p = write_shard(tmp_path / "a.npz", arrays)
    got = load_store_arrays(p, keys=["labels", "dmaps", "features"])
    assert sorted(got) == ["dmaps", "labels"]
    np.testing.assert_array_equal(got["dmaps"], arrays["dmaps"])
    assert set(load_store_arrays(load_attributions(p))) == set(arrays)


def test_write_npz_assembles_shards(tmp_path):
    a, b = _arrays(3, seed=1), _arrays(2, seed=2, offset=3)
    b["paths"] = np.array(["a/much/longer/path.png", "x.png"])  # wider unicode in one shard
    out = write_npz(tmp_path / "all.npz", [write_shard(tmp_path / S0, a), write_shard(tmp_path / S1, b)],
                    meta={"note": 1})
    with np.load(out, allow_pickle=False) as z:
        assert set(z.files) == set(a) | {"meta"}
        for k in a:
            np.testing.assert_array_equal(z[k], np.concatenate([a[k], b[k]]), err_msg=k)
        assert json.loads(str(z["meta"]))["note"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["all.npz", S0, S1])  # no temporary file


def _store(tmp_path, shards):
    for name, arrays in shards:
        write_shard(tmp_path / name, arrays)
    write_index(tmp_path, [{"file": name, "n": len(arrays["labels"])} for name, arrays in shards], complete=True)
    return tmp_path


@pytest.mark.parametrize("entry", ["../outside.npz", "/etc/passwd", "sub/" + S0, "s0.npz", "index.json"])
def test_index_entry_not_allowed(tmp_path, entry):
    store = tmp_path / "store"
    _store(store, [(S0, _arrays(2))])
    outside = tmp_path / "outside.npz"
    write_shard(outside, _arrays(2))
    doc = json.loads((store / "index.json").read_text())
    doc["shards"][0]["file"] = entry
    (store / "index.json").write_text(json.dumps(doc))
    for call in (lambda: load_attributions(store), lambda: merge_exports([store], tmp_path / "m")):
        with pytest.raises(ValueError, match="index.json.*not allowed") as err:
            call()
        assert "exist" not in str(err.value)
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="not allowed"):
        write_index(store, [{"file": entry, "n": 2}])


@pytest.mark.parametrize("doc,match", [
    ([], "not a defocus_xai attribution index"),
    ({"format": "defocus_xai.attributions", "shards": [{"n": 2}]}, "malformed shard entry"),
    ({"format": "defocus_xai.attributions", "shards": {"a": 1}}, "malformed index"),
    ({"format": "defocus_xai.attributions", "shards": [{"file": S0, "n": "2"}]}, "sample count"),
])
def test_malformed_index_is_a_value_error(tmp_path, doc, match):
    _store(tmp_path, [(S0, _arrays(2))])
    (tmp_path / "index.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match) as err:
        load_attributions(tmp_path)
    assert "index.json" in str(err.value)


def test_duplicate_sample_indices_refused(tmp_path):
    store = _store(tmp_path, [(S0, _arrays(2)), (S1, _arrays(2, seed=3))])  # both hold samples 0 and 1
    with pytest.raises(ValueError, match="sample index 0"):
        load_attributions(store)
    doc = json.loads((store / "index.json").read_text())
    doc["shards"].append(doc["shards"][0])  # one shard listed twice
    doc["shards"].pop(1)
    (store / "index.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="sample index"):
        load_attributions(store)


def test_one_grid_per_key_across_shards(tmp_path):
    store = _store(tmp_path / "s", [(S0, _arrays(2)), (S1, _arrays(2, h=6, w=6, offset=2))])
    with pytest.raises(ValueError, match="one grid per key"):
        load_attributions(store)
    with pytest.raises(ValueError, match="one grid per key"):
        merge_exports([store], tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_header_claiming_more_data_than_the_file_holds(tmp_path):
    """A 468-byte .npz whose header claims 200000 x 256 x 256 floats is refused from the headers."""
    p = tmp_path / "bomb.npz"
    with zipfile.ZipFile(p, "w") as z:
        with z.open("dmaps.npy", "w") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (200000, 256, 256)})
            f.write(b"\0" * 16)
        with z.open("labels.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(200000, np.int8)[:2])
    assert p.stat().st_size < 1000
    with pytest.raises(ValueError, match=r"bomb\.npz.*claims shape \(200000, 256, 256\)"):
        load_attributions(p)


def test_corrupt_shard_is_a_value_error_naming_the_file(tmp_path):
    store = _store(tmp_path, [(S0, _arrays(4, h=64, w=64))])
    data = bytearray((store / S0).read_bytes())
    pos = data.find(b"NUMPY", data.find(b"dmaps.npy")) + 40000  # inside the dmaps data
    data[pos] ^= 0xFF
    (store / S0).write_bytes(bytes(data))
    s = load_attributions(store)  # the headers are intact
    with pytest.raises(ValueError, match=f"{S0}.*corrupt"):
        s["dmaps"]
    (store / S0).write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=S0):
        load_attributions(store)


def test_merge_holds_the_output_lock(tmp_path):
    from defocus_xai.store.atomic import OutputLocked, output_lock

    store = _store(tmp_path / "s", [(S0, _arrays(2))])
    for out in (tmp_path / "m", tmp_path / "m.npz"):
        with output_lock(out, "export"):
            with pytest.raises(OutputLocked, match=rf"{out.name}: another export \(pid {os.getpid()}\)"):
                merge_exports([store], out)
        assert merge_exports([store], out) == out
    assert not list(tmp_path.glob("**/*lock"))


def test_merge_into_a_folder_holding_other_shards_refused(tmp_path):
    a = _store(tmp_path / "a", [(S0, _arrays(2))])
    other = _store(tmp_path / "other", [(shard_name(0, 2, 0), _arrays(2, seed=5, offset=8))])
    with pytest.raises(ValueError, match="not among the inputs"):
        merge_exports([a], other)
    assert merge_exports([a], a) == a  # into one of the inputs: fine


@pytest.mark.parametrize("what", ["shard", "index", "npz"])
def test_disk_full_names_the_file_and_leaves_no_tmp(tmp_path, monkeypatch, what):
    import errno

    from defocus_xai.store import atomic

    store = _store(tmp_path / "s", [(S0, _arrays(2))])
    real_replace = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    target, call = {
        "shard": (tmp_path / "s" / S1, lambda: write_shard(tmp_path / "s" / S1, _arrays(2, offset=2))),
        "index": (tmp_path / "s" / "index.json", lambda: write_index(tmp_path / "s", [], complete=True)),
        "npz": (tmp_path / "m.npz", lambda: merge_exports([store], tmp_path / "m.npz")),
    }[what]
    with pytest.raises(OSError, match=rf"{target.name}: no space left on device") as exc:
        call()
    assert exc.value.errno == errno.ENOSPC
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert not list(tmp_path.glob("**/.*.tmp")) and not list(tmp_path.glob("**/*.lock"))
