"""``FaceForensicsDataset``: FaceForensics++ face-crop frames (and manipulation masks) with a video-level split
and real/fake pairing.

docs/data.md describes the layout, the split policy and the pairing table; docs/prepare.md the masks.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..io import DEFAULT_MAX_PIXELS, load_image
from ._ffpp_split import SPLITS, split_policy
from .base import ImageDataset, _Record
from .files import IMAGE_EXTENSIONS, _natural_key, _normalize_extensions, list_images

__all__ = ["FF_METHODS", "FaceForensicsDataset"]

#: The four FaceForensics++ manipulation methods used by default (``FaceShifter`` can be added).
FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")


class FaceForensicsDataset(ImageDataset):
    """FaceForensics++ face-crop frames, real and fake, with a video-level split and real/fake pairing.

    Layout under ``root`` (``frames_dir`` is ``"v1faces"`` by default)::

        original_sequences/youtube/<compression>/<frames_dir>/<id>/<frame>.png                 real
        manipulated_sequences/<Method>/<compression>/<frames_dir>/<target>_<source>/<frame>.png fake
        manipulated_sequences/<Method>/masks/<frames_dir>/<target>_<source>/<frame>.png        mask

    (:func:`~defocus_xai.data.prepare.prepare_ffpp` writes it from the FaceForensics++ download.)

    A fake video ``<target>_<source>`` shows real video ``<target>`` with the face of video ``<source>``
    (the "donor") put in. So for a fake: ``source_id = <target>`` (the real video it was made from, which a
    real-vs-fake comparison of the same scene pairs it with), ``video_id = "<Method>/<target>_<source>"``
    (unique per fake video), ``family = <Method>``; for a real video: ``source_id = video_id = <id>``,
    ``family = "real"``. The extra table columns (:meth:`to_frame`) are ``method`` (``"real"`` for real),
    ``frame`` (file name without extension), ``target_id``, ``donor_id`` (``""`` for real) and ``split``.

    Frames: the first ``frames_per_video`` files of each video folder in natural order (``9.png`` before
    ``10.png``; the same as plain sorting for FF++'s zero-padded names).

    Masks: when every requested method has a ``masks/<frames_dir>`` folder (or ``masks=True``), every item
    has a ``mask`` key: a ``uint8`` tensor ``(H, W)`` on the image grid, 1 where the face was manipulated
    (the mask frame with the same file stem, grey >= 0.5, resized with nearest neighbour), all zeros for a
    real frame. A fake video without a mask folder, or a fake frame without its mask frame, is then left
    out and listed in :attr:`excluded_videos`. Without masks, items have no ``mask`` key.

    Split policy
        * ``split_files`` given (the official FF++ ``train.json``/``val.json``/``test.json``, each a list of
          ``[a, b]`` video-id pairs): split ``S`` holds the real videos named in its pairs and the fake videos
          ``a_b`` and ``b_a`` of its pairs. Target and donor are therefore always in the same split.
        * otherwise: the sorted real video ids are cut 70/10/20 (the first ``floor(0.7 n)`` train, up to
          ``floor(0.8 n)`` val, the rest test), and every fake goes to the split of its *target*. A fake and
          its real source thus always land in the same split. The reference code instead cut the real and the
          fake folder lists separately, which can put a fake in train and its own real video in test; ours
          cannot. The donor's identity may still cross splits (FaceSwap and Deepfakes put the donor's face in
          the fake): use the official split files when identity leakage matters.
        * A fake video with no place in the requested split (its target has no real folder, or its pair is
          in no split file) is left out and reported in :attr:`excluded_videos`, never silently dropped.
        * ``split=None`` takes every video.

    Parameters
    ----------
    root : str or os.PathLike
        FaceForensics++ root (holding ``original_sequences/`` and ``manipulated_sequences/``).
    methods : sequence of str, optional
        Manipulation methods to include (default :data:`FF_METHODS`; ``()`` gives real videos only). A
        requested method without a folder is an error that lists the methods present.
    split : {"train", "val", "test"} or None, optional
    frames_per_video : int or None, optional
        Cap on frames per video folder (default 32, as the reference); ``None`` takes all.
    compression : str, optional
        ``"raw"``, ``"c23"`` or ``"c40"`` (any folder name works).
    split_files : folder path or dict, optional
        Official split lists: a folder holding ``train.json``/``val.json``/``test.json`` or a dict
        ``{"train": path_or_list, ...}``.
    frames_dir : str, optional
        Name of the frame folder level (default ``"v1faces"``).
    masks : bool or None, optional
        Yield ``mask``: ``None`` (default) when every requested method has a masks folder, ``True`` always
        (a missing masks folder is an error), ``False`` never.
    size, resize, on_error, max_pixels, fill, progress, extensions
        As in :class:`FolderDataset`.

    Attributes
    ----------
    excluded_videos : list of (str, str)
        ``(video folder or frame, reason)`` for everything left out for layout reasons (no frames, a name
        that is not ``<target>_<source>``, no place in the split, no mask).
    has_masks : bool
        Whether items carry a ``mask``.
    skipped : list of (str, str)
        Unreadable frames (``on_error="skip"``).
    split_of : dict of str to str
        Real video id -> ``"train"``, ``"val"`` or ``"test"`` under the split policy in use.

    Examples
    --------
    >>> ds = FaceForensicsDataset("/data/FF++", methods=("Deepfakes",), split="test")   # doctest: +SKIP
    >>> pairs = ds.pair()                                                               # doctest: +SKIP
    >>> real_item, fake_item = ds[pairs.real_index[0]], ds[pairs.fake_index[0]]        # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        methods: Sequence[str] = FF_METHODS,
        split: str | None = "train",
        frames_per_video: int | None = 32,
        compression: str = "raw",
        split_files: str | os.PathLike | Mapping | None = None,
        frames_dir: str = "v1faces",
        masks: bool | None = None,
        size: int | tuple[int, int] | None = 299,
        resize: str = "torch",
        on_error: str = "raise",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fill: Sequence[float] | None = (1.0, 1.0, 1.0),
        progress: bool = False,
    ):
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        if frames_per_video is not None:
            if isinstance(frames_per_video, bool) or int(frames_per_video) <= 0:
                raise ValueError(f"frames_per_video must be a positive int or None, got {frames_per_video!r}")
            frames_per_video = int(frames_per_video)
        if isinstance(methods, str):
            methods = (methods,)
        methods = tuple(methods)
        exts = _normalize_extensions(extensions)
        root = Path(root)
        self.root = str(root)
        self.methods = methods
        self.split = split
        self.frames_per_video = frames_per_video
        self.compression = compression
        self.excluded_videos: list[tuple[str, str]] = []
        self._skipped_real: set[tuple[str, str]] = set()

        real_base, method_dirs = _layout_dirs(root, methods, compression, frames_dir)
        self._mask_dirs = _mask_dirs(root, methods, frames_dir, masks)
        self.has_masks = self._mask_dirs is not None
        real_ids = sorted((e.name for e in os.scandir(real_base) if e.is_dir() and not e.name.startswith(".")),
                          key=_natural_key)
        real_split, fake_split = split_policy(real_ids, split_files, split)
        self.split_of = dict(real_split)  # real video id -> split (train/val/test)
        records = self._real_records(real_base, real_ids, real_split, exts)
        for m, d in method_dirs.items():
            records.extend(self._fake_records(m, d, fake_split, exts))
        if self.excluded_videos:
            warnings.warn(
                f"FaceForensicsDataset: left out {len(self.excluded_videos)} video folder(s); see "
                f".excluded_videos (first: {self.excluded_videos[0][0]!r}: {self.excluded_videos[0][1]})",
                UserWarning,
                stacklevel=2,
            )
        if not records:
            raise ValueError(f"no frames found under {str(root)!r} for split={split!r}, methods={list(methods)}, "
                             f"compression={compression!r}")
        self._setup(records, size=size, resize=resize, on_error=on_error, max_pixels=max_pixels, fill=fill,
                    progress=progress)

    def _real_records(self, real_base: Path, real_ids: list, real_split: dict, exts) -> list[_Record]:
        records: list[_Record] = []
        for vid in real_ids:
            s = real_split.get(vid)
            if self.split is not None and s != self.split:
                if s is None:
                    self.excluded_videos.append((str(real_base / vid), "video listed in no split file"))
                continue
            records.extend(self._video_records(real_base / vid, exts, label=0, method="real", target=vid,
                                               donor="", video_id=vid, split=s or ""))
        return records

    def _fake_records(self, method: str, folder: Path, fake_split, exts) -> list[_Record]:
        records: list[_Record] = []
        names = sorted((e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")),
                       key=_natural_key)
        for name in names:
            target, sep, donor = name.partition("_")
            if not sep or not target or not donor:
                self.excluded_videos.append((str(folder / name), "folder name is not <target>_<source>"))
                continue
            s, why = fake_split(target, donor)
            if self.split is not None and s != self.split:
                if s is None:
                    self.excluded_videos.append((str(folder / name), why))
                continue
            mask_folder = self._mask_dirs[method] / name if self.has_masks else None
            records.extend(self._video_records(folder / name, exts, label=1, method=method, target=target,
                                               donor=donor, video_id=f"{method}/{name}", split=s or "",
                                               mask_folder=mask_folder))
        return records

    def _after_removal(self, removed_records: list) -> None:
        self._skipped_real.update((r.video_id, r.extra["frame"]) for r in removed_records if r.label == 0)

    def _video_records(self, folder: Path, exts, *, label, method, target, donor, video_id, split,
                       mask_folder: Path | None = None):
        frames = list_images(folder, extensions=exts, recursive=False)
        if not frames:
            self.excluded_videos.append((str(folder), "no frames"))
            return []
        if self.frames_per_video is not None:
            frames = frames[: self.frames_per_video]
        mask_of = {f: "" for f in frames}
        if mask_folder is not None:
            if not mask_folder.is_dir():
                self.excluded_videos.append((str(folder), f"no mask folder {str(mask_folder)!r}"))
                return []
            stems = {m.stem: str(m) for m in list_images(mask_folder, extensions=exts, recursive=False)}
            for f in frames:
                if f.stem not in stems:
                    self.excluded_videos.append((str(f), f"no mask frame {f.stem!r} in {str(mask_folder)!r}"))
            mask_of = {f: stems[f.stem] for f in frames if f.stem in stems}
        return [
            _Record(path=str(f), label=label, source_id=target, family=method, video_id=video_id,
                    extra={"method": method, "frame": f.stem, "target_id": target, "donor_id": donor,
                           "split": split, **({"mask_path": m} if self.has_masks else {})})
            for f, m in mask_of.items()
        ]

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        if self.has_masks:
            item["mask"] = self._load_mask(item["index"], tuple(item["image"].shape[-2:]))
        return item

    def _load_mask(self, index: int, grid: tuple[int, int]) -> torch.Tensor:
        """The item's mask as ``(H, W)`` uint8 0/1 on ``grid`` (zeros for a real frame)."""
        path = self._records[index].extra["mask_path"]
        if not path:
            return torch.zeros(grid, dtype=torch.uint8)
        m = torch.from_numpy(load_image(path, max_pixels=self.max_pixels, fill=None).mean(axis=2) >= 0.5)
        if tuple(m.shape) != grid:
            m = torch.nn.functional.interpolate(m[None, None].float(), size=grid, mode="nearest-exact")[0, 0] > 0.5
        return m.to(torch.uint8)

    def pair(self, *, require_all: bool = False):
        """Match every fake frame ``<target>_<source>/<frame>`` to the real frame ``<target>/<frame>``.

        Frames match by file name without extension, and both must be items of this dataset (same split,
        within ``frames_per_video``, not skipped).

        Parameters
        ----------
        require_all : bool, optional
            Raise when any fake frame has no real partner (default: report them in the table and warn).

        Returns
        -------
        pandas.DataFrame
            One row per fake frame, in item order, with columns ``fake_index``, ``real_index`` (nullable
            ``Int64``, ``<NA>`` when unpaired), ``fake_path``, ``real_path`` (``""`` when unpaired),
            ``method``, ``target_id``, ``donor_id``, ``frame``, ``paired`` (bool) and ``reason`` (``""`` when
            paired, else why: ``"real video not in dataset"``, ``"frame not in real video"`` or
            ``"real frame skipped as unreadable"``).

        Raises
        ------
        ValueError
            ``require_all=True`` and some fake frames are unpaired.

        Examples
        --------
        >>> pairs = ds.pair()                                        # doctest: +SKIP
        >>> pairs[pairs.paired].groupby("method").size()             # doctest: +SKIP
        """
        import pandas as pd

        rows = self._pair_rows()
        cols = ["fake_index", "real_index", "fake_path", "real_path", "method", "target_id", "donor_id",
                "frame", "paired", "reason"]
        df = pd.DataFrame(rows, columns=cols)
        df["real_index"] = df["real_index"].astype("Int64")
        df["fake_index"] = df["fake_index"].astype("int64")
        df["paired"] = df["paired"].astype(bool)
        n_un = int((~df["paired"]).sum())
        if n_un:
            first = df.loc[~df["paired"]].iloc[0]
            msg = (f"{n_un} of {len(df)} fake frames have no real partner in this dataset (first: "
                   f"{first['fake_path']!r}: {first['reason']}); see the 'paired' and 'reason' columns")
            if require_all:
                raise ValueError(msg)
            warnings.warn(msg, UserWarning, stacklevel=2)
        return df

    def _pair_rows(self) -> list[dict]:
        """One dict per fake frame: its real partner's index (or ``None``) and why it has none."""
        real_index: dict[tuple[str, str], int] = {}
        real_videos = set()
        for i, r in enumerate(self._records):
            if r.label == 0:
                real_index[(r.video_id, r.extra["frame"])] = i
                real_videos.add(r.video_id)
        rows = []
        for i, r in enumerate(self._records):
            if r.label != 1:
                continue
            target, frame = r.extra["target_id"], r.extra["frame"]
            j = real_index.get((target, frame))
            reason = ""
            if j is None:
                if target not in real_videos:
                    reason = "real video not in dataset"
                else:
                    reason = "frame not in real video"
                if (target, frame) in self._skipped_real:
                    reason = "real frame skipped as unreadable"
            rows.append({
                "fake_index": i,
                "real_index": j,
                "fake_path": r.path,
                "real_path": self._records[j].path if j is not None else "",
                "method": r.extra["method"],
                "target_id": target,
                "donor_id": r.extra["donor_id"],
                "frame": frame,
                "paired": j is not None,
                "reason": reason,
            })
        return rows


def _layout_dirs(root: Path, methods: tuple, compression: str, frames_dir: str):
    """The real frames folder and one frames folder per method; errors name what is missing."""
    real_base = root / "original_sequences" / "youtube" / compression / frames_dir
    if not real_base.is_dir():
        raise ValueError(f"FaceForensics++ real frames folder {str(real_base)!r} not found")
    manip = root / "manipulated_sequences"
    method_dirs = {}
    for m in methods:
        d = manip / m / compression / frames_dir
        if not d.is_dir():
            present = sorted(e.name for e in os.scandir(manip) if e.is_dir()) if manip.is_dir() else []
            raise ValueError(
                f"FaceForensics++ method {m!r}: folder {str(d)!r} not found (methods present under "
                f"{str(manip)!r}: {present})"
            )
        method_dirs[m] = d
    return real_base, method_dirs


def _mask_dirs(root: Path, methods: tuple, frames_dir: str, masks: bool | None) -> dict | None:
    """Method -> masks frames folder when masks are used (``masks`` True, or None and all present)."""
    if masks is False:
        return None
    dirs = {m: root / "manipulated_sequences" / m / "masks" / frames_dir for m in methods}
    missing = [str(d) for d in dirs.values() if not d.is_dir()]
    if masks is None:
        return dirs if dirs and not missing else None
    if not dirs:
        raise ValueError("masks=True but no manipulation method is requested")
    if missing:
        raise ValueError(f"masks=True but masks folder(s) {missing} not found")
    return dirs
