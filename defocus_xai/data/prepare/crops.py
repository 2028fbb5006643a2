"""One video -> face crops (and mask crops with the same boxes), written atomically as one folder."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .faces import FaceDetector, crop_box, face_box
from .layout import VideoJob
from .video import VideoReadError, frame_count, frame_indices, iter_frames

__all__ = ["VideoResult", "prepare_video", "SIDECAR"]

#: Per-video record written inside each frames folder (frame indices, faces, boxes, skipped frames).
SIDECAR = "prepare.json"
_MASK_THRESHOLD = 128


@dataclass
class VideoResult:
    """What preparing one video gave: frames written, frames skipped, and mask problems."""

    job: VideoJob
    n_total: int = 0
    frame_shape: tuple = ()
    n_written: int = 0
    no_face: bool = False
    skipped: list = field(default_factory=list)       # (frame index, reason)
    mask_problem: str = ""                            # why the frames were written without masks


def _decode(path, indices) -> tuple[dict, str]:
    """Wanted frames of a video as a dict index -> frame, and the decoding error (``""`` if none)."""
    frames: dict[int, np.ndarray] = {}
    try:
        for i, frame in iter_frames(path, indices):
            frames[i] = frame
    except VideoReadError as exc:
        return frames, exc.reason
    return frames, ""


def _faces(job: VideoJob, detector: FaceDetector, indices, scale: float, res: VideoResult) -> dict:
    """Frame index -> (face, box, crop) for every wanted frame with a face; the others go to ``res.skipped``."""
    out: dict[int, tuple] = {}
    why_missing = ""
    try:
        for i, frame in iter_frames(job.video, indices):
            face = detector.largest_face(frame)
            if face is None:
                res.skipped.append((i, "no face detected"))
                continue
            res.frame_shape = frame.shape[:2]
            box = face_box(face, frame.shape[1], frame.shape[0], scale=scale)
            out[i] = (face, box, crop_box(frame, box))
    except VideoReadError as exc:
        why_missing = exc.reason
    done = out.keys() | {i for i, _ in res.skipped}
    for i in (int(i) for i in indices):
        if i not in done:
            res.skipped.append((i, why_missing or f"the video ended before frame {i}"))
    return out


def _masks(job: VideoJob, faces: dict, res: VideoResult) -> dict | None:
    """Frame index -> binarized mask crop (0/255) with the frames' boxes; ``None`` if the mask video fails."""
    if job.mask_video is None:
        return None
    if not job.mask_video.is_file():
        res.mask_problem = f"no mask video {str(job.mask_video)!r}"
        return None
    frames, error = _decode(job.mask_video, sorted(faces))
    if not frames:
        res.mask_problem = f"mask video {str(job.mask_video)!r} unreadable: {error or 'no frames'}"
        return None
    shape = next(iter(frames.values())).shape[:2]
    if shape != res.frame_shape:
        res.mask_problem = f"mask video {str(job.mask_video)!r} is {shape}, the video {res.frame_shape} (H, W)"
        return None
    masks = {}
    for i, (_, box, _) in faces.items():
        if i not in frames:
            res.skipped.append((i, f"mask video: {error or f'it ended before frame {i}'}"))
            continue
        gray = frames[i].astype(np.float32).mean(axis=2)
        masks[i] = np.where(crop_box(gray, box) >= _MASK_THRESHOLD, 255, 0).astype(np.uint8)
    return masks


def _tmp_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp-{os.getpid()}"


def clear_stale(job: VideoJob) -> None:
    """Remove temporary folders of this video left by a killed run (and a mask folder without frames)."""
    for final in (job.frames_dir, job.masks_dir):
        if final is None or not final.parent.is_dir():
            continue
        for p in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
    if job.masks_dir is not None and job.masks_dir.is_dir() and not job.frames_dir.is_dir():
        shutil.rmtree(job.masks_dir)


def _write_folder(final: Path, images: dict, record: dict | None = None) -> None:
    """PNG files ``<index:04d>.png`` (and the sidecar) into a temporary folder renamed onto ``final``."""
    tmp = _tmp_dir(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, img in images.items():
        Image.fromarray(img).save(tmp / f"{i:04d}.png", format="PNG")
    if record is not None:
        (tmp / SIDECAR).write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, final)


def prepare_video(job: VideoJob, detector: FaceDetector, *, frames_per_video: int | None,
                  scale: float) -> VideoResult:
    """Crop the faces of ``frames_per_video`` evenly spaced frames of one video and write them.

    The mask video (if any) is cropped with the boxes of the video's own frames. Nothing is written when no
    sampled frame has a face (``no_face``). Mask folder first, frames folder last: a frames folder exists
    only once the video is complete.

    Raises
    ------
    VideoReadError
        The video cannot be opened.
    """
    res = VideoResult(job)
    res.n_total = frame_count(job.video)
    indices = frame_indices(res.n_total, frames_per_video)
    faces = _faces(job, detector, indices, scale, res)
    if not faces:
        if all(r != "no face detected" for _, r in res.skipped):
            raise VideoReadError(job.video, res.skipped[0][1])
        res.no_face = True
        return res
    masks = _masks(job, faces, res)
    if masks is not None:  # frames whose mask frame is missing are left out (and listed in res.skipped)
        faces = {i: v for i, v in faces.items() if i in masks}
    record = {
        "video": str(job.video), "n_frames_video": res.n_total,
        "frames": {f"{i:04d}": {"face": list(f), "box": list(b)} for i, (f, b, _) in sorted(faces.items())},
        "skipped": [[int(i), r] for i, r in sorted(res.skipped)],
        "mask_video": "" if masks is None else str(job.mask_video), "mask_problem": res.mask_problem,
    }
    if masks is not None:
        if job.masks_dir.is_dir():
            shutil.rmtree(job.masks_dir)
        job.masks_dir.parent.mkdir(parents=True, exist_ok=True)
        _write_folder(job.masks_dir, masks)
    job.frames_dir.parent.mkdir(parents=True, exist_ok=True)
    _write_folder(job.frames_dir, {i: c for i, (_, _, c) in faces.items()}, record)
    res.n_written = len(faces)
    return res
