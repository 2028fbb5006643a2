"""Dataset loaders for real-vs-fake image collections, with source pairing and an explicit error policy.

Every dataset here is a :class:`torch.utils.data.Dataset` whose items are dicts:

=============  =====================================================================================
key            value
=============  =====================================================================================
``image``      ``(3, H, W)`` float32 tensor in ``[0, 1]``, resized to ``size`` (bilinear, antialiased)
``label``      int, 0 real, 1 fake
``path``       str, the image file
``source_id``  str, the real scene/video a fake was made from; a real sample's own id. Samples that share
               it are *not independent* (use it as ``groups=`` in the analyses)
``family``     str, manipulation method (``"Deepfakes"``, ...) or ``"real"``
``video_id``   str, the video the frame belongs to, ``""`` where there is none
``index``      int, the item's position in this dataset (after validation, see below)
=============  =====================================================================================

Error policy (``on_error``):

* ``"raise"`` (default): construction only lists files (cheap); a file that cannot be decoded raises
  :class:`~defocus_xai.data.io.ImageLoadError` naming it when its item is read.
* ``"skip"``: construction calls :meth:`ImageDataset.validate`, which fully decodes every file once, drops the
  unreadable ones and records each as ``(path, reason)`` in ``dataset.skipped``; one warning gives the count.
  A file that still fails later (changed on disk after validation) raises: an item is never replaced by a
  placeholder or a zero image.

The whole index is available as a table: :meth:`ImageDataset.to_frame`.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import DEFAULT_MAX_PIXELS, ImageLoadError, load_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "FF_METHODS",
    "ImageDataset",
    "FolderDataset",
    "FaceForensicsDataset",
    "CIFAKEDataset",
    "collate",
]

#: File name endings (case-insensitive) that the folder-scanning datasets treat as images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: The four FaceForensics++ manipulation methods used by default (``FaceShifter`` can be added).
FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")

_SPLITS = ("train", "val", "test")


def _natural_key(name: str):
    """Sort key that orders ``"9.png"`` before ``"10.png"`` (digit runs compared as numbers)."""
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", name) if tok]


def _normalize_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int, a (height, width) pair or None, got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return (h, w)


def _check_on_error(on_error: str) -> str:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


def _normalize_extensions(extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    exts = tuple(("." + e.lower().lstrip(".")) for e in extensions)
    if not exts:
        raise ValueError("extensions must name at least one file ending, e.g. ('.png', '.jpg')")
    return exts


def _list_images(folder: Path, extensions: tuple[str, ...], recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` in natural order; hidden files and folders (``.name``) are ignored."""
    found = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith(".") and name.lower().endswith(extensions):
                    found.append(Path(dirpath) / name)
    else:
        for entry in os.scandir(folder):
            if entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(extensions):
                found.append(Path(entry.path))
    found.sort(key=lambda p: _natural_key(p.relative_to(folder).as_posix()))
    return found


def _find_child_dir(parent: Path, name: str) -> Path | None:
    """The subfolder of ``parent`` called ``name`` case-insensitively; error when several spellings exist."""
    if not parent.is_dir():
        return None
    matches = [e for e in os.scandir(parent) if e.is_dir() and e.name.lower() == name.lower()]
    if len(matches) > 1:
        names = sorted(m.name for m in matches)
        raise ValueError(f"ambiguous layout under {str(parent)!r}: folders {names} all match {name!r}")
    return Path(matches[0].path) if matches else None


@dataclass
class _Record:
    path: str
    label: int
    source_id: str
    family: str
    video_id: str = ""
    extra: dict = field(default_factory=dict)


