"""Shard files: their names, the split of a data set into shards, the atomic writer and the header reader.

A shard is one uncompressed ``.npz`` file of plain arrays (see :mod:`defocus_xai.store.schema`), written
to a temporary file and renamed, so a reader sees a complete file or none.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from .._version import __version__
from .atomic import atomic_file
from .schema import SCHEMA_VERSION, canonical, check_consistency, check_key, now, validate_arrays

__all__ = ["SHARD_RE", "shard_name", "shard_range", "write_shard", "npz_headers", "shard_info", "read_key",
           "remove_stale_tmp"]

SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})-chunk-(\d{6})\.npz$")
"""The name of a shard file in a store folder (shard index, number of shards, chunk)."""


def shard_name(shard_index: int, num_shards: int, chunk: int) -> str:
    """File name of chunk ``chunk`` of shard ``shard_index`` of ``num_shards``.

    Examples
    --------
    >>> shard_name(0, 2, 3)
    'shard-00000-of-00002-chunk-000003.npz'
    """
    return f"shard-{shard_index:05d}-of-{num_shards:05d}-chunk-{chunk:06d}.npz"


def shard_range(n: int, num_shards: int, shard_index: int) -> range:
    """Data-set indices of shard ``shard_index`` of ``num_shards`` (contiguous ranges).

    Examples
    --------
    >>> list(shard_range(5, 2, 0)), list(shard_range(5, 2, 1))
    ([0, 1], [2, 3, 4])
    """
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"need 0 <= shard_index < num_shards, got shard_index={shard_index}, "
                         f"num_shards={num_shards}")
    return range(shard_index * n // num_shards, (shard_index + 1) * n // num_shards)


def write_shard(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping | None = None) -> Path:
    """Validate ``arrays`` and write them atomically as an uncompressed ``.npz`` file.

    The data go to a temporary file in the same folder, which is flushed, ``fsync``-ed and then
    renamed onto ``path`` with :func:`os.replace`: a reader (or a resumed export) sees the complete
    file or none. On failure (a full disk: "no space left", naming the file) the temporary file is
    removed.

    Parameters
    ----------
    path : path-like
        Destination; should end in ``.npz``.
    arrays : mapping of str to array
        Per-sample arrays (see ``docs/npz_format.md``). Floats are cast to float32, ``labels`` to int8.
    meta : mapping, optional
        JSON-able metadata stored as the ``meta`` key. ``schema_version``, ``library_version`` and
        ``created_at`` are filled in when absent.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_shard(os.path.join(tempfile.mkdtemp(), "s.npz"), {"labels": np.array([1], np.int8)})
    >>> sorted(np.load(p, allow_pickle=False).files)
    ['labels', 'meta']
    """
    path = Path(path)
    out = {k: canonical(k, v) for k, v in arrays.items() if k != "meta"}
    validate_arrays(out, where=str(path))
    m = dict(meta or {})
    m.setdefault("schema_version", SCHEMA_VERSION)
    m.setdefault("library_version", __version__)
    m.setdefault("created_at", now())
    out["meta"] = np.array(json.dumps(m, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **out)
        f.flush()
        os.fsync(f.fileno())
    return path


_TMP_RE = re.compile(r"^\..+\.(\d+)\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (``.<name>.<pid>.tmp``) that a killed writer left in ``directory``.

    Files of a process that still runs are kept: they belong to a writer at work.

    Examples
    --------
    >>> import tempfile
    >>> remove_stale_tmp(tempfile.mkdtemp())
    []
    """
    removed = []
    for p in Path(directory).glob(".*.tmp"):
        m = _TMP_RE.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _member_header(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one ``.npy`` member; refuses a header that claims more data than the member holds."""
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    shape = tuple(int(s) for s in shape)
    if not dtype.hasobject:
        expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if info.file_size != expected:
            raise ValueError(f"{path}: member {info.filename!r} claims shape {shape} of {dtype} "
                             f"({expected} bytes with its header) but holds {info.file_size} bytes")
    return shape, dtype


def npz_headers(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of every array in an ``.npz`` file, read from the headers only (no data).

    Raises
    ------
    ValueError
        The file is missing, not a zip file, has a member that is not an array, or a header whose
        size disagrees with the data stored (the message names the file).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.npz"); np.savez(p, labels=np.zeros(2, np.int8))
    >>> npz_headers(p)
    {'labels': ((2,), dtype('int8'))}
    """
    path = Path(path)
    out = {}
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if sum(i.compress_size for i in infos) > size:
                raise ValueError(f"{path}: the zip directory claims more data than the file's {size} bytes")
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"{path}: member {info.filename!r} is not a .npy array")
                out[info.filename[:-4]] = _member_header(z, info, path)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"{path}: corrupt, or not an .npz (zip) file: {e}") from None
    return out


def read_key(path: str | os.PathLike, key: str) -> np.ndarray:
    """One array of an ``.npz`` file (plain arrays only); a damaged file is a ``ValueError`` naming it.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.npz"); np.savez(p, labels=np.zeros(2, np.int8))
    >>> read_key(p, "labels").tolist()
    [0, 0]
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            return z[key]
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: corrupt or unreadable shard (key {key!r}): {e}") from None


def shard_info(path: str | os.PathLike) -> dict:
    """Validate one ``.npz`` file from its headers and return ``{"n", "keys", "meta"}``.

    Raises
    ------
    ValueError
        On object arrays, unknown keys, wrong shapes or dtypes, damaged files (naming file and key).

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_shard(os.path.join(tempfile.mkdtemp(), "s.npz"), {"labels": np.array([1], np.int8)})
    >>> shard_info(p)["n"]
    1
    """
    path = Path(path)
    headers = npz_headers(path)
    for key, (shape, dtype) in headers.items():
        if key == "meta":
            if dtype.kind != "U" or shape != ():
                raise ValueError(f"{path}: key 'meta' must be a 0-d unicode array, got {dtype} {shape}")
            continue
        check_key(str(path), key, shape, dtype)
    shapes = {k: s for k, (s, _) in headers.items() if k != "meta"}
    n = check_consistency(str(path), shapes)
    meta = {}
    if "meta" in headers:
        try:
            meta = json.loads(str(read_key(path, "meta")))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: key 'meta' is not valid JSON: {e}") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: key 'meta' is not a JSON object")
    return {"n": n, "keys": {k: v for k, v in headers.items() if k != "meta"}, "meta": meta}
