"""The FaceForensics++ download layout (videos and mask videos) and where each video's crops are written."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..datasets.faceforensics import FF_METHODS
from ..datasets.files import _natural_key

__all__ = ["VideoJob", "find_ffpp_videos"]

#: Methods ``prepare_ffpp`` takes by default, where the download has them.
DEFAULT_METHODS = FF_METHODS + ("FaceShifter",)

_VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")


@dataclass(frozen=True)
class VideoJob:
    """One video to prepare: where it is read from and where its crops (and mask crops) go.

    Attributes
    ----------
    method : str
        ``"real"`` or the manipulation method.
    name : str
        Video id: ``<id>`` for a real video, ``<target>_<source>`` for a fake one.
    video : pathlib.Path
        The video file.
    frames_dir : pathlib.Path
        Output folder of its face crops.
    mask_video : pathlib.Path or None
        The mask video (fake videos of a method with a ``masks/videos`` folder; the file may be missing).
    masks_dir : pathlib.Path or None
        Output folder of the mask crops (``None`` when ``mask_video`` is).
    """

    method: str
    name: str
    video: Path
    frames_dir: Path
    mask_video: Path | None = None
    masks_dir: Path | None = None

    @property
    def key(self) -> str:
        """``"real/<id>"`` or ``"<Method>/<target>_<source>"``."""
        return f"{self.method}/{self.name}"


def _videos(folder: Path) -> list[Path]:
    files = [Path(e.path) for e in os.scandir(folder)
             if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(_VIDEO_EXTENSIONS)]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _method_dirs(root: Path, methods, compression: str) -> dict[str, Path]:
    manip = root / "manipulated_sequences"
    present = sorted(e.name for e in os.scandir(manip) if e.is_dir()) if manip.is_dir() else []
    if methods is None:
        return {m: manip / m / compression / "videos" for m in DEFAULT_METHODS
                if (manip / m / compression / "videos").is_dir()}
    out = {}
    for m in methods:
        d = manip / m / compression / "videos"
        if not d.is_dir():
            raise ValueError(f"FaceForensics++ method {m!r}: folder {str(d)!r} not found (methods present under "
                             f"{str(manip)!r}: {present})")
        out[m] = d
    return out


def find_ffpp_videos(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    methods: Sequence[str] | None = None,
    compression: str = "c23",
    frames_dir: str = "v1faces",
) -> list[VideoJob]:
    """Every video of a FaceForensics++ download, with the output folders of its crops, in a fixed order.

    Reads ``original_sequences/youtube/<compression>/videos/<id>.mp4``,
    ``manipulated_sequences/<Method>/<compression>/videos/<target>_<source>.mp4`` and, where present,
    ``manipulated_sequences/<Method>/masks/videos/<target>_<source>.mp4``. Crops go to the layout that
    :class:`~defocus_xai.data.FaceForensicsDataset` reads: ``<out>/original_sequences/youtube/<compression>/
    <frames_dir>/<id>/``, ``<out>/manipulated_sequences/<Method>/<compression>/<frames_dir>/<target>_<source>/``
    and ``<out>/manipulated_sequences/<Method>/masks/<frames_dir>/<target>_<source>/``.

    Parameters
    ----------
    root : str or os.PathLike
        The download's root (holding ``original_sequences/`` and ``manipulated_sequences/``).
    out : str or os.PathLike
        Output root.
    methods : sequence of str or None, optional
        Methods to include; ``None`` (default) takes those of ``Deepfakes``, ``Face2Face``, ``FaceSwap``,
        ``NeuralTextures`` and ``FaceShifter`` that the download holds; ``()`` real videos only. A named
        method without a folder is an error that lists the methods present.
    compression : str, optional
        ``"raw"``, ``"c23"`` (default) or ``"c40"``.
    frames_dir : str, optional
        Name of the frame folder level (default ``"v1faces"``, the dataset's default).

    Returns
    -------
    list of VideoJob
        Real videos first, then each method's fake videos; within each, natural order of the file names.

    Examples
    --------
    >>> jobs = find_ffpp_videos("/data/FF++", "/data/FF++frames", methods=("Deepfakes",))  # doctest: +SKIP
    >>> jobs[0].key                                                                         # doctest: +SKIP
    'real/000'
    """
    root, out = Path(root), Path(out)
    if isinstance(methods, str):
        methods = (methods,)
    real_dir = root / "original_sequences" / "youtube" / compression / "videos"
    if not real_dir.is_dir():
        raise ValueError(f"FaceForensics++ real videos folder {str(real_dir)!r} not found")
    real_out = out / "original_sequences" / "youtube" / compression / frames_dir
    jobs = [VideoJob("real", v.stem, v, real_out / v.stem) for v in _videos(real_dir)]
    for method, folder in _method_dirs(root, methods, compression).items():
        mask_dir = root / "manipulated_sequences" / method / "masks" / "videos"
        has_masks = mask_dir.is_dir()
        fake_out = out / "manipulated_sequences" / method / compression / frames_dir
        mask_out = out / "manipulated_sequences" / method / "masks" / frames_dir
        for v in _videos(folder):
            jobs.append(VideoJob(method, v.stem, v, fake_out / v.stem,
                                 mask_video=mask_dir / v.name if has_masks else None,
                                 masks_dir=mask_out / v.stem if has_masks else None))
    if not jobs:
        raise ValueError(f"no videos found under {str(root)!r} (compression={compression!r})")
    return jobs