class ImageDataset(Dataset):
    """A list of labelled image files as a torch ``Dataset``; the base of the layout-specific loaders.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files.
    labels : sequence of int
        0 (real) or 1 (fake), one per path.
    source_ids : sequence of str, optional
        Real scene/video each sample comes from (default: each file its own id, the path without extension).
    families : sequence of str, optional
        Manipulation family per sample (default ``"real"`` for label 0, ``"fake"`` for label 1).
    video_ids : sequence of str, optional
        Video per sample (default ``""``).
    size : int, (int, int) or None, optional
        Output ``(height, width)``; an int gives a square. Images are resized with
        ``torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False)``.
        ``None`` keeps each image's native size (then batches need equal sizes, see :func:`collate`).
    on_error : {"raise", "skip"}, optional
        What to do with unreadable files (see the module docstring). ``"skip"`` runs :meth:`validate` now.
    max_pixels : int or None, optional
        Passed to :func:`~defocus_xai.data.io.load_image`.
    background : 3 floats or None, optional
        Compositing background for transparent images, passed to :func:`~defocus_xai.data.io.load_image`.
    progress : bool, optional
        Show a progress bar while validating (``on_error="skip"``).

    Attributes
    ----------
    skipped : list of (str, str)
        ``(path, reason)`` for every file removed by :meth:`validate`.

    Examples
    --------
    >>> ds = ImageDataset(["a.png", "b.png"], [0, 1], size=64)   # doctest: +SKIP
    >>> item = ds[0]                                              # doctest: +SKIP
    >>> item["image"].shape, item["label"]                        # doctest: +SKIP
    (torch.Size([3, 64, 64]), 0)
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        labels: Sequence[int],
        *,
        source_ids: Sequence[str] | None = None,
        families: Sequence[str] | None = None,
        video_ids: Sequence[str] | None = None,
        size: int | tuple[int, int] | None = 299,
        on_error: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        background: Sequence[float] | None = (1.0, 1.0, 1.0),
        progress: bool = False,
    ):
        paths = [os.fspath(p) for p in paths]
        n = len(paths)
        labels = list(labels)
        for name, seq in (("labels", labels), ("source_ids", source_ids), ("families", families),
                          ("video_ids", video_ids)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} entries but there are {n} paths")
        records = []
        for i, p in enumerate(paths):
            lab = labels[i]
            if isinstance(lab, bool) or not isinstance(lab, (int, np.integer)) or int(lab) not in (0, 1):
                raise ValueError(f"label of {p!r} must be 0 (real) or 1 (fake), got {lab!r}")
            lab = int(lab)
            records.append(_Record(
                path=p,
                label=lab,
                source_id=str(source_ids[i]) if source_ids is not None else os.path.splitext(p)[0],
                family=str(families[i]) if families is not None else ("real" if lab == 0 else "fake"),
                video_id=str(video_ids[i]) if video_ids is not None else "",
            ))
        self._setup(records, size=size, on_error=on_error, max_pixels=max_pixels, background=background,
                    progress=progress)

    # -- construction helpers shared with subclasses -------------------------------------------------
    def _setup(self, records, *, size, on_error, max_pixels, background, progress=False):
        from .io import _check_background

        self.size = _normalize_size(size)
        self.on_error = _check_on_error(on_error)
        if max_pixels is not None and (isinstance(max_pixels, bool) or int(max_pixels) <= 0):
            raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
        self.max_pixels = max_pixels
        _check_background(background)
        self.background = None if background is None else tuple(float(v) for v in background)
        self._records: list[_Record] = list(records)
        self.skipped: list[tuple[str, str]] = []
        if self.on_error == "skip":
            self.validate(progress=progress)

    @classmethod
    def _from_records(cls, records, **kwargs):
        obj = cls.__new__(cls)
        ImageDataset._setup(obj, records, **kwargs)
        return obj

    # -- Dataset protocol ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def load(self, index: int) -> np.ndarray:
        """Decode item ``index`` at native size: ``(H, W, 3)`` float32 in ``[0, 1]`` (no resizing)."""
        rec = self._records[index]
        return load_image(rec.path, max_pixels=self.max_pixels, background=self.background)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self._records)
        if isinstance(index, torch.Tensor) and index.numel() == 1 and not index.is_floating_point():
            index = int(index.item())
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            index = int(index)
            if index < 0:
                index += n
            if not 0 <= index < n:
                raise IndexError(f"index {index} out of range for a dataset of {n} items")
        else:
            raise TypeError(f"dataset indices must be integers, got {type(index).__name__}")
        rec = self._records[index]
        arr = self.load(index)
        img = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        if self.size is not None and tuple(img.shape[1:]) != self.size:
            img = torch.nn.functional.interpolate(
                img[None], size=self.size, mode="bilinear", align_corners=False, antialias=True
            )[0].clamp_(0.0, 1.0)
        return {
            "image": img,
            "label": rec.label,
            "path": rec.path,
            "source_id": rec.source_id,
            "family": rec.family,
            "video_id": rec.video_id,
            "index": index,
        }

    # -- validation ----------------------------------------------------------------------------------
    def validate(self, *, progress: bool = False) -> list[tuple[str, str]]:
        """Decode every file once and apply ``on_error`` to the ones that fail.

        With ``on_error="skip"`` unreadable files are removed from the dataset (indices of the remaining items
        shift down), appended to :attr:`skipped` as ``(path, reason)`` and counted in one warning. With
        ``on_error="raise"`` the first unreadable file raises, so a clean return means every file decodes.

        Parameters
        ----------
        progress : bool, optional
            Show a ``tqdm`` progress bar.

        Returns
        -------
        list of (str, str)
            The files removed by this call (empty in ``"raise"`` mode).

        Raises
        ------
        ImageLoadError
            In ``"raise"`` mode, for the first file that cannot be decoded.

        Examples
        --------
        >>> bad = ds.validate()          # doctest: +SKIP
        >>> ds.skipped                   # doctest: +SKIP
        [('/data/fake/broken.png', 'file is truncated or corrupt: ...')]
        """
        it: Iterable = self._records
        if progress:
            try:
                from tqdm.auto import tqdm

                it = tqdm(it, total=len(self._records), desc="validating images", unit="img")
            except ImportError:  # pragma: no cover - tqdm is a dependency
                pass
        keep, removed, removed_records = [], [], []
        for rec in it:
            try:
                load_image(rec.path, max_pixels=self.max_pixels, background=self.background)
            except ImageLoadError as exc:
                if self.on_error == "raise":
                    raise
                removed.append((rec.path, exc.reason))
                removed_records.append(rec)
                continue
            keep.append(rec)
        self._records = keep
        if removed:
            self.skipped.extend(removed)
            self._after_removal(removed_records)
            warnings.warn(
                f"{type(self).__name__}: skipped {len(removed)} unreadable image file(s) of "
                f"{len(keep) + len(removed)}; see .skipped for each path and reason "
                f"(first: {removed[0][0]!r}: {removed[0][1]})",
                UserWarning,
                stacklevel=2,
            )
        return removed

    def _after_removal(self, removed_records: list) -> None:
        """Hook for subclasses that keep derived indexes (called with the records just removed)."""

    # -- metadata ------------------------------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        """Image paths in item order."""
        return [r.path for r in self._records]

    @property
    def labels(self) -> np.ndarray:
        """Labels in item order, ``(N,)`` int64 (0 real, 1 fake)."""
        return np.array([r.label for r in self._records], dtype=np.int64)

    @property
    def source_ids(self) -> np.ndarray:
        """Source ids in item order, ``(N,)`` unicode; pass as ``groups=`` to the statistics."""
        return np.array([r.source_id for r in self._records], dtype=str)

    @property
    def video_ids(self) -> np.ndarray:
        """Video ids in item order, ``(N,)`` unicode (``""`` where unknown)."""
        return np.array([r.video_id for r in self._records], dtype=str)

    @property
    def families(self) -> np.ndarray:
        """Families in item order, ``(N,)`` unicode."""
        return np.array([r.family for r in self._records], dtype=str)

    def to_frame(self):
        """The index as a :class:`pandas.DataFrame`, one row per item (no image is decoded).

        Columns: ``index, path, label, source_id, family, video_id`` plus layout-specific ones (for
        FaceForensics++: ``method, frame, target_id, donor_id, split``).

        Examples
        --------
        >>> ds.to_frame().groupby("family").size()   # doctest: +SKIP
        """
        import pandas as pd

        rows = []
        for i, r in enumerate(self._records):
            row = {"index": i, "path": r.path, "label": r.label, "source_id": r.source_id,
                   "family": r.family, "video_id": r.video_id}
            row.update(r.extra)
            rows.append(row)
        cols = ["index", "path", "label", "source_id", "family", "video_id"]
        return pd.DataFrame(rows, columns=cols + [k for k in (rows[0].keys() if rows else []) if k not in cols])

    def __repr__(self) -> str:
        n_fake = sum(r.label for r in self._records)
        return (f"{type(self).__name__}(n={len(self)}, real={len(self) - n_fake}, fake={n_fake}, "
                f"size={self.size}, on_error={self.on_error!r}, skipped={len(self.skipped)})")


# ---------------------------------------------------------------------------------------------------------
class FolderDataset(ImageDataset):
    """Images in ``root/real/**`` (label 0) and ``root/fake/**`` (label 1), or listed in a CSV file.

    Folder names ``real`` and ``fake`` match case-insensitively (``REAL``/``FAKE`` work too); files are
    found recursively, in natural order, by their ending (``extensions``); hidden files and folders (names
    starting with ``.``, e.g. macOS ``._x.jpg``) are ignored. One of the two folders may be absent, not both.

    Per item: ``family`` is ``"real"`` for real images; for a fake in a subfolder ``fake/<name>/...`` it is
    ``<name>`` (e.g. the generator), otherwise ``"fake"``. ``source_id`` is the file's path relative to
    ``root`` without extension (no pairing is known for plain folders, so every image is its own unit).
    ``video_id`` is ``""``.

    Parameters
    ----------
    root : str or os.PathLike
        Folder holding ``real/`` and/or ``fake/``.
    size, on_error, max_pixels, background, progress
        As in :class:`ImageDataset`.
    extensions : sequence of str, optional
        File endings to include, case-insensitive (default :data:`IMAGE_EXTENSIONS`).

    Raises
    ------
    ValueError
        ``root`` is not a folder, has neither ``real/`` nor ``fake/``, or no image is found.

    Examples
    --------
    >>> ds = FolderDataset("my_data", size=128)                  # doctest: +SKIP
    >>> ds2 = FolderDataset.from_csv("my_data/index.csv")        # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        size: int | tuple[int, int] | None = 299,
        on_error: str = "raise",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        background: Sequence[float] | None = (1.0, 1.0, 1.0),
        progress: bool = False,
    ):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"FolderDataset root {str(root)!r} is not a folder")
        exts = _normalize_extensions(extensions)
        self.root = str(root)
        records = _scan_real_fake(root, exts, real_family="real", fake_family="fake", family_from_subdir=True)
        self._setup(records, size=size, on_error=on_error, max_pixels=max_pixels, background=background,
                    progress=progress)

    @classmethod
    def from_csv(
        cls,
        csv_path: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        size: int | tuple[int, int] | None = 299,
        on_error: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        background: Sequence[float] | None = (1.0, 1.0, 1.0),
        progress: bool = False,
    ) -> "FolderDataset":
        """Build the dataset from a CSV index with columns ``path,label[,source_id,family,video_id]``.

        Parameters
        ----------
        csv_path : str or os.PathLike
            The CSV file (header row required; other columns are ignored).
        root : str or os.PathLike, optional
            Folder that relative paths are resolved against (default: the CSV file's folder).
        size, on_error, max_pixels, background, progress
            As in :class:`ImageDataset`.

        Notes
        -----
        ``label`` accepts ``0``/``1`` or ``real``/``fake`` (case-insensitive). Empty ``source_id`` or
        ``family`` cells take the defaults of :class:`ImageDataset`. A listed file that does not exist raises
        :class:`ImageLoadError` at construction with ``on_error="raise"``; with ``"skip"`` it is recorded in
        ``skipped`` like any unreadable file.

        Raises
        ------
        ValueError
            The CSV lacks ``path`` or ``label``, or a label is not one of the accepted values (the message
            gives the row number, counting the header as row 1).

        Examples
        --------
        >>> ds = FolderDataset.from_csv("index.csv", size=256)   # doctest: +SKIP
        """
        import pandas as pd

        csv_path = Path(csv_path)
        try:
            table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        except FileNotFoundError:
            raise ValueError(f"CSV index {str(csv_path)!r} not found") from None
        except pd.errors.EmptyDataError:
            raise ValueError(f"CSV index {str(csv_path)!r} is empty") from None
        table.columns = [str(c).strip() for c in table.columns]
        missing = [c for c in ("path", "label") if c not in table.columns]
        if missing:
            raise ValueError(
                f"CSV index {str(csv_path)!r} lacks column(s) {missing}; it has {list(table.columns)}"
            )
        if len(table) == 0:
            raise ValueError(f"CSV index {str(csv_path)!r} lists no images")
        base = Path(root) if root is not None else csv_path.parent
        records = []
        for row_no, row in enumerate(table.itertuples(index=False), start=2):
            row = row._asdict()
            raw = row["path"].strip()
            if not raw:
                raise ValueError(f"{str(csv_path)!r} row {row_no}: empty path")
            p = Path(raw)
            full = p if p.is_absolute() else base / p
            lab_txt = row["label"].strip().lower()
            if lab_txt in ("0", "real", "0.0"):
                lab = 0
            elif lab_txt in ("1", "fake", "1.0"):
                lab = 1
            else:
                raise ValueError(
                    f"{str(csv_path)!r} row {row_no}: label must be 0/1 or real/fake, got {row['label']!r}"
                )
            sid = (row.get("source_id") or "").strip() or os.path.splitext(raw)[0]
            fam = (row.get("family") or "").strip() or ("real" if lab == 0 else "fake")
            vid = (row.get("video_id") or "").strip()
            records.append(_Record(path=str(full), label=lab, source_id=sid, family=fam, video_id=vid))
        on_error = _check_on_error(on_error)
        if on_error == "raise":
            for rec in records:
                if not os.path.isfile(rec.path):
                    raise ImageLoadError(rec.path, f"file not found (listed in {str(csv_path)!r})")
        obj = cls._from_records(records, size=size, on_error=on_error, max_pixels=max_pixels,
                                background=background, progress=progress)
        obj.root = str(base)
        return obj


def _scan_real_fake(root: Path, exts, *, real_family, fake_family, family_from_subdir) -> list[_Record]:
    real_dir = _find_child_dir(root, "real")
    fake_dir = _find_child_dir(root, "fake")
    if real_dir is None and fake_dir is None:
        raise ValueError(f"{str(root)!r} has neither a 'real/' nor a 'fake/' folder")
    records = []
    for folder, label in ((real_dir, 0), (fake_dir, 1)):
        if folder is None:
            continue
        for f in _list_images(folder, exts):
            rel_root = f.relative_to(root).with_suffix("").as_posix()
            family = real_family if label == 0 else fake_family
            if label == 1 and family_from_subdir:
                parts = f.relative_to(folder).parts
                if len(parts) > 1:
                    family = parts[0]
            records.append(_Record(path=str(f), label=label, source_id=rel_root, family=family))
    if not records:
        raise ValueError(f"no image files with endings {list(exts)} found under {str(root)!r}")
    return records


# ---------------------------------------------------------------------------------------------------------
class CIFAKEDataset(ImageDataset):
    """The CIFAKE layout: ``root/<split>/REAL/*.jpg`` (label 0) and ``root/<split>/FAKE/*.jpg`` (label 1).

    CIFAKE's real images are CIFAR-10 photographs and its fakes were generated with Stable Diffusion v1.4,
    32 x 32 pixels; fakes were not made from particular real images, so every image is its own ``source_id``
    (``<split>/REAL/<name>`` without extension). ``family`` is ``"real"`` or ``"stable_diffusion_v1_4"``.
    Folder names match case-insensitively.

    Parameters
    ----------
    root : str or os.PathLike
        Folder holding ``train/`` and ``test/``.
    split : {"train", "test"}, optional
    size : int, (int, int) or None, optional
        Output size; default 32 (CIFAKE's native size, so no resampling).
    on_error, max_pixels, background, progress, extensions
        As in :class:`FolderDataset`.

    Examples
    --------
    >>> ds = CIFAKEDataset("cifake", split="test")   # doctest: +SKIP
    >>> ds[0]["image"].shape                         # doctest: +SKIP
    torch.Size([3, 32, 32])
    """

    FAKE_FAMILY = "stable_diffusion_v1_4"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str = "train",
        size: int | tuple[int, int] | None = 32,
        on_error: str = "raise",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        background: Sequence[float] | None = (1.0, 1.0, 1.0),
        progress: bool = False,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"CIFAKE split must be 'train' or 'test', got {split!r}")
        root = Path(root)
        split_dir = _find_child_dir(root, split)
        if split_dir is None:
            raise ValueError(f"CIFAKE root {str(root)!r} has no '{split}/' folder")
        self.root = str(root)
        self.split = split
        records = _scan_real_fake(split_dir, _normalize_extensions(extensions), real_family="real",
                                  fake_family=self.FAKE_FAMILY, family_from_subdir=False)
        for r in records:
            r.source_id = f"{split}/{r.source_id}"
        self._setup(records, size=size, on_error=on_error, max_pixels=max_pixels, background=background,
                    progress=progress)


# ---------------------------------------------------------------------------------------------------------
def _default_split_of(ids: Sequence[str]) -> dict[str, str]:
    """70/10/20 split of sorted ids: first floor(0.7 n) train, up to floor(0.8 n) val, the rest test."""
    ids = sorted(ids)
    n = len(ids)
    n_train = int(math.floor(0.7 * n + 1e-9))
    n_trval = int(math.floor(0.8 * n + 1e-9))
    out = {}
    for i, vid in enumerate(ids):
        out[vid] = "train" if i < n_train else ("val" if i < n_trval else "test")
    return out


def _read_split_files(split_files) -> dict[str, list[tuple[str, str]]]:
    """Official FF++ split lists -> {split: [(a, b), ...]}; accepts a folder or a mapping split -> file/list."""
    if isinstance(split_files, (str, os.PathLike)):
        folder = Path(split_files)
        if not folder.is_dir():
            raise ValueError(f"split_files {str(folder)!r} is not a folder with train/val/test.json")
        mapping = {s: folder / f"{s}.json" for s in _SPLITS if (folder / f"{s}.json").is_file()}
        if not mapping:
            raise ValueError(f"split_files folder {str(folder)!r} holds none of train.json, val.json, test.json")
    elif isinstance(split_files, Mapping):
        mapping = dict(split_files)
    else:
        raise TypeError(f"split_files must be a folder path or a dict split -> file or list, "
                        f"got {type(split_files).__name__}")
    out: dict[str, list[tuple[str, str]]] = {}
    for split, src in mapping.items():
        if split not in _SPLITS:
            raise ValueError(f"split_files key {split!r} is not one of {_SPLITS}")
        where = "the list given"
        if isinstance(src, (str, os.PathLike)):
            where = repr(os.fspath(src))
            try:
                with open(src, encoding="utf-8") as fh:
                    src = json.load(fh)
            except FileNotFoundError:
                raise ValueError(f"split file {where} for {split!r} not found") from None
            except json.JSONDecodeError as exc:
                raise ValueError(f"split file {where} is not valid JSON: {exc}") from None
        pairs = []
        for entry in src:
            if isinstance(entry, str) or len(entry) != 2:
                raise ValueError(f"split file {where}: each entry must be a [target, source] pair, got {entry!r}")
            pairs.append((str(entry[0]), str(entry[1])))
        out[split] = pairs
    seen: dict[str, str] = {}
    for split, pairs in out.items():
        for vid in {v for pair in pairs for v in pair}:
            if vid in seen and seen[vid] != split:
                raise ValueError(f"split files put video {vid!r} in both {seen[vid]!r} and {split!r}")
            seen[vid] = split
    return out


class FaceForensicsDataset(ImageDataset):
    """FaceForensics++ face-crop frames, real and fake, with a video-level split and real/fake pairing.

    Layout under ``root`` (``frames_dir`` is ``"v1faces"`` by default)::

        original_sequences/youtube/<compression>/<frames_dir>/<id>/<frame>.png                 real
        manipulated_sequences/<Method>/<compression>/<frames_dir>/<target>_<source>/<frame>.png fake

    A fake video ``<target>_<source>`` shows real video ``<target>`` with the face of video ``<source>``
    (the "donor") put in. So for a fake: ``source_id = <target>`` (the real video it was made from, which a
    real-vs-fake comparison of the same scene pairs it with), ``video_id = "<Method>/<target>_<source>"``
    (unique per fake video), ``family = <Method>``; for a real video: ``source_id = video_id = <id>``,
    ``family = "real"``. The extra table columns (:meth:`to_frame`) are ``method`` (``"real"`` for real),
    ``frame`` (file name without extension), ``target_id``, ``donor_id`` (``""`` for real) and ``split``.

    Frames: the first ``frames_per_video`` files of each video folder in natural order (``9.png`` before
    ``10.png``; the same as plain sorting for FF++'s zero-padded names).

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
    size, on_error, max_pixels, background, progress, extensions
        As in :class:`FolderDataset`.

    Attributes
    ----------
    excluded_videos : list of (str, str)
        ``(video folder, reason)`` for every video folder left out for layout reasons (no frames, a name
        that is not ``<target>_<source>``, no place in the split).
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
        size: int | tuple[int, int] | None = 299,
        on_error: str = "raise",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        background: Sequence[float] | None = (1.0, 1.0, 1.0),
        progress: bool = False,
    ):
        if split is not None and split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS} or None, got {split!r}")
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

        real_ids = sorted((e.name for e in os.scandir(real_base) if e.is_dir() and not e.name.startswith(".")),
                          key=_natural_key)

        # split assignment
        if split_files is not None:
            lists = _read_split_files(split_files)
            if split is not None and split not in lists:
                raise ValueError(f"split {split!r} requested but split_files only give {sorted(lists)}")
            real_split = {v: s for s, pairs in lists.items() for pair in pairs for v in pair}
            pair_split = {}
            for s, pairs in lists.items():
                for a, b in pairs:
                    pair_split[(a, b)] = s
                    pair_split[(b, a)] = s

            def fake_split(target, donor):
                s = pair_split.get((target, donor))
                return s, (None if s else "pair not listed in any split file")
        else:
            real_split = _default_split_of(real_ids)

            def fake_split(target, donor):
                s = real_split.get(target)
                return s, (None if s else f"target video {target!r} has no real folder to take its split from")

        self.split_of = dict(real_split)  # real video id -> split (train/val/test)

        records: list[_Record] = []
        for vid in real_ids:
            s = real_split.get(vid)
            if split is not None and s != split:
                if s is None:
                    self.excluded_videos.append((str(real_base / vid), "video listed in no split file"))
                continue
            records.extend(self._video_records(real_base / vid, exts, label=0, method="real", target=vid,
                                               donor="", video_id=vid, split=s or ""))
        for m, d in method_dirs.items():
            names = sorted((e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith(".")),
                           key=_natural_key)
            for name in names:
                target, sep, donor = name.partition("_")
                if not sep or not target or not donor:
                    self.excluded_videos.append(
                        (str(d / name), "folder name is not <target>_<source>"))
                    continue
                s, why = fake_split(target, donor)
                if split is not None and s != split:
                    if s is None:
                        self.excluded_videos.append((str(d / name), why))
                    continue
                records.extend(self._video_records(d / name, exts, label=1, method=m, target=target,
                                                   donor=donor, video_id=f"{m}/{name}", split=s or ""))
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
        self._setup(records, size=size, on_error=on_error, max_pixels=max_pixels, background=background,
                    progress=progress)

    def _after_removal(self, removed_records: list) -> None:
        self._skipped_real.update((r.video_id, r.extra["frame"]) for r in removed_records if r.label == 0)

    def _video_records(self, folder: Path, exts, *, label, method, target, donor, video_id, split):
        frames = _list_images(folder, exts, recursive=False)
        if not frames:
            self.excluded_videos.append((str(folder), "no frames"))
            return []
        if self.frames_per_video is not None:
            frames = frames[: self.frames_per_video]
        return [
            _Record(path=str(f), label=label, source_id=target, family=method, video_id=video_id,
                    extra={"method": method, "frame": f.stem, "target_id": target, "donor_id": donor,
                           "split": split})
            for f in frames
        ]

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


# ---------------------------------------------------------------------------------------------------------
def collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate dataset items into a batch for :class:`torch.utils.data.DataLoader`.

    ``image`` tensors are stacked to ``(B, 3, H, W)``; ``label`` and ``index`` become int64 tensors; string
    fields become lists. Unlike the default collate, images of different sizes (``size=None``) give an
    error that says so.

    Parameters
    ----------
    batch : sequence of dict
        Items from one of this module's datasets.

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        The batch is empty or its images differ in size.

    Examples
    --------
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=16, collate_fn=collate)   # doctest: +SKIP
    """
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    shapes = {tuple(item["image"].shape) for item in batch}
    if len(shapes) > 1:
        raise ValueError(
            f"images in the batch have different shapes {sorted(shapes)}; give the dataset a size= "
            "(e.g. size=299) to resize them, or use batch_size=1"
        )
    out: dict[str, Any] = {}
    for key in batch[0]:
        vals = [item[key] for item in batch]
        if key == "image":
            out[key] = torch.stack(vals)
        elif key in ("label", "index"):
            out[key] = torch.as_tensor(vals, dtype=torch.int64)
        elif isinstance(vals[0], torch.Tensor):
            out[key] = torch.stack(vals)
        else:
            out[key] = list(vals)
    return out
