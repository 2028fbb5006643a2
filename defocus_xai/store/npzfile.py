"""One ``.npz`` file assembled from shard files: what ``out="name.npz"`` produces.

The arrays are streamed key by key and shard by shard into a temporary file (memory: one shard's key),
which is renamed onto the target when complete. The result loads with plain
``numpy.load(path, allow_pickle=False)``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .._version import __version__
from .atomic import atomic_file
from .reader import _Shard, check_shards
from .schema import SCHEMA_VERSION, now
from .shards import read_key, shard_info

__all__ = ["write_npz"]


def _layout(shards: Sequence[_Shard]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every key of the assembled file (unicode widened to the widest shard)."""
    keys = set(shards[0].keys)
    for s in shards[1:]:
        if set(s.keys) != keys:
            raise ValueError(f"{s.path}: keys {sorted(s.keys)} differ from {sorted(keys)} in {shards[0].path}")
    n = sum(s.n for s in shards)
    out = {}
    for key in sorted(keys):
        dtypes = [s.keys[key][1] for s in shards]
        if dtypes[0].kind == "U":
            dtype = max(dtypes, key=lambda d: d.itemsize)
        elif any(d != dtypes[0] for d in dtypes):
            raise ValueError(f"key {key!r} has dtypes {sorted(set(map(str, dtypes)))} across the shards")
        else:
            dtype = dtypes[0]
        out[key] = ((n,) + tuple(shards[0].keys[key][0][1:]), dtype)
    return out


def _write_member(zf: zipfile.ZipFile, key: str, shape: tuple[int, ...], dtype: np.dtype,
                  shards: Sequence[_Shard]) -> None:
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with zf.open(f"{key}.npy", "w", force_zip64=nbytes > 2 ** 31 - 2 ** 20) as f:
        np.lib.format.write_array_header_1_0(f, header)
        for s in shards:
            a = np.ascontiguousarray(read_key(s.path, key), dtype=dtype)
            f.write(a.reshape(-1).view(np.uint8))


def write_npz(path: str | os.PathLike, shard_paths: Sequence[str | os.PathLike], meta: Mapping | None = None) -> Path:
    """Concatenate shard files into one uncompressed ``.npz`` file, atomically.

    Parameters
    ----------
    path : path-like
        The target file (replaced when it exists).
    shard_paths : sequence of path-like
        Shard files (see :func:`~defocus_xai.store.write_shard`) in the order of their samples; they must
        hold the same keys, one grid per key and no sample index twice.
    meta : mapping, optional
        The ``meta`` of the assembled file (``schema_version``, ``library_version`` and ``created_at``
        are filled in when absent).

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, os
    >>> from defocus_xai.store import write_shard
    >>> d = tempfile.mkdtemp()
    >>> a = write_shard(os.path.join(d, "a.npz"), {"labels": np.array([0], np.int8)})
    >>> b = write_shard(os.path.join(d, "b.npz"), {"labels": np.array([1], np.int8)})
    >>> np.load(write_npz(os.path.join(d, "ab.npz"), [a, b]), allow_pickle=False)["labels"].tolist()
    [0, 1]
    """
    path = Path(path)
    if not shard_paths:
        raise ValueError(f"{path}: no shard files to assemble")
    shards = []
    for p in map(Path, shard_paths):
        info = shard_info(p)
        shards.append(_Shard(n=info["n"], keys=info["keys"], path=p, meta=info["meta"]))
    check_shards(shards, str(path))
    layout = _layout(shards)
    m = dict(meta or {})
    m.setdefault("schema_version", SCHEMA_VERSION)
    m.setdefault("library_version", __version__)
    m.setdefault("created_at", now())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key, (shape, dtype) in layout.items():
                    _write_member(zf, key, shape, dtype, shards)
                with zf.open("meta.npy", "w") as f:
                    np.lib.format.write_array(f, np.array(json.dumps(m, sort_keys=True)), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        shard_info(tmp)
    return path
