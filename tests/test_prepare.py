"""``prepare_ffpp`` / ``defocus-xai prepare ffpp`` on small mp4 videos written here in the FF++ download layout:
a real face photo (skimage's astronaut) moving on a canvas, a mask video over the face, a faceless video."""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

import av  # the "ffpp" extra; the "test" extra installs it
from skimage import data

from defocus_xai.cli import main
from defocus_xai.data import FaceForensicsDataset
from defocus_xai.data.prepare import face_box, find_ffpp_videos, frame_count, frame_indices, prepare_ffpp

N_FRAMES = 8
CANVAS = (256, 288)                                   # (height, width)
PATCH = data.astronaut()[40:220, 130:310]             # 180 x 180, the face near its centre
FACE_IN_PATCH = (49, 43, 136, 130)                    # dlib's box of the face in PATCH, (l, t, r, b)
MASK_IN_PATCH = (55, 50, 130, 125)                    # the white region of the mask video


def _offset(t):
    return 30 + 3 * t, 20 + 2 * t                     # (x, y) of PATCH in frame t: a slow drift


def _write_video(path, frames):
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "12"}
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def _face_frames(shift=0):
    frames = []
    for t in range(N_FRAMES):
        can = np.full(CANVAS + (3,), 90, np.uint8)
        x, y = _offset(t)
        can[y + shift:y + shift + 180, x:x + 180] = PATCH
        frames.append(can)
    return frames


def _mask_frames():
    frames = []
    for t in range(N_FRAMES):
        can = np.zeros(CANVAS + (3,), np.uint8)
        x, y = _offset(t)
        l, tp, r, b = MASK_IN_PATCH
        can[y + tp:y + b, x + l:x + r] = 255
        frames.append(can)
    return frames


def _gradient_frames():
    ramp = np.linspace(0, 255, CANVAS[1]).astype(np.uint8)
    return [np.repeat(np.broadcast_to(ramp, CANVAS)[..., None], 3, axis=2).copy() for _ in range(N_FRAMES)]


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    """FF++ download layout: real 000 (face), 001 (face), 002 (no face); Deepfakes 000_001 with its mask video."""
    root = tmp_path_factory.mktemp("ffpp")
    real = root / "original_sequences" / "youtube" / "c23" / "videos"
    _write_video(real / "000.mp4", _face_frames())
    _write_video(real / "001.mp4", _face_frames(shift=4))
    _write_video(real / "002.mp4", _gradient_frames())
    fake = root / "manipulated_sequences" / "Deepfakes"
    _write_video(fake / "c23" / "videos" / "000_001.mp4", _face_frames())
    _write_video(fake / "masks" / "videos" / "000_001.mp4", _mask_frames())
    return root


