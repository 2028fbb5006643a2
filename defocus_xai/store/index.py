"""The index of a store folder: ``index.json`` lists the shard files, their sample ranges and the meta.

The shard files are the source of truth; the index is rebuilt from them (:func:`rebuild_index`) after
every shard an export writes, and checked strictly when read (:func:`read_index`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from .._version import __version__
from .atomic import atomic_file
from .schema import FORMAT_NAME, SCHEMA_VERSION, now
from .shards import SHARD_RE, read_key, shard_info

__all__ = ["INDEX_NAME", "write_index", "read_index", "rebuild_index", "shard_files", "check_entry"]

INDEX_NAME = "index.json"
"""File name of the index in a store folder."""


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def check_entry(index_path: Path, entry: object) -> str:
    """The shard file name of one index entry; anything but a plain shard file name is refused.

    The message says only that the entry is not allowed: it never reveals whether a path exists.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ValueError(f"{index_path}: malformed shard entry (a JSON object with 'file' and 'n' is needed)")
    name = entry["file"]
    if not SHARD_RE.match(name) or Path(name).name != name:
        raise ValueError(f"{index_path}: shard entry {name[:80]!r} not allowed (plain shard file names "
                         "'shard-XXXXX-of-XXXXX-chunk-XXXXXX.npz' inside the store folder only)")
    n = entry.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{index_path}: shard entry {name!r} has no valid sample count 'n'")
    return name


def write_index(directory: str | os.PathLike, shards: Sequence[Mapping], *, meta: Mapping | None = None,
                complete: bool = False, extra: Mapping | None = None) -> Path:
    """Write ``index.json`` of a store folder atomically.

    Parameters
    ----------
    directory : path-like
        The store folder.
    shards : sequence of dict
        One entry per shard file: ``file`` (a shard file name, see
        :func:`~defocus_xai.store.shards.shard_name`), ``n`` (samples) and optionally
        ``first_index`` / ``last_index`` (data-set indices).
    meta : mapping, optional
        Metadata common to the shards (the export's ``meta``).
    complete : bool
        True once the export that owns the folder finished.
    extra : mapping, optional
        More top-level fields (e.g. ``num_shards``).

    Returns
    -------
    pathlib.Path
        The index path.

    Examples
    --------
    >>> import tempfile
    >>> write_index(tempfile.mkdtemp(), [], complete=True).name
    'index.json'
    """
    directory = Path(directory)
    p = directory / INDEX_NAME
    for s in shards:
        check_entry(p, s)
    doc = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "library_version": __version__,
        "updated_at": now(),
        "complete": bool(complete),
        "num_samples": int(sum(int(s["n"]) for s in shards)),
        "shards": [dict(s) for s in shards],
        "meta": dict(meta or {}),
    }
    if extra:
        doc.update(extra)
    _atomic_write_text(p, json.dumps(doc, indent=1, sort_keys=True))
    return p


def read_index(path: str | os.PathLike) -> dict:
    """Read and check an ``index.json`` (a store folder or the file itself).

    Raises
    ------
    ValueError
        No index, invalid JSON, not a store index, or a shard entry that is not a plain shard file
        name with a sample count; the message names the index file.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp(); _ = write_index(d, [], complete=True)
    >>> read_index(d)["complete"]
    True
    """
    p = Path(path)
    if p.is_dir():
        p = p / INDEX_NAME
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{p}: no index file; is this an export folder? "
                         "(a resumed export or `defocus-xai merge` writes it)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: index is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{p}: not a defocus_xai attribution index (format={fmt!r})")
    if not isinstance(doc.get("shards"), list) or not isinstance(doc.get("meta", {}), dict):
        raise ValueError(f"{p}: malformed index ('shards' must be a list, 'meta' an object)")
    for entry in doc["shards"]:
        check_entry(p, entry)
    return doc


def shard_files(directory: Path) -> list[Path]:
    """The shard files present in a store folder, sorted by name."""
    return sorted(p for p in directory.glob("shard-*.npz") if SHARD_RE.match(p.name))


_ENTRY_CACHE: dict[tuple[str, int, int], dict] = {}


def _entry(p: Path) -> dict:
    """Index entry of a shard file (cached by path, size and mtime: files are immutable once renamed)."""
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _ENTRY_CACHE:
        m = SHARD_RE.match(p.name)
        info = shard_info(p)
        si = read_key(p, "sample_index") if "sample_index" in info["keys"] else None
        _ENTRY_CACHE[key] = {"file": p.name, "n": info["n"], "shard_index": int(m.group(1)),
                             "num_shards": int(m.group(2)), "chunk": int(m.group(3)),
                             "first_index": int(si.min()) if si is not None and si.size else None,
                             "last_index": int(si.max()) if si is not None and si.size else None,
                             "_meta": info["meta"]}
    return dict(_ENTRY_CACHE[key])


def _common_meta(m: dict) -> dict:
    """A shard's meta without its shard-specific fields: the meta of the whole store."""
    meta = {k: v for k, v in m.items() if k not in ("export", "created_at")}
    if "export" in m:
        meta["export"] = {k: v for k, v in m["export"].items()
                          if k not in ("shard_index", "chunk", "first_index", "last_index")}
    return meta


def rebuild_index(directory: str | os.PathLike, n_total: int | None, num_shards: int) -> Path:
    """Write ``index.json`` from the shard files present in ``directory`` (the source of truth).

    ``complete`` is set when the files hold ``n_total`` samples.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> read_index(rebuild_index(d, 0, 1))["complete"]
    True
    """
    directory = Path(directory)
    entries, meta = [], None
    for p in shard_files(directory):
        e = _entry(p)
        m = e.pop("_meta")
        if meta is None:
            meta = _common_meta(m)
        entries.append(e)
    entries.sort(key=lambda e: (e["first_index"] if e["first_index"] is not None else -1, e["file"]))
    count = sum(e["n"] for e in entries)
    complete = n_total is not None and count == n_total
    return write_index(directory, entries, meta=meta, complete=complete,
                       extra={"total_samples": n_total, "num_shards": num_shards})
