"""``ImageDataset``: labelled image files as a torch ``Dataset`` of dict items; the base of every loader.

Items are dicts (``image``, ``label``, ``path``, ``source_id``, ``family``, ``video_id``, ``index``);
``on_error`` says what an unreadable file does (raise, or skip and record). docs/data.md has the details.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import DEFAULT_MAX_PIXELS, ImageLoadError, _check_fill, load_image
from ._resize import _check_resize, _resize_image

__all__ = ["ImageDataset"]


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


@dataclass
class _Record:
    """One item of the index: the file, its label and where it comes from."""

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
        0 (real) or 1 (fake), one per path (:meth:`unlabeled` builds a dataset of label -1, unknown).
    source_ids : sequence of str, optional
        Real scene/video each sample comes from (default: each file its own id, the path without extension).
    families : sequence of str, optional
        Manipulation family per sample (default ``"real"`` for label 0, ``"fake"`` for label 1).
    video_ids : sequence of str, optional
        Video per sample (default ``""``).
    size : int, (int, int) or None, optional
        Output ``(height, width)``; an int gives a square (an image already at that size is not resampled).
        ``None`` keeps each image's native size (then batches need equal sizes, see
        :func:`~defocus_xai.data.collate`).
    resize : {"torch", "pil"}, optional
        How images are resized to ``size``. ``"torch"`` (default):
        ``torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False)`` on the
        float image. ``"pil"``: the image rounded to 8 bits and resized with PIL's ``BILINEAR``, exactly as
        ``torchvision.transforms.Resize((h, w))`` on a PIL image (the paper's code); the result is a
        multiple of 1/255.
    on_error : {"raise", "skip"}, optional
        What to do with unreadable files: ``"raise"`` (default) raises :class:`ImageLoadError` naming the file
        when its item is read; ``"skip"`` runs :meth:`validate` now, which drops unreadable files and records
        them in :attr:`skipped`. An item is never replaced by a placeholder image.
    max_pixels : int or None, optional
        Passed to :func:`~defocus_xai.data.io.load_image`.
    fill : 3 floats or None, optional
        RGB colour that transparent pixels are composited over, passed to
        :func:`~defocus_xai.data.load_image` (default white).
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
        resize: str = "torch",
        on_error: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fill: Sequence[float] | None = (1.0, 1.0, 1.0),
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
        self._setup(records, size=size, resize=resize, on_error=on_error, max_pixels=max_pixels, fill=fill,
                    progress=progress)

    @classmethod
    def unlabeled(cls, paths: Sequence[str | os.PathLike], *, root: str | os.PathLike | None = None,
                  **options) -> "ImageDataset":
        """Image files whose labels are unknown: every item has label -1 and family ``"unlabeled"``.

        Label -1 means "unknown"; the attribution store accepts it (such samples get attributions and
        scores but take no part in the real-vs-fake analyses).

        Parameters
        ----------
        paths : sequence of str or os.PathLike
            Image files, e.g. from :func:`~defocus_xai.data.list_images`.
        root : str or os.PathLike, optional
            Folder the ``source_id`` of each file is taken relative to (its path below ``root``, without
            extension, ``/``-separated); default the path without extension.
        **options
            ``size``, ``resize``, ``on_error``, ``max_pixels``, ``fill``, ``progress`` as in
            :class:`ImageDataset`.

        Examples
        --------
        >>> from defocus_xai.data import ImageDataset, list_images
        >>> ds = ImageDataset.unlabeled(list_images("photos"), root="photos", size=128)   # doctest: +SKIP
        >>> ds[0]["label"], ds[0]["family"]                                                # doctest: +SKIP
        (-1, 'unlabeled')
        """
        records = []
        for p in map(os.fspath, paths):
            sid = p if root is None else os.path.relpath(p, os.fspath(root)).replace(os.sep, "/")
            records.append(_Record(path=p, label=-1, family="unlabeled", source_id=os.path.splitext(sid)[0]))
        return ImageDataset._from_records(records, **options)

    # -- construction helpers shared with subclasses -------------------------------------------------
    def _setup(self, records, *, size=299, resize="torch", on_error="raise", max_pixels=DEFAULT_MAX_PIXELS,
               fill=(1.0, 1.0, 1.0), progress=False):
        self.size = _normalize_size(size)
        self.resize = _check_resize(resize)
        self.on_error = _check_on_error(on_error)
        if max_pixels is not None and (isinstance(max_pixels, bool) or int(max_pixels) <= 0):
            raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
        self.max_pixels = max_pixels
        _check_fill(fill)
        self.fill = None if fill is None else tuple(float(v) for v in fill)
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
        return load_image(rec.path, max_pixels=self.max_pixels, fill=self.fill)

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
        return {
            "image": _resize_image(self.load(index), self.size, self.resize),
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
            from ..._progress import progress as progress_bar

            it = progress_bar(it, total=len(self._records), desc="validating images", unit="img")
        keep, removed, removed_records = [], [], []
        for rec in it:
            try:
                load_image(rec.path, max_pixels=self.max_pixels, fill=self.fill)
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
        """Labels in item order, ``(N,)`` int64 (0 real, 1 fake, -1 unknown)."""
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
        n_real = sum(r.label == 0 for r in self._records)
        n_fake = sum(r.label == 1 for r in self._records)
        unknown = len(self) - n_real - n_fake
        return (f"{type(self).__name__}(n={len(self)}, real={n_real}, fake={n_fake}, "
                + (f"unlabeled={unknown}, " if unknown else "")
                + f"size={self.size}, resize={self.resize!r}, on_error={self.on_error!r}, "
                f"skipped={len(self.skipped)})")

