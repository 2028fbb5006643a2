"""Joining the store folders of several exports (machines, shards of one data set) into one store."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Iterable

from .atomic import atomic_file, output_lock
from .index import INDEX_NAME, check_entry, read_index, rebuild_index, shard_files
from .npzfile import write_npz
from .reader import _Shard, check_shards
from .shards import shard_info

__all__ = ["merge_exports"]


def _collect(stores: Iterable[str | os.PathLike]) -> tuple[list[_Shard], dict]:
    """The checked shards of the inputs (same export fingerprint, one grid per key, no overlap)."""
    shards: list[_Shard] = []
    first: dict = {}
    for d in map(Path, stores):
        doc = read_index(d)
        base = d if d.is_dir() else d.parent
        for e in doc["shards"]:
            p = base / check_entry(base / INDEX_NAME, e)
            if any(p.resolve() == s.path.resolve() for s in shards):
                continue
            info = shard_info(p)
            fp = info["meta"].get("export", {}).get("fingerprint")
            if not first:
                first = {"fingerprint": fp, "doc": doc}
            elif fp != first["fingerprint"]:
                raise ValueError(f"{p}: made with other settings than the first input (fingerprint {fp} != "
                                 f"{first['fingerprint']}); cannot merge")
            shards.append(_Shard(n=info["n"], keys=info["keys"], path=p, meta=info["meta"]))
    if not shards:
        raise ValueError("merge_exports: the inputs hold no shard files")
    check_shards(shards, "merge_exports")
    return shards, first["doc"]


def _link_into(out: Path, shards: list[_Shard], link: bool) -> None:
    """Hard-link (or copy) the shard files into ``out``, which must hold no other shard files."""
    for f in shard_files(out):
        if not any(os.path.samefile(f, s.path) for s in shards):
            raise ValueError(f"{out}: holds shard files that are not among the inputs (e.g. {f.name}); merge "
                             "into a new folder (or into one of the inputs)")
    for p in (s.path for s in shards):
        dst = out / p.name
        if dst.exists():
            if os.path.samefile(dst, p):
                continue
            raise ValueError(f"{dst}: exists and differs from {p}")
        with atomic_file(dst) as tmp:
            try:
                if not link:
                    raise OSError("copy requested")
                os.link(p, tmp)
            except OSError:
                shutil.copyfile(p, tmp)


def merge_exports(stores: Iterable[str | os.PathLike], out: str | os.PathLike, *, link: bool = True) -> Path:
    """Join the store folders of several exports (machines) into one store.

    The inputs must come from the same settings (same export fingerprint), share one grid per key and
    not overlap (no sample index twice). One merge or export writes into ``out`` at a time (a second one
    fails at once, naming the holder's pid). With ``out`` ending in ``.npz`` the result is one file that
    plain ``numpy.load(out, allow_pickle=False)`` reads; otherwise the shard files are hard-linked (or
    copied) into the folder ``out`` and a new index is written.

    Parameters
    ----------
    stores : iterable of path-like
        Store folders or their ``index.json`` files.
    out : path-like
        Destination folder (may be one of the inputs), or a ``.npz`` file.
    link : bool
        Hard-link when possible (same file system), else copy (folder output only).

    Returns
    -------
    pathlib.Path
        ``out``; open it with :func:`~defocus_xai.store.load_attributions`.

    Raises
    ------
    ValueError
        Inputs made with other settings, overlapping, on different grids, or a malformed index or shard;
        an ``out`` folder holding shard files that are not among the inputs.
    OSError
        :class:`~defocus_xai.store.atomic.OutputLocked` when another process writes into ``out``; "no
        space left" naming the file when the disk is full.

    Examples
    --------
    >>> merge_exports(["machine0/out", "machine1/out"], "merged")        # doctest: +SKIP
    >>> merge_exports(["machine0/out", "machine1/out"], "merged.npz")    # doctest: +SKIP
    """
    out = Path(out)
    shards, doc = _collect(stores)
    n_total = doc.get("total_samples")
    n = sum(s.n for s in shards)
    if n_total is not None and n != n_total:
        warnings.warn(f"{out}: merged {n} of {n_total} samples; the export is incomplete", stacklevel=2)
    if out.suffix == ".npz" and out.is_dir():
        raise ValueError(f"{out}: is a folder; a name ending in .npz means one file here (choose another name)")
    with output_lock(out, "merge"):
        if out.suffix == ".npz":
            shards.sort(key=lambda s: min(s.load("sample_index").tolist() or [-1]) if "sample_index" in s.keys
                        else -1)
            return write_npz(out, [s.path for s in shards], doc.get("meta"))
        _link_into(out, shards, link)
        rebuild_index(out, n_total, int(doc.get("num_shards") or 1))
    return out