@pytest.fixture(scope="module")
def prepared(download, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    report = prepare_ffpp(download, out, frames_per_video=4, progress=False)
    return out, report


def test_frame_indices_evenly_spaced():
    assert frame_indices(8, 4).tolist() == [0, 2, 5, 7]
    assert frame_indices(8, None).tolist() == list(range(8))


def test_face_box_enlarges_and_clips():
    assert face_box((100, 100, 200, 180), 640, 480) == (85, 75, 130)       # 1.3 x the longer side, centred
    x, y, s = face_box((600, 420, 660, 480), 640, 480)                     # at the corner: clipped, square
    assert (x, y) == (591, 411) and s == min(640 - 591, 480 - 411, 78)


def test_report_lists_written_and_faceless(prepared, download):
    out, report = prepared
    assert sorted(report.written) == ["Deepfakes/000_001", "real/000", "real/001"]
    assert report.no_face == (str(download / "original_sequences/youtube/c23/videos/002.mp4"),)
    assert report.unreadable == () and report.missing_masks == ()
    assert report.n_frames == 12
    assert {(os.path.basename(v), r) for v, _, r in report.frames_skipped} == {("002.mp4", "no face detected")}
    on_disk = json.loads((out / "prepare_report.json").read_text())
    assert on_disk["no_face"] == list(report.no_face) and on_disk["written"] == list(report.written)
    assert "002" not in os.listdir(out / "original_sequences/youtube/c23/v1faces")


def test_crops_contain_the_face_with_enlarged_box(prepared, download):
    out, _ = prepared
    folder = out / "original_sequences/youtube/c23/v1faces/000"
    rec = json.loads((folder / "prepare.json").read_text())
    assert rec["n_frames_video"] == frame_count(download / "original_sequences/youtube/c23/videos/000.mp4") == 8
    assert sorted(rec["frames"]) == ["0000", "0002", "0005", "0007"]
    for name, fr in rec["frames"].items():
        t = int(name)
        ox, oy = _offset(t)
        l, tp, r, b = fr["face"]
        fl, ft, fr_, fb = FACE_IN_PATCH
        assert abs(l - (ox + fl)) <= 8 and abs(tp - (oy + ft)) <= 8 and abs(r - (ox + fr_)) <= 8
        x, y, s = fr["box"]
        assert s == int(max(r - l, b - tp) * 1.3)                              # not clipped on this canvas
        assert abs(x + s / 2 - (l + r) / 2) <= 1 and abs(y + s / 2 - (tp + b) / 2) <= 1
        assert x <= ox + fl and y <= oy + ft and x + s >= ox + fr_ and y + s >= oy + fb   # face inside
        img = np.asarray(Image.open(folder / f"{name}.png"))
        assert img.shape == (s, s, 3)
        truth = np.asarray(_face_frames()[t][y:y + s, x:x + s], np.float32)
        assert np.abs(img.astype(np.float32) - truth).mean() < 6                # the pixels of that box


def test_mask_crops_align_with_frame_crops(prepared):
    out, _ = prepared
    frames = out / "manipulated_sequences/Deepfakes/c23/v1faces/000_001"
    masks = out / "manipulated_sequences/Deepfakes/masks/v1faces/000_001"
    rec = json.loads((frames / "prepare.json").read_text())
    assert sorted(os.listdir(masks)) == [f"{n}.png" for n in sorted(rec["frames"])]
    for name, fr in rec["frames"].items():
        x, y, s = fr["box"]
        m = np.asarray(Image.open(masks / f"{name}.png"))
        assert m.shape == (s, s) and set(np.unique(m)) <= {0, 255}
        ox, oy = _offset(int(name))
        l, tp, r, b = MASK_IN_PATCH
        expect = np.zeros((s, s), bool)
        expect[oy + tp - y:oy + b - y, ox + l - x:ox + r - x] = True
        assert ((m > 0) != expect).mean() < 0.02


def test_dataset_reads_frames_and_masks(prepared):
    out, _ = prepared
    ds = FaceForensicsDataset(out, methods=("Deepfakes",), split=None, compression="c23", size=64)
    assert ds.has_masks and len(ds) == 12
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (3, 64, 64)
        assert item["mask"].shape == (64, 64) and str(item["mask"].dtype) == "torch.uint8"
        if item["label"] == 0:
            assert int(item["mask"].sum()) == 0
            continue
        stem = os.path.splitext(os.path.basename(item["path"]))[0]
        saved = Image.open(out / "manipulated_sequences/Deepfakes/masks/v1faces/000_001" / f"{stem}.png")
        expect = np.asarray(saved.resize((64, 64), Image.NEAREST)) > 0
        assert (item["mask"].numpy().astype(bool) != expect).mean() < 0.01
        assert 0.2 < item["mask"].float().mean() < 0.6
    pairs = ds.pair()
    assert pairs["paired"].all() and len(pairs) == 4                           # same frame indices as 000
    no_masks = FaceForensicsDataset(out, methods=("Deepfakes",), split=None, compression="c23", masks=False)
    assert not no_masks.has_masks and "mask" not in no_masks[0]


def test_dataset_masks_true_without_folder_raises(prepared):
    out, _ = prepared
    (out / "manipulated_sequences/Deepfakes/masks/v1faces").rename(out / "masks_aside")
    try:
        with pytest.raises(ValueError, match="masks folder"):
            FaceForensicsDataset(out, methods=("Deepfakes",), split=None, compression="c23", masks=True)
        assert not FaceForensicsDataset(out, methods=("Deepfakes",), split=None, compression="c23").has_masks
    finally:
        (out / "masks_aside").rename(out / "manipulated_sequences/Deepfakes/masks/v1faces")


def test_resume_skips_complete_and_redoes_killed(download, tmp_path):
    out = tmp_path / "out"
    prepare_ffpp(download, out, frames_per_video=2, methods=(), progress=False)
    done = out / "original_sequences/youtube/c23/v1faces/000"
    before = os.stat(done / "0000.png").st_mtime_ns
    killed = out / "original_sequences/youtube/c23/v1faces/001"
    os.rename(killed, killed.parent / ".001.tmp-999999")                       # as a run killed mid-video
    report = prepare_ffpp(download, out, frames_per_video=2, methods=(), progress=False)
    assert report.already_done == ("real/000",) and report.written == ("real/001",)
    assert os.stat(done / "0000.png").st_mtime_ns == before
    assert sorted(os.listdir(killed.parent)) == ["000", "001"]


def test_shards_split_the_video_list(download, tmp_path):
    jobs = [j.key for j in find_ffpp_videos(download, tmp_path)]
    assert jobs == ["real/000", "real/001", "real/002", "Deepfakes/000_001"]
    reports = [prepare_ffpp(download, tmp_path, frames_per_video=1, shard_index=i, num_shards=2, progress=False)
               for i in (0, 1)]
    assert reports[0].written == ("real/000", "real/001") and reports[0].no_face == ()
    assert reports[1].written == ("Deepfakes/000_001",) and reports[1].no_face[0].endswith("002.mp4")
    assert (tmp_path / "prepare_report-00000-of-00002.json").is_file()
    assert (tmp_path / "prepare_report-00001-of-00002.json").is_file()


def test_cli_and_unreadable_video(download, tmp_path, capsys):
    root = tmp_path / "dl"
    real = root / "original_sequences/youtube/c23/videos"
    real.mkdir(parents=True)
    os.symlink(download / "original_sequences/youtube/c23/videos/000.mp4", real / "000.mp4")
    (real / "003.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    assert main(["prepare", "ffpp", str(root), "--out", str(out), "--frames-per-video", "2", "--no-progress"]) == 1
    assert "003.mp4" in capsys.readouterr().err                                # a runtime error names the video
    assert main(["prepare", "ffpp", str(tmp_path / "nowhere"), "--out", str(out)]) == 2     # a usage error
    assert "nowhere" in capsys.readouterr().err
    code = main(["prepare", "ffpp", str(root), "--out", str(out), "--frames-per-video", "2", "--no-progress",
                 "--on-error", "skip"])
    line = capsys.readouterr().out
    assert code == 0 and "1 already complete" in line and "1 unreadable" in line  # 000 done before the error
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["unreadable"][0][0].endswith("003.mp4") and report["already_done"] == ["real/000"]


def test_fake_without_mask_video_reported_and_left_out_of_masked_dataset(download, tmp_path):
    root = tmp_path / "dl"
    for rel in ("original_sequences/youtube/c23/videos/000.mp4",
                "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(download / rel, root / rel)
    (root / "manipulated_sequences/Deepfakes/masks/videos").mkdir(parents=True)   # the mask video is missing
    out = tmp_path / "out"
    report = prepare_ffpp(root, out, frames_per_video=1, progress=False)
    assert report.written == ("real/000", "Deepfakes/000_001")
    assert report.missing_masks[0][0].endswith("000_001.mp4") and "no mask video" in report.missing_masks[0][1]
    (out / "manipulated_sequences/Deepfakes/masks/v1faces").mkdir(parents=True)
    with pytest.warns(UserWarning, match="left out"):
        ds = FaceForensicsDataset(out, methods=("Deepfakes",), split=None, compression="c23")
    assert ds.has_masks and ds.labels.tolist() == [0] and "no mask folder" in ds.excluded_videos[0][1]


def test_missing_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(ImportError, match=r"\.\[ffpp\]"):
        prepare_ffpp(tmp_path, tmp_path / "out", progress=False)
