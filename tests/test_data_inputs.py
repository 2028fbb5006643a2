"""Tests for ``list_images``, ``ImageDataset.unlabeled`` and the command line's data specifications."""

import numpy as np
import pytest
from PIL import Image

from defocus_xai.data import ImageDataset, collate, list_images
from defocus_xai.data.spec import dataset_from_spec, parse_data_spec


def _png(path, size=(6, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 128, np.uint8)).save(path)
    return path


def test_list_images_natural_order_hidden_out(tmp_path):
    for name in ("10.png", "9.PNG", "sub/1.jpg", ".hidden.png", ".git/x.png", "notes.txt"):
        _png(tmp_path / name) if name.endswith(("png", "PNG", "jpg")) else (tmp_path / name).touch()
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["9.PNG", "10.png", "sub/1.jpg"]
    assert [p.name for p in list_images(str(tmp_path), recursive=False)] == ["9.PNG", "10.png"]
    assert [p.name for p in list_images(tmp_path, extensions="jpg")] == ["1.jpg"]
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "10.png")


def test_unlabeled_dataset(tmp_path):
    files = [_png(tmp_path / "b" / "2.png"), _png(tmp_path / "a.png", size=(9, 9))]
    ds = ImageDataset.unlabeled(files, root=tmp_path, size=4, on_error="skip")
    assert type(ds) is ImageDataset and list(ds.labels) == [-1, -1] and list(ds.families) == ["unlabeled"] * 2
    assert list(ds.source_ids) == ["b/2", "a"] and ds[1]["label"] == -1 and ds[1]["image"].shape == (3, 4, 4)
    assert "unlabeled=2" in repr(ds)
    assert ImageDataset.unlabeled([files[1]]).source_ids[0] == str(tmp_path / "a")
    assert collate([ds[0], ds[1]])["label"].tolist() == [-1, -1]


def test_synth_spec_version():
    assert parse_data_spec("synth:10:4") == ("synth", {"n": 10, "seed": 4})
    assert parse_data_spec("synth:v2.0") == ("synth", {"version": "2.0"})
    assert parse_data_spec("synth:500:V1") == ("synth", {"n": 500, "version": "1.0"})
    assert parse_data_spec("synth:500:3:v2.0") == ("synth", {"n": 500, "seed": 3, "version": "2.0"})
    for bad in ("synth:1:2:3", "synth:1:2:3:v2.0", "synth:v9.9", "synth:x:v2.0"):
        with pytest.raises(ValueError, match="synth"):
            parse_data_spec(bad)
    assert dataset_from_spec("synth:4:0:v2.0", size=32).version == "2.0"
    assert dataset_from_spec("synth:4:0:v1.0", size=32).version == "1.0"
