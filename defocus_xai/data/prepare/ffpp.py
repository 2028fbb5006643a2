"""``prepare_ffpp``: a FaceForensics++ download (videos, mask videos) -> the face-crop frames and masks that
:class:`~defocus_xai.data.FaceForensicsDataset` reads; resumable, shardable, with a JSON report.
docs/prepare.md walks through it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence


from ..._progress import progress as progress_bar
from ...store import shard_range
from ._deps import import_av, import_dlib
from .crops import VideoResult, clear_stale, prepare_video
from .faces import FACE_SCALE, FaceDetector
from .layout import find_ffpp_videos
from .video import VideoReadError

__all__ = ["PrepareReport", "prepare_ffpp", "report_name"]


@dataclass(frozen=True)
class PrepareReport:
    """What one :func:`prepare_ffpp` run did (also written as JSON to :attr:`report_path`).

    Attributes
    ----------
    out : str
        Output root.
    shard_index, num_shards : int
        The shard this run processed.
    n_videos : int
        Videos in this shard.
    written : tuple of str
        Videos written by this run (``"real/<id>"``, ``"<Method>/<target>_<source>"``).
    already_done : tuple of str
        Videos skipped because their folder was complete from an earlier run.
    no_face : tuple of str
        Video files in which no sampled frame has a face (nothing written; retried by a rerun).
    unreadable : tuple of (str, str)
        ``(video file, reason)`` for videos that could not be opened or decoded (``on_error="skip"``).
    frames_skipped : tuple of (str, int, str)
        ``(video file, frame index, reason)``: sampled frames without a face, frames the video did not
        decode, frames whose mask frame is missing.
    missing_masks : tuple of (str, str)
        ``(fake video file, reason)``: fake videos of a method with masks whose frames were written without
        masks (no or unreadable mask video).
    n_frames : int
        Frames written by this run.
    report_path : str
        The JSON file.
    settings : dict
        The run's settings (root, methods, compression, frames per video, scale, detector, package versions).
    """

    out: str
    shard_index: int
    num_shards: int
    n_videos: int
    written: tuple
    already_done: tuple
    no_face: tuple
    unreadable: tuple
    frames_skipped: tuple
    missing_masks: tuple
    n_frames: int
    report_path: str
    settings: dict

    def to_dict(self) -> dict:
        """JSON-able dict of every field (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))

    def summary(self) -> str:
        """One closing line: counts and where the report is."""
        shard = f" (shard {self.shard_index + 1} of {self.num_shards})" if self.num_shards > 1 else ""
        return (f"prepare ffpp{shard}: {len(self.written)} video(s) written ({self.n_frames} frames), "
                f"{len(self.already_done)} already complete, {len(self.no_face)} without a face, "
                f"{len(self.unreadable)} unreadable, {len(self.frames_skipped)} frame(s) skipped, "
                f"{len(self.missing_masks)} without masks; report: {self.report_path}")


def report_name(shard_index: int = 0, num_shards: int = 1) -> str:
    """File name of a run's JSON report: ``prepare_report.json``, or one per shard.

    Examples
    --------
    >>> report_name(), report_name(2, 8)
    ('prepare_report.json', 'prepare_report-00002-of-00008.json')
    """
    if num_shards == 1:
        return "prepare_report.json"
    return f"prepare_report-{shard_index:05d}-of-{num_shards:05d}.json"


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _check_args(frames_per_video, on_error, shard_index, num_shards, scale):
    if frames_per_video is not None and (isinstance(frames_per_video, bool) or int(frames_per_video) <= 0):
        raise ValueError(f"frames_per_video must be a positive int or None, got {frames_per_video!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"need 0 <= shard_index < num_shards, got shard_index={shard_index}, "
                         f"num_shards={num_shards}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")


