"""Finding image files on disk: :func:`list_images` (natural order, hidden files ignored) and the
folder scanning of the folder-based data sets.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from .base import _Record

__all__ = ["IMAGE_EXTENSIONS", "list_images"]

#: File name endings (case-insensitive) that the folder-scanning datasets treat as images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _natural_key(name: str):
    """Sort key that orders ``"9.png"`` before ``"10.png"`` (digit runs compared as numbers)."""
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", name) if tok]


def _normalize_extensions(extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    exts = tuple(("." + e.lower().lstrip(".")) for e in extensions)
    if not exts:
        raise ValueError("extensions must name at least one file ending, e.g. ('.png', '.jpg')")
    return exts


def list_images(root: str | os.PathLike, *, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                recursive: bool = True) -> list[Path]:
    """The image files under a folder, in natural order, hidden files and folders left out.

    Parameters
    ----------
    root : str or os.PathLike
        The folder to search.
    extensions : sequence of str, optional
        File endings to include, case-insensitive, with or without the dot (default :data:`IMAGE_EXTENSIONS`).
    recursive : bool, optional
        Search subfolders too (default); ``False`` lists ``root`` itself only.

    Returns
    -------
    list of pathlib.Path
        Paths below ``root`` (``root`` joined with each relative path), sorted by the relative path with digit
        runs compared as numbers (``9.png`` before ``10.png``). Names starting with ``.`` (files and folders,
        e.g. macOS ``._x.jpg``) are skipped.

    Raises
    ------
    NotADirectoryError
        ``root`` is not a folder.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("10.png", "9.png", ".hidden.png", "notes.txt"):
    ...     (d / name).touch()
    >>> [p.name for p in list_images(d)]
    ['9.png', '10.png']
    """
    folder = Path(root)
    if not folder.is_dir():
        raise NotADirectoryError(f"list_images: {str(folder)!r} is not a folder")
    exts = _normalize_extensions(extensions)
    found = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith(".") and name.lower().endswith(exts):
                    found.append(Path(dirpath) / name)
    else:
        for entry in os.scandir(folder):
            if entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(exts):
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


def _scan_real_fake(root: Path, exts, *, real_family, fake_family, family_from_subdir) -> list[_Record]:
    real_dir = _find_child_dir(root, "real")
    fake_dir = _find_child_dir(root, "fake")
    if real_dir is None and fake_dir is None:
        raise ValueError(f"{str(root)!r} has neither a 'real/' nor a 'fake/' folder")
    records = []
    for folder, label in ((real_dir, 0), (fake_dir, 1)):
        if folder is None:
            continue
        for f in list_images(folder, extensions=exts):
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
