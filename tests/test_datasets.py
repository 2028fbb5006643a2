"""Tests for the dataset loaders on fixture trees built on the fly (tiny PNGs)."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from defocus_xai.data import (
    CIFAKEDataset,
    FaceForensicsDataset,
    FolderDataset,
    ImageDataset,
    ImageLoadError,
    collate,
)


def _png(path, value=128, size=(6, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def _broken(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return path


# ------------------------------------------------------------------------------------------- FF++ fixture
REAL_IDS = [f"{i:03d}" for i in range(10)]  # 000..009 -> 7 train, 1 val, 2 test
FRAMES = [f"{i:04d}" for i in range(5)]


def _ffpp(root, methods=("Deepfakes", "FaceSwap"), pairs=None, n_frames=5):
    """Real videos 000..009 with 5 frames each; fakes <t>_<s> per method (default t -> (t+1) mod 10)."""
    real_base = root / "original_sequences" / "youtube" / "raw" / "v1faces"
    for k, vid in enumerate(REAL_IDS):
        for f in FRAMES[:n_frames]:
            _png(real_base / vid / f"{f}.png", value=10 + k)
    pairs = pairs or [(t, REAL_IDS[(i + 1) % len(REAL_IDS)]) for i, t in enumerate(REAL_IDS)]
    for m in methods:
        base = root / "manipulated_sequences" / m / "raw" / "v1faces"
        for t, s in pairs:
            for f in FRAMES[:n_frames]:
                _png(base / f"{t}_{s}" / f"{f}.png", value=200)
    return root


def test_ffpp_items_and_ids(tmp_path):
    _ffpp(tmp_path)
    ds = FaceForensicsDataset(tmp_path, methods=("Deepfakes", "FaceSwap"), split=None, size=16)
    assert len(ds) == 10 * 5 * 3
    item = ds[0]
    assert set(item) == {"image", "label", "path", "source_id", "family", "video_id", "index"}
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["label"] == 0 and item["family"] == "real"
    assert item["source_id"] == item["video_id"] == "000" and item["index"] == 0
    fakes = [i for i in range(len(ds)) if ds.labels[i] == 1]
    f = ds[fakes[0]]
    assert f["family"] == "Deepfakes" and f["video_id"] == "Deepfakes/000_001" and f["source_id"] == "000"
    table = ds.to_frame()
    assert {"method", "frame", "target_id", "donor_id", "split"} <= set(table.columns)
    assert (table.loc[table.label == 1, "donor_id"] != "").all()
    assert (table.source_id == table.target_id).all()


def test_ffpp_split_disjoint_and_pairs_consistent(tmp_path):
    _ffpp(tmp_path)
    parts = {s: FaceForensicsDataset(tmp_path, methods=("Deepfakes", "FaceSwap"), split=s, size=None)
             for s in ("train", "val", "test")}
    real_videos = {s: set(ds.video_ids[ds.labels == 0]) for s, ds in parts.items()}
    assert real_videos["train"] == set(REAL_IDS[:7])
    assert real_videos["val"] == {REAL_IDS[7]}
    assert real_videos["test"] == set(REAL_IDS[8:])
    all_vids = [set(ds.video_ids) for ds in parts.values()]
    assert not (all_vids[0] & all_vids[1]) and not (all_vids[0] & all_vids[2]) and not (all_vids[1] & all_vids[2])
    for s, ds in parts.items():
        # every fake's source (target) real video is in the same split
        assert set(ds.source_ids[ds.labels == 1]) <= real_videos[s]
    total = sum(len(ds) for ds in parts.values())
    assert total == len(FaceForensicsDataset(tmp_path, methods=("Deepfakes", "FaceSwap"), split=None))


def test_ffpp_frame_cap_first_sorted(tmp_path):
    _ffpp(tmp_path, methods=("Deepfakes",))
    # add unpadded names to check natural order: 9 before 10
    vdir = tmp_path / "original_sequences/youtube/raw/v1faces/000"
    for f in vdir.iterdir():
        f.unlink()
    for i in (10, 2, 9, 1):
        _png(vdir / f"{i}.png")
    ds = FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split=None, frames_per_video=3, size=None)
    table = ds.to_frame()
    assert table.groupby("video_id").size().max() == 3
    assert list(table.loc[table.video_id == "000", "frame"]) == ["1", "2", "9"]
    assert list(table.loc[table.video_id == "Deepfakes/001_002", "frame"]) == FRAMES[:3]
    full = FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split=None, frames_per_video=None)
    assert len(full) == 4 + 9 * 5 + 10 * 5


def test_ffpp_pair_matches_target_frames(tmp_path):
    _ffpp(tmp_path)
    ds = FaceForensicsDataset(tmp_path, methods=("Deepfakes", "FaceSwap"), split="train", size=None)
    pairs = ds.pair()
    assert len(pairs) == int((ds.labels == 1).sum()) and pairs.paired.all()
    assert (pairs.reason == "").all()
    for row in pairs.itertuples():
        fake, real = ds[row.fake_index], ds[int(row.real_index)]
        assert fake["label"] == 1 and real["label"] == 0
        fake_video = fake["video_id"].split("/")[1]
        assert real["video_id"] == fake_video.split("_")[0] == fake["source_id"] == real["source_id"]
        assert real["path"].endswith(f"/{row.target_id}/{row.frame}.png")
        assert fake["path"].endswith(f"/{row.target_id}_{row.donor_id}/{row.frame}.png")
        assert row.real_path == real["path"] and row.fake_path == fake["path"]


def test_ffpp_unpaired_reported(tmp_path):
    _ffpp(tmp_path, methods=("Deepfakes",))
    # real 003 loses frame 0004; real 005 disappears entirely
    (tmp_path / "original_sequences/youtube/raw/v1faces/003/0004.png").unlink()
    real5 = tmp_path / "original_sequences/youtube/raw/v1faces/005"
    for f in real5.iterdir():
        f.unlink()
    real5.rmdir()
    ds = FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split=None, size=None)
    assert ds.excluded_videos == []  # split=None keeps every fake, 005_006 included
    assert "Deepfakes/005_006" in set(ds.video_ids)
    with pytest.warns(UserWarning, match="no real partner"):
        pairs = ds.pair()
    unpaired = pairs[~pairs.paired]
    assert len(unpaired) == 1 + 5
    assert set(unpaired.loc[unpaired.target_id == "003", "frame"]) == {"0004"}
    assert set(unpaired.loc[unpaired.target_id == "003", "reason"]) == {"frame not in real video"}
    assert set(unpaired.loc[unpaired.target_id == "005", "reason"]) == {"real video not in dataset"}
    assert unpaired.real_index.isna().all() and (unpaired.real_path == "").all()
    with pytest.raises(ValueError, match="no real partner"):
        ds.pair(require_all=True)


def test_ffpp_fake_without_real_excluded_from_split(tmp_path):
    _ffpp(tmp_path, methods=("Deepfakes",))
    _png(tmp_path / "manipulated_sequences/Deepfakes/raw/v1faces/999_000/0000.png")
    _png(tmp_path / "manipulated_sequences/Deepfakes/raw/v1faces/badname/0000.png")
    with pytest.warns(UserWarning, match="left out 2 video"):
        ds = FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split="test", size=None)
    reasons = dict((p.rsplit("/", 1)[-1], r) for p, r in ds.excluded_videos)
    assert "no real folder" in reasons["999_000"]
    assert "<target>_<source>" in reasons["badname"]


def test_ffpp_split_files_honoured(tmp_path):
    pairs = [("000", "003"), ("003", "000"), ("001", "002"), ("002", "001"), ("004", "005"), ("005", "004")]
    _ffpp(tmp_path, methods=("Deepfakes",), pairs=pairs)
    sf = tmp_path / "splits"
    sf.mkdir()
    (sf / "train.json").write_text(json.dumps([["000", "003"]]))
    (sf / "val.json").write_text(json.dumps([["001", "002"]]))
    (sf / "test.json").write_text(json.dumps([["004", "005"]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # videos 006..009 are listed in no split file: reported, not an error
        by_split = {s: FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split=s, split_files=sf)
                    for s in ("train", "val", "test")}
    assert set(by_split["train"].video_ids) == {"000", "003", "Deepfakes/000_003", "Deepfakes/003_000"}
    assert set(by_split["val"].video_ids) == {"001", "002", "Deepfakes/001_002", "Deepfakes/002_001"}
    assert set(by_split["test"].video_ids) == {"004", "005", "Deepfakes/004_005", "Deepfakes/005_004"}
    assert any(p.endswith("/009") for p, _ in by_split["train"].excluded_videos)
    # a dict of lists works too, and the default 70/10/20 split would have differed
    with pytest.warns(UserWarning, match="listed in no split file"):
        ds = FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split="train",
                                  split_files={"train": [["000", "003"]], "test": [["004", "005"]]})
    assert set(ds.source_ids) == {"000", "003"}
    with pytest.raises(ValueError, match="only give"):
        FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split="val", split_files={"train": [["0", "1"]]})
    with pytest.raises(ValueError, match="both"):
        FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split="train",
                             split_files={"train": [["000", "003"]], "test": [["003", "004"]]})


def test_ffpp_missing_method_and_root(tmp_path):
    _ffpp(tmp_path, methods=("Deepfakes",))
    with pytest.raises(ValueError, match=r"NeuralTextures.*Deepfakes"):
        FaceForensicsDataset(tmp_path, methods=("NeuralTextures",))
    with pytest.raises(ValueError, match="real frames folder"):
        FaceForensicsDataset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="split"):
        FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split="dev")


def test_ffpp_skip_bad_frame_and_pair_reason(tmp_path):
    _ffpp(tmp_path, methods=("Deepfakes",))
    bad = _broken(tmp_path / "original_sequences/youtube/raw/v1faces/001/0002.png")
    with pytest.raises(ImageLoadError) as ei:
        ds = FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split=None)
        [ds[i] for i in range(len(ds))]
    assert ei.value.path == str(bad)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split=None, on_error="skip", size=8)
    assert ds.skipped[0][0] == str(bad) and ds.skipped[0][1]
    assert str(bad) not in ds.paths
    with pytest.warns(UserWarning):
        pairs = ds.pair()
    row = pairs[~pairs.paired]
    assert list(row.reason) == ["real frame skipped as unreadable"]
    assert list(row.target_id) == ["001"] and list(row.frame) == ["0002"]


# ------------------------------------------------------------------------------------------- folder / CSV
def test_folder_layout(tmp_path):
    _png(tmp_path / "real" / "a.png", 0)
    _png(tmp_path / "real" / "sub" / "b.jpg", 0)
    _png(tmp_path / "fake" / "stylegan" / "c.png", 255)
    _png(tmp_path / "fake" / "d.PNG", 255)
    (tmp_path / "real" / "notes.txt").write_text("ignored")
    (tmp_path / "fake" / "._d.png").write_bytes(b"AppleDouble junk")  # hidden: ignored
    ds = FolderDataset(tmp_path, size=(4, 5))
    assert len(ds) == 4
    assert list(ds.labels) == [0, 0, 1, 1]
    assert list(ds.families) == ["real", "real", "fake", "stylegan"]
    assert ds.source_ids[0] == "real/a" and ds.source_ids[2] == "fake/d"
    item = ds[2]
    assert item["image"].shape == (3, 4, 5) and item["video_id"] == "" and item["index"] == 2
    assert torch.allclose(item["image"], torch.ones(3, 4, 5))
    assert ds[-1]["index"] == 3
    assert ds[np.int64(1)]["index"] == 1 and ds[torch.tensor(2)]["index"] == 2
    with pytest.raises(TypeError):
        ds[1.0]
    with pytest.raises(IndexError):
        ds[4]


def test_folder_uppercase_and_errors(tmp_path):
    _png(tmp_path / "REAL" / "a.png")
    assert len(FolderDataset(tmp_path)) == 1
    with pytest.raises(ValueError, match="neither"):
        FolderDataset(tmp_path / "REAL")
    (tmp_path / "fake").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "real").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        FolderDataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a folder"):
        FolderDataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="on_error"):
        FolderDataset(tmp_path, on_error="ignore")


def test_folder_on_error(tmp_path):
    _png(tmp_path / "real" / "a.png")
    bad = _broken(tmp_path / "fake" / "b.png")
    (tmp_path / "fake" / "empty.png").write_bytes(b"")
    ds = FolderDataset(tmp_path, size=8)  # raise mode: lazy, construction lists only
    assert len(ds) == 3
    with pytest.raises(ImageLoadError) as ei:
        ds[1]
    assert ei.value.path == str(bad) and str(bad) in str(ei.value)
    with pytest.raises(ImageLoadError):
        ds.validate()
    with pytest.warns(UserWarning, match="skipped 2 unreadable") as rec:
        ds = FolderDataset(tmp_path, size=8, on_error="skip")
    assert len(rec) == 1  # one warning, with the count
    assert len(ds) == 1 and ds[0]["path"].endswith("a.png")
    assert sorted(p for p, _ in ds.skipped) == sorted([str(bad), str(tmp_path / "fake" / "empty.png")])
    assert any("empty" in r for _, r in ds.skipped)


def test_csv_layout(tmp_path):
    _png(tmp_path / "imgs" / "r.png", 0)
    _png(tmp_path / "imgs" / "f.png", 255)
    csv = tmp_path / "index.csv"
    csv.write_text("path,label,source_id,family,extra\nimgs/r.png,0,scene1,,x\nimgs/f.png,fake,scene1,sd,y\n")
    ds = FolderDataset.from_csv(csv, size=None)
    assert list(ds.labels) == [0, 1] and list(ds.source_ids) == ["scene1", "scene1"]
    assert list(ds.families) == ["real", "sd"]
    assert ds[0]["image"].shape == (3, 6, 8)
    # minimal columns; absolute root
    csv2 = tmp_path / "other" / "i.csv"
    csv2.parent.mkdir()
    csv2.write_text("path,label\nimgs/r.png,0\n")
    ds2 = FolderDataset.from_csv(csv2, root=tmp_path)
    assert ds2.source_ids[0] == "imgs/r" and ds2.families[0] == "real"


def test_csv_errors(tmp_path):
    _png(tmp_path / "r.png")
    bad_label = tmp_path / "a.csv"
    bad_label.write_text("path,label\nr.png,2\n")
    with pytest.raises(ValueError, match="row 2"):
        FolderDataset.from_csv(bad_label)
    no_col = tmp_path / "b.csv"
    no_col.write_text("file,label\nr.png,0\n")
    with pytest.raises(ValueError, match="path"):
        FolderDataset.from_csv(no_col)
    missing = tmp_path / "c.csv"
    missing.write_text("path,label\nr.png,0\ngone.png,1\n")
    with pytest.raises(ImageLoadError, match="gone.png"):
        FolderDataset.from_csv(missing)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = FolderDataset.from_csv(missing, on_error="skip")
    assert len(ds) == 1 and ds.skipped[0][0].endswith("gone.png") and "not found" in ds.skipped[0][1]


# ------------------------------------------------------------------------------------------------ CIFAKE
def test_cifake_layout(tmp_path):
    for split in ("train", "test"):
        for i in range(3):
            _png(tmp_path / split / "REAL" / f"{i} (2).jpg", 0, size=(32, 32))
            _png(tmp_path / split / "FAKE" / f"{i}.jpg", 255, size=(32, 32))
    ds = CIFAKEDataset(tmp_path, split="test")
    assert len(ds) == 6 and list(ds.labels) == [0, 0, 0, 1, 1, 1]
    assert set(ds.families) == {"real", "stable_diffusion_v1_4"}
    assert ds.source_ids[0] == "test/REAL/0 (2)"
    assert ds[0]["image"].shape == (3, 32, 32)
    assert CIFAKEDataset(tmp_path, split="train", size=16)[5]["image"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="split"):
        CIFAKEDataset(tmp_path, split="val")
    with pytest.raises(ValueError, match="no 'train/'"):
        CIFAKEDataset(tmp_path / "test")


# ---------------------------------------------------------------------------------------- batching, misc
def test_dataloader_batches(tmp_path):
    _ffpp(tmp_path, methods=("Deepfakes",))
    ds = FaceForensicsDataset(tmp_path, methods=("Deepfakes",), split="val", size=12)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 12, 12) and batch["label"].dtype == torch.int64
    assert isinstance(batch["path"], list) and len(batch["source_id"]) == 4
    default = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))  # default collate works as well
    assert torch.equal(default["image"], batch["image"])


def test_collate_mixed_sizes_clear_error(tmp_path):
    _png(tmp_path / "real" / "a.png", size=(4, 4))
    _png(tmp_path / "real" / "b.png", size=(5, 4))
    ds = FolderDataset(tmp_path, size=None)
    with pytest.raises(ValueError, match="size="):
        collate([ds[0], ds[1]])


def test_resize_antialiased_and_in_range(tmp_path):
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255
    p = tmp_path / "real" / "s.png"
    p.parent.mkdir(parents=True)
    Image.fromarray(stripes).save(p)
    img = FolderDataset(tmp_path, size=8)[0]["image"]
    assert img.shape == (3, 8, 8) and img.min() >= 0 and img.max() <= 1
    assert torch.allclose(img, torch.full_like(img, 0.5), atol=0.02)  # antialiasing averages the stripes


def test_image_dataset_direct(tmp_path):
    a = _png(tmp_path / "a.png")
    ds = ImageDataset([a], [1], source_ids=["s"], families=["gan"], video_ids=["v"], size=None)
    item = ds[0]
    assert (item["label"], item["source_id"], item["family"], item["video_id"]) == (1, "s", "gan", "v")
    with pytest.raises(ValueError, match="label"):
        ImageDataset([a], [2])
    with pytest.raises(ValueError, match="entries"):
        ImageDataset([a], [0, 1])
    with pytest.raises(ValueError, match="size"):
        ImageDataset([a], [0], size=0)
    assert "n=1" in repr(ds)


def test_fill_composites_transparent_images(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent
    p = tmp_path / "real" / "t.png"
    p.parent.mkdir(parents=True)
    Image.fromarray(rgba, "RGBA").save(p)
    assert float(FolderDataset(tmp_path, size=None)[0]["image"].min()) == 1.0  # default fill: white
    black = FolderDataset(tmp_path, size=None, fill=(0, 0, 0))
    assert black.fill == (0.0, 0.0, 0.0) and float(black[0]["image"].max()) == 0.0
    with pytest.raises(ValueError, match="fill"):
        FolderDataset(tmp_path, fill=(2, 0, 0))


def _noise_png(path, shape=(23, 31), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("size", [(11, 7), (40, 52), 16])
def test_resize_pil_equals_torchvision_resize(tmp_path, size):
    from torchvision import transforms

    p = _noise_png(tmp_path / "real" / "n.png")
    hw = (size, size) if isinstance(size, int) else size
    want = transforms.ToTensor()(transforms.Resize(hw)(Image.open(p).convert("RGB")))
    got = ImageDataset([p], [0], size=size, resize="pil")[0]["image"]
    assert got.dtype == torch.float32 and torch.equal(got, want)
    ours = ImageDataset([p], [0], size=size)[0]["image"]
    assert not torch.equal(ours, want) and float((ours - want).abs().max()) < 0.5
    with pytest.raises(ValueError, match="resize"):
        ImageDataset([p], [0], resize="bicubic")


def test_resize_option_on_every_loader(tmp_path):
    from torchvision import transforms

    _ffpp(tmp_path / "ff", methods=("Deepfakes",))
    ff = FaceForensicsDataset(tmp_path / "ff", methods=("Deepfakes",), split="val", size=3, resize="pil")
    assert ff.resize == "pil" and torch.equal(
        ff[0]["image"], transforms.ToTensor()(transforms.Resize((3, 3))(Image.open(ff.paths[0]))))
    p = _noise_png(tmp_path / "f" / "real" / "n.png")
    (tmp_path / "f" / "i.csv").write_text("path,label\nreal/n.png,0\n")
    folder = FolderDataset(tmp_path / "f", size=9, resize="pil")
    csv = FolderDataset.from_csv(tmp_path / "f" / "i.csv", size=9, resize="pil")
    assert torch.equal(folder[0]["image"], csv[0]["image"])
    assert torch.equal(folder[0]["image"], ImageDataset([p], [0], size=9, resize="pil")[0]["image"])
    _noise_png(tmp_path / "c" / "test" / "REAL" / "0.jpg")
    assert CIFAKEDataset(tmp_path / "c", split="test", size=8, resize="pil").resize == "pil"
    assert "resize='pil'" in repr(folder)