def prepare_ffpp(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    frames_per_video: int | None = 32,
    methods: Sequence[str] | None = None,
    compression: str = "c23",
    frames_dir: str = "v1faces",
    scale: float = FACE_SCALE,
    upsample: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    on_error: str = "raise",
    progress: bool = True,
) -> PrepareReport:
    """Turn a FaceForensics++ download into face-crop frames (and mask crops) for FaceForensicsDataset.

    Per video: ``frames_per_video`` evenly spaced frames; in each, dlib's frontal face detector finds the
    largest face, its box is enlarged ``scale`` times around its centre and cut as a square clipped to the
    frame (FaceForensics++'s convention); the crop is saved as ``<frame index:04d>.png`` at native
    resolution. A fake video's mask video is cropped with the same boxes and binarized (0/255). A video's
    folders appear atomically (temporary folder, then rename) once it is complete, so a rerun skips
    complete videos and redoes the rest. The layout read and written: :func:`find_ffpp_videos`.

    Parameters
    ----------
    root : str or os.PathLike
        The download's root (``original_sequences/``, ``manipulated_sequences/``).
    out : str or os.PathLike
        Output root (may be ``root`` itself); open it with
        ``FaceForensicsDataset(out, compression=compression, ...)``.
    frames_per_video : int or None, optional
        Frames sampled per video (default 32); ``None`` takes every frame.
    methods : sequence of str or None, optional
        Manipulation methods (default: those of the five FF++ face methods the download holds; ``()`` real
        videos only).
    compression : str, optional
        ``"raw"``, ``"c23"`` (default) or ``"c40"``.
    frames_dir : str, optional
        Frame folder level name (default ``"v1faces"``, the dataset's default).
    scale : float, optional
        Box enlargement (default 1.3).
    upsample : int, optional
        dlib upsampling before detection (default 1, as FaceForensics++).
    shard_index, num_shards : int, optional
        Process only shard ``shard_index`` of ``num_shards`` contiguous parts of the sorted video list
        (independent processes or machines writing into the same ``out``).
    on_error : {"raise", "skip"}, optional
        A video that cannot be opened or decoded stops the run (default) or is listed in ``unreadable``.
    progress : bool, optional
        Show a ``tqdm`` progress bar (default ``True``).

    Returns
    -------
    PrepareReport
        Also written to ``<out>/prepare_report.json`` (``prepare_report-<i>-of-<k>.json`` per shard).

    Raises
    ------
    ImportError
        PyAV or dlib is missing (install the ``ffpp`` extra: ``pip install -e ".[ffpp]"``).
    ValueError
        A missing folder or method, a bad argument, or (``on_error="raise"``) an unreadable video.

    Examples
    --------
    >>> from defocus_xai.data.prepare import prepare_ffpp
    >>> report = prepare_ffpp("/data/FF++", "/data/FF++", methods=("Deepfakes",))   # doctest: +SKIP
    >>> print(report.summary())                                                      # doctest: +SKIP
    """
    _check_args(frames_per_video, on_error, shard_index, num_shards, scale)
    if isinstance(methods, str):
        methods = (methods,)
    av, dlib = import_av(), import_dlib()
    detector = FaceDetector(upsample=upsample)
    jobs = find_ffpp_videos(root, out, methods=methods, compression=compression, frames_dir=frames_dir)
    jobs = [jobs[i] for i in shard_range(len(jobs), num_shards, shard_index)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lists: dict[str, list] = {k: [] for k in ("written", "already_done", "no_face", "unreadable",
                                              "frames_skipped", "missing_masks")}
    n_frames = 0
    for job in progress_bar(jobs, desc="prepare ffpp", unit="video", enabled=progress):
        if job.frames_dir.is_dir():
            lists["already_done"].append(job.key)
            continue
        clear_stale(job)
        try:
            res = prepare_video(job, detector, frames_per_video=frames_per_video, scale=scale)
        except VideoReadError as exc:
            if on_error == "raise":
                raise
            lists["unreadable"].append((exc.path, exc.reason))
            continue
        n_frames += res.n_written
        _collect(res, lists)
    settings = {
        "root": str(root), "compression": compression, "methods": None if methods is None else list(methods),
        "frames_per_video": frames_per_video, "frames_dir": frames_dir, "scale": scale, "upsample": upsample,
        "detector": "dlib.get_frontal_face_detector (HOG), largest face", "dlib": dlib.__version__,
        "av": av.__version__,
    }
    path = out / report_name(shard_index, num_shards)
    report = PrepareReport(out=str(out), shard_index=shard_index, num_shards=num_shards, n_videos=len(jobs),
                           n_frames=n_frames, report_path=str(path), settings=settings,
                           **{k: tuple(v) for k, v in lists.items()})
    _write_json(path, report.to_dict())
    return report


def _collect(res: VideoResult, lists: dict) -> None:
    video = str(res.job.video)
    lists["frames_skipped"].extend((video, int(i), r) for i, r in sorted(res.skipped))
    if res.no_face:
        lists["no_face"].append(video)
        return
    lists["written"].append(res.job.key)
    if res.mask_problem:
        lists["missing_masks"].append((video, res.mask_problem))
