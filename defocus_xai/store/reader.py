"""Reading a store lazily: :func:`load_attributions` -> :class:`AttributionSet`.

A store is one ``.npz`` file, a store folder (shard files plus ``index.json``), a list of those, or the
reference notebooks' pair of files. ``.npz`` files cannot be memory-mapped, so arrays are read on
request, one key at a time and shard by shard.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .index import INDEX_NAME, check_entry, read_index, shard_files
from .legacy import family_from_name, ffpp_source_ids, object_keys, read_legacy
from .shards import npz_headers, read_key, shard_info

__all__ = ["AttributionSet", "load_attributions", "load_store_arrays"]


@dataclass
class _Shard:
    """One file (or in-memory block) of an attribution set with an optional row selection."""

    n: int
    keys: dict
    path: Path | None = None
    arrays: dict | None = None  # in-memory (converted legacy files)
    rows: np.ndarray | None = None  # selected rows; None = all
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.n if self.rows is None else int(len(self.rows))

    def load(self, key: str) -> np.ndarray:
        if key not in self.keys:
            raise KeyError(f"{self.path or '<memory>'}: no key {key!r} (keys: {sorted(self.keys)})")
        a = self.arrays[key] if self.arrays is not None else read_key(self.path, key)
        return a if self.rows is None else a[self.rows]


class AttributionSet:
    """A lazy, read-only view of an attribution store (one file, a store folder, or legacy files).

    Arrays are read on request, one key at a time and shard by shard, so a store larger than memory
    can be processed key by key or with :meth:`iter_shards`.

    Attributes
    ----------
    meta : dict
        The export metadata (of the first shard; shards of one export share it).

    Examples
    --------
    >>> s = load_attributions("export_dir")          # doctest: +SKIP
    >>> s.keys(), len(s)                              # doctest: +SKIP
    >>> fake_maps = s.fake()["dmaps"]                 # (N_fake, H, W) float32   # doctest: +SKIP
    """

    def __init__(self, shards: Sequence[_Shard], meta: Mapping | None = None, source: str = ""):
        self._shards = list(shards)
        self.meta = dict(meta or (self._shards[0].meta if self._shards else {}))
        self.source = source

    def __len__(self) -> int:
        return sum(s.size for s in self._shards)

    def __repr__(self) -> str:
        return (f"AttributionSet(n={len(self)}, shards={len(self._shards)}, keys={self.keys()}, "
                f"source={self.source!r})")

    @property
    def num_shards(self) -> int:
        """Number of underlying files (or in-memory blocks)."""
        return len(self._shards)

    def keys(self) -> list[str]:
        """Keys present in every shard (``meta`` excluded), sorted."""
        if not self._shards:
            return []
        common = set(self._shards[0].keys)
        for s in self._shards[1:]:
            common &= set(s.keys)
        return sorted(common)

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape of ``key`` over the whole set, from the headers (no data read)."""
        if key not in self:
            raise KeyError(f"no key {key!r} in {self.source}; keys: {self.keys()}")
        return (len(self),) + tuple(self._shards[0].keys[key][0][1:])

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self:
            raise KeyError(f"no key {key!r} in {self.source}; keys: {self.keys()}")
        parts = [s.load(key) for s in self._shards if s.size]
        if not parts:
            shape, dtype = self._shards[0].keys[key]
            return np.zeros((0,) + tuple(shape[1:]), dtype=dtype)
        return np.concatenate(parts, axis=0)

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]`` or ``default`` when the key is absent."""
        return self[key] if key in self else default

    def iter_shards(self, keys: Iterable[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield one dict of arrays per shard (bounded memory), restricted to ``keys``."""
        keys = list(keys) if keys is not None else self.keys()
        for s in self._shards:
            if s.size:
                yield {k: s.load(k) for k in keys}

    def to_dict(self, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """All (or the given) keys as a dict of concatenated arrays."""
        return {k: self[k] for k in (keys if keys is not None else self.keys())}

    def subset(self, *, labels: int | Sequence[int] | None = None, families: str | Sequence[str] | None = None,
               mask: np.ndarray | None = None) -> "AttributionSet":
        """A view restricted to samples with the given labels / families, or a boolean ``mask``.

        Examples
        --------
        >>> s.subset(labels=1, families=["Deepfakes"])   # doctest: +SKIP
        """
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.shape != (len(self),):
                raise ValueError(f"mask has shape {mask.shape}, expected ({len(self)},)")
        new, start = [], 0
        for s in self._shards:
            keep = np.ones(s.size, bool)
            if labels is not None:
                keep &= np.isin(s.load("labels"), np.atleast_1d(np.asarray(labels)))
            if families is not None:
                if "families" not in s.keys:
                    raise KeyError(f"{s.path or '<memory>'}: no key 'families' to select on")
                fam = [families] if isinstance(families, str) else list(families)
                keep &= np.isin(s.load("families"), fam)
            if mask is not None:
                keep &= mask[start:start + s.size]
            start += s.size
            base = np.arange(s.n) if s.rows is None else s.rows
            new.append(_Shard(n=s.n, keys=s.keys, path=s.path, arrays=s.arrays, rows=base[keep], meta=s.meta))
        return AttributionSet(new, meta=self.meta, source=self.source)

    def real(self) -> "AttributionSet":
        """Samples with label 0."""
        return self.subset(labels=0)

    def fake(self) -> "AttributionSet":
        """Samples with label 1."""
        return self.subset(labels=1)


def _shard_from_file(path: Path) -> _Shard:
    info = shard_info(path)
    return _Shard(n=info["n"], keys=info["keys"], path=path, meta=info["meta"])


def check_shards(shards: Sequence[_Shard], where: str) -> None:
    """Refuse shards that disagree on a key's per-sample shape, or that repeat a sample index."""
    first: dict[str, tuple[tuple[int, ...], str]] = {}
    for s in shards:
        for key, (shape, dtype) in s.keys.items():
            name = str(s.path or "<memory>")
            grid = tuple(shape[1:])
            if key not in first:
                first[key] = (grid, name)
            elif first[key][0] != grid:
                raise ValueError(f"{where}: key {key!r} has per-sample shape {grid} in {name} but "
                                 f"{first[key][0]} in {first[key][1]}; one grid per key")
    seen: dict[int, str] = {}
    for s in shards:
        if "sample_index" not in s.keys:
            continue
        idx = s.load("sample_index").tolist()
        if len(set(idx)) != len(idx):
            raise ValueError(f"{where}: {s.path}: repeats a sample index (the shard overlaps itself)")
        for i in idx:
            if i in seen:
                raise ValueError(f"{where}: sample index {i} is in {seen[i]} and in {s.path} (the shards overlap)")
            seen[i] = str(s.path)


def _folder_shards(p: Path) -> list[_Shard]:
    """The shards of a store folder (or of its ``index.json``), checked against the index."""
    d = p if p.is_dir() else p.parent
    if p.is_dir() and not (p / INDEX_NAME).exists() and shard_files(p):
        warnings.warn(f"{p}: no index (the export was interrupted before writing it, or is running); the "
                      "export is not complete: reading the shard files present", stacklevel=4)
        shards = [_shard_from_file(f) for f in shard_files(p)]
    else:
        doc = read_index(p)
        if not doc.get("complete", False):
            warnings.warn(f"{d}: the export is not complete (index says complete=false); "
                          "reading the shards written so far", stacklevel=4)
        shards = []
        for entry in doc["shards"]:
            sp = d / check_entry(d / INDEX_NAME, entry)
            if not sp.is_file():
                raise ValueError(f"{d / INDEX_NAME}: lists shard {entry['file']!r}, which does not exist")
            sh = _shard_from_file(sp)
            if sh.n != int(entry["n"]):
                raise ValueError(f"{sp}: holds {sh.n} samples, the index says {entry['n']}")
            shards.append(sh)
    check_shards(shards, str(d))
    return shards


def _file_shard(p: Path, pos: int, pair: bool, allow_legacy_pickle: bool) -> _Shard:
    """One ``.npz`` file: ours, or a reference file (object arrays after the opt-in; plain in a pair)."""
    headers = npz_headers(p)
    bad = object_keys(p)
    legacy = bool(bad) or (pair and "labels" not in headers)
    if bad and not allow_legacy_pickle:
        raise ValueError(
            f"{p}: keys {bad} are object arrays (the reference notebooks' format). Reading them "
            "needs pickle, and unpickling runs code from the file. Pass allow_legacy_pickle=True "
            "only if you trust the file; it is then converted to plain arrays.")
    if bad and not pair:
        raise ValueError(f"{p}: a legacy reference file must be given as the pair (real_file, fake_file) "
                         "so that labels are known")
    if not legacy:
        shard = _shard_from_file(p)
        check_shards([shard], str(p))
        return shard
    out = read_legacy(p, label=pos, family=family_from_name(p, pos), allow_pickle=bool(bad))
    meta = {"legacy": True, "legacy_files": [str(p)], "schema_version": 0}
    return _Shard(n=len(out["labels"]), keys={k: (v.shape, v.dtype) for k, v in out.items()}, arrays=out,
                  meta=meta)


NO_GROUPS_WARNING = (
    "{files}: the reference files carry no video ids: frames are treated as independent units; the paper's "
    "50 alignment samples come from about 2 videos, so frame-level statistics overstate the evidence; pass "
    "source ids (groups=...) or use a store exported by defocus_xai")
"""The warning for reference files without parseable sample paths (``{files}``: the files)."""


def _set_source_ids(shard: _Shard, ids: np.ndarray) -> None:
    shard.arrays["source_ids"] = ids
    shard.keys["source_ids"] = (ids.shape, ids.dtype)


def _legacy_groups(shards: Sequence[_Shard], groups: Any) -> None:
    """Give the reference files' samples ``source_ids``: ``groups``, else inferred from paths, else a warning."""
    legacy = [s for s in shards if s.arrays is not None]
    if groups is not None:
        if len(legacy) != len(shards):
            raise ValueError("groups=... is for the reference notebooks' files only; a store exported by "
                             "defocus_xai carries its own source_ids")
        ids = np.asarray(groups).astype(str).reshape(-1)
        n = sum(s.n for s in legacy)
        if ids.size != n:
            raise ValueError(f"groups has {ids.size} entries; the reference files hold {n} samples "
                             "(the real file's, then the fake file's)")
        start = 0
        for s in legacy:
            _set_source_ids(s, ids[start:start + s.n])
            start += s.n
        return
    inferred = [ffpp_source_ids(s.arrays["paths"]) if s.n else np.zeros(0, "<U1") for s in legacy]
    if legacy and all(ids is not None for ids in inferred):
        for s, ids in zip(legacy, inferred):
            _set_source_ids(s, ids)
    elif legacy:
        files = ", ".join(f for s in legacy for f in s.meta.get("legacy_files", []))
        warnings.warn(NO_GROUPS_WARNING.format(files=files), UserWarning, stacklevel=3)


def load_attributions(path_or_paths: Any, *, allow_legacy_pickle: bool = False,
                      groups: Any = None) -> AttributionSet:
    """Open an attribution store lazily.

    Parameters
    ----------
    path_or_paths : path-like, or sequence of path-like
        * a ``.npz`` file written by :func:`~defocus_xai.store.write_shard` or by
          ``export_attributions(..., out="name.npz")``;
        * a store folder (or its ``index.json``);
        * a list of such files / folders (concatenated in order);
        * the reference notebooks' pair ``(real_file, fake_file)`` (``shap_data_real.npz``,
          ``shap_data_fake_<Method>.npz``): labels come from the position (0 real, 1 fake) and
          ``families`` from the file name.
    allow_legacy_pickle : bool, default False
        Reference files store object arrays, which ``numpy`` can only read by unpickling, and unpickling
        executes code chosen by whoever wrote the file. They are refused unless this is True; then they
        are read and converted to plain float32 arrays (``rgb_shaps`` stays (N, H, W), the reference's
        channel 0). Only pass True for files you trust.
    groups : sequence of str, optional
        Source ids (FaceForensics++: the real video) of the reference files' samples, the real file's then
        the fake file's; stored as ``source_ids``. Without it, they are inferred from the files' sample
        paths (``paths``, ``image_paths`` or ``img_paths``) in FaceForensics++'s layout (a fake
        ``<target>_<donor>`` shares the group of real video ``<target>``). Files without such paths (the
        reference's own) get no ``source_ids`` and one ``UserWarning`` naming them: frames are then
        independent units. Refused for stores written by defocus_xai, which carry their own.

    Returns
    -------
    AttributionSet

    Raises
    ------
    ValueError
        Object arrays without the opt-in, unknown keys, wrong shapes or dtypes, a missing or malformed
        index, a missing or damaged shard, shards that disagree on a grid or repeat a sample, ``groups`` of
        the wrong length or for a store of ours; the message names the file (and the key).

    Examples
    --------
    >>> s = load_attributions("exports/ffpp_deepfakes")                      # doctest: +SKIP
    >>> s = load_attributions(("shap_data_real.npz", "shap_data_fake_Deepfakes.npz"),
    ...                       allow_legacy_pickle=True)                       # doctest: +SKIP
    >>> s["source_ids"][:2]        # inferred from FF++ paths, when the files carry them   # doctest: +SKIP
    """
    single = isinstance(path_or_paths, (str, os.PathLike))
    paths = [Path(path_or_paths)] if single else [Path(p) for p in path_or_paths]
    pair = not single and len(paths) == 2
    if not paths:
        raise ValueError("load_attributions: no paths given")
    shards: list[_Shard] = []
    for pos, p in enumerate(paths):
        if not p.exists():
            raise ValueError(f"{p}: no such file or directory")
        if p.is_dir() or p.name == INDEX_NAME:
            shards.extend(_folder_shards(p))
        else:
            shards.append(_file_shard(p, pos, pair, allow_legacy_pickle))
    _legacy_groups(shards, groups)
    meta = next((s.meta for s in shards if s.meta and not s.meta.get("legacy")), None)
    if meta is None:
        meta = {"legacy": True, "legacy_files": [str(p) for p in paths], "schema_version": 0}
    return AttributionSet(shards, meta=meta, source=", ".join(str(p) for p in paths))


def load_store_arrays(store: Any, keys: Sequence[str] | None = None) -> dict:
    """The arrays of an attribution store (a path or an :class:`AttributionSet`) as a dict.

    Parameters
    ----------
    store : AttributionSet, mapping of arrays, or what :func:`load_attributions` opens
        Opened with :func:`load_attributions` unless it has ``keys()``.
    keys : sequence of str, optional
        The keys wanted (those absent from the store are left out); default: every key.

    Examples
    --------
    >>> arrays = load_store_arrays("exports/run1", keys=["dmaps", "labels"])   # doctest: +SKIP
    """
    if not hasattr(store, "keys"):
        store = load_attributions(store)
    present = [k for k in store.keys() if k != "meta"]
    return {k: np.asarray(store[k]) for k in (keys or present) if k in present}
