"""``FolderDataset``: images under ``root/real/**`` and ``root/fake/**``, or listed in a CSV file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..io import DEFAULT_MAX_PIXELS, ImageLoadError
from .base import ImageDataset, _check_on_error, _Record
from .files import IMAGE_EXTENSIONS, _normalize_extensions, _scan_real_fake

__all__ = ["FolderDataset"]


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
    size, resize, on_error, max_pixels, fill, progress
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
        resize: str = "torch",
        on_error: str = "raise",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fill: Sequence[float] | None = (1.0, 1.0, 1.0),
        progress: bool = False,
    ):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"FolderDataset root {str(root)!r} is not a folder")
        exts = _normalize_extensions(extensions)
        self.root = str(root)
        records = _scan_real_fake(root, exts, real_family="real", fake_family="fake", family_from_subdir=True)
        self._setup(records, size=size, resize=resize, on_error=on_error, max_pixels=max_pixels, fill=fill,
                    progress=progress)

    @classmethod
    def from_csv(
        cls,
        csv_path: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        size: int | tuple[int, int] | None = 299,
        resize: str = "torch",
        on_error: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fill: Sequence[float] | None = (1.0, 1.0, 1.0),
        progress: bool = False,
    ) -> "FolderDataset":
        """Build the dataset from a CSV index with columns ``path,label[,source_id,family,video_id]``.

        Parameters
        ----------
        csv_path : str or os.PathLike
            The CSV file (header row required; other columns are ignored).
        root : str or os.PathLike, optional
            Folder that relative paths are resolved against (default: the CSV file's folder).
        size, resize, on_error, max_pixels, fill, progress
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
        csv_path = Path(csv_path)
        base = Path(root) if root is not None else csv_path.parent
        records = _csv_records(csv_path, base)
        on_error = _check_on_error(on_error)
        if on_error == "raise":
            for rec in records:
                if not os.path.isfile(rec.path):
                    raise ImageLoadError(rec.path, f"file not found (listed in {str(csv_path)!r})")
        obj = cls._from_records(records, size=size, resize=resize, on_error=on_error, max_pixels=max_pixels,
                                fill=fill, progress=progress)
        obj.root = str(base)
        return obj


def _csv_records(csv_path: Path, base: Path) -> list[_Record]:
    """Read a CSV index into records; relative paths resolved against ``base``; errors name the row."""
    import pandas as pd

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
    return records
