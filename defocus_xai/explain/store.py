"""The ``.npz`` attribution store: schema, validation, atomic shard writer and lazy loader.

A store is one ``.npz`` file or a directory of *shard* files plus an ``index.json``. Every file holds
plain numeric or fixed-width unicode arrays only and loads with ``numpy.load(path, allow_pickle=False)``.
Real and fake samples live together and are told apart by ``labels``.

Keys (``N`` samples; ``H, W`` the map grid; ``Hi, Wi`` the image grid):

===========================  ====================  ===========================================
key                          shape                 dtype
===========================  ====================  ===========================================
``dmaps``                    (N, H, W)             float32, normalized defocus map in [0, 1]
``defocus_shaps``            (N, H, W)             float32, ``shap_gradient`` on the map
``rgb_shaps``                (N, 3, Hi, Wi)        float32, ``shap_gradient`` of the RGB model
                             or (N, Hi, Wi)        (reference files: channel 0 only)
``labels``                   (N,)                  int8 (0 real, 1 fake)
``paths``                    (N,)                  unicode
``sample_index``             (N,)                  int64, index in the exported data set
``source_ids``, ``families``  (N,)                  unicode
``scores``                   (N,)                  float32, detector probability of "fake"
``features``                 (N, D)                float32
``gt_masks``                 (N, H, W)             uint8
``sigma_true``               (N, H, W)             float32
``attr_<space>_<method>``    like the input        float32 (``space`` is ``defocus`` or ``rgb``)
``x_<anything>``             (N, ...)              any plain dtype (user extensions)
``meta``                     ()                    unicode, one JSON document
===========================  ====================  ===========================================

See ``docs/npz_format.md`` for the meta fields, shards, resume and the reference's legacy files.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from defocus_xai.explain.store import write_shard, load_attributions
>>> d = tempfile.mkdtemp()
>>> arrays = {"dmaps": np.zeros((2, 8, 8), np.float32), "labels": np.array([0, 1], np.int8),
...           "paths": np.array(["a.png", "b.png"])}
>>> p = write_shard(os.path.join(d, "one.npz"), arrays, meta={"note": "demo"})
>>> s = load_attributions(p)
>>> len(s), s["dmaps"].shape, s.fake()["paths"].tolist()
(2, (2, 8, 8), ['b.png'])
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .._version import __version__

__all__ = [
    "SCHEMA_VERSION",
    "INDEX_NAME",
    "AttributionSet",
    "load_attributions",
    "write_shard",
    "write_index",
    "read_index",
    "validate_arrays",
    "shard_info",
]

SCHEMA_VERSION = 1
"""Version of the store layout written into every ``meta`` and index."""

INDEX_NAME = "index.json"
"""File name of the index in a shard directory."""

FORMAT_NAME = "defocus_xai.attributions"

# key -> (allowed dtype kinds, allowed ndims, canonical dtype written)
_SPEC: dict[str, tuple[str, tuple[int, ...], Any]] = {
    "dmaps": ("f", (3,), np.float32),
    "defocus_shaps": ("f", (3,), np.float32),
    "rgb_shaps": ("f", (3, 4), np.float32),
    "labels": ("iu", (1,), np.int8),
    "paths": ("U", (1,), None),
    "sample_index": ("iu", (1,), np.int64),
    "source_ids": ("U", (1,), None),
    "families": ("U", (1,), None),
    "scores": ("f", (1,), np.float32),
    "features": ("f", (2,), np.float32),
    "gt_masks": ("ub", (3,), np.uint8),
    "sigma_true": ("f", (3,), np.float32),
}
_ATTR_RE = re.compile(r"^attr_(defocus|rgb)_[a-z0-9_]+$")
_MAP_GRID_KEYS = ("dmaps", "defocus_shaps", "gt_masks", "sigma_true")
_LEGACY_KEYS = ("dmaps", "defocus_shaps", "rgb_shaps")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _key_spec(key: str) -> tuple[str, tuple[int, ...], Any] | None:
    if key in _SPEC:
        return _SPEC[key]
    m = _ATTR_RE.match(key)
    if m:
        return ("f", (3,) if m.group(1) == "defocus" else (4,), np.float32)
    return None


def _check_key(where: str, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise ``ValueError`` when ``key`` with ``shape``/``dtype`` breaks the contract."""
    if dtype.kind == "O" or dtype.hasobject:
        raise ValueError(
            f"{where}: key {key!r} is an object array; the store holds plain numeric and unicode arrays "
            "only (object arrays need pickle, and unpickling runs code from the file)"
        )
    if key.startswith("x_"):
        if dtype.kind not in "biufcUS":
            raise ValueError(f"{where}: key {key!r} has unsupported dtype {dtype}")
        return
    spec = _key_spec(key)
    if spec is None:
        raise ValueError(
            f"{where}: unknown key {key!r}; allowed: {sorted(_SPEC)} , 'attr_<defocus|rgb>_<method>', "
            "'x_<name>' for extensions, and 'meta'"
        )
    kinds, ndims, _ = spec
    if dtype.kind not in kinds:
        raise ValueError(f"{where}: key {key!r} has dtype {dtype}, expected kind {kinds!r}")
    if len(shape) not in ndims:
        raise ValueError(f"{where}: key {key!r} has shape {shape}, expected {ndims[0]} dimensions"
                         + (f" (or {ndims[1]})" if len(ndims) > 1 else ""))
    if key == "rgb_shaps" and len(shape) == 4 and shape[1] != 3:
        raise ValueError(f"{where}: key 'rgb_shaps' has shape {shape}, expected (N, 3, H, W) or (N, H, W)")
    if key.startswith("attr_rgb_") and shape[1] != 3:
        raise ValueError(f"{where}: key {key!r} has shape {shape}, expected (N, 3, H, W)")


def _check_consistency(where: str, shapes: Mapping[str, tuple[int, ...]], check_grids: bool = True) -> int:
    """Check that every per-sample key has the same N and map keys one grid; return N."""
    per_sample = {k: s for k, s in shapes.items() if k != "meta"}
    if not per_sample:
        raise ValueError(f"{where}: no data keys")
    ns = {k: s[0] for k, s in per_sample.items()}
    n = next(iter(ns.values()))
    bad = {k: v for k, v in ns.items() if v != n}
    if bad:
        raise ValueError(f"{where}: keys disagree on the number of samples: {ns}")
    if not check_grids:
        return n
    grids = {k: per_sample[k][1:] for k in per_sample
             if k in _MAP_GRID_KEYS or k.startswith("attr_defocus_")}
    if len(set(grids.values())) > 1:
        raise ValueError(f"{where}: map-grid keys disagree on (H, W): {grids}")
    rgb = {k: per_sample[k][-2:] for k in per_sample if k == "rgb_shaps" or k.startswith("attr_rgb_")}
    if len(set(rgb.values())) > 1:
        raise ValueError(f"{where}: image-grid keys disagree on (H, W): {rgb}")
    return n


def validate_arrays(arrays: Mapping[str, np.ndarray], where: str = "<arrays>", *, check_grids: bool = True) -> int:
    """Validate a dict of arrays against the store contract and return the number of samples.

    Parameters
    ----------
    arrays : mapping of str to numpy.ndarray
        The arrays of one shard (``meta`` excluded or a 0-d unicode array).
    where : str
        Name used in error messages (a file name).
    check_grids : bool, default True
        Also require map-grid keys (``dmaps``, ``defocus_shaps``, ...) to share one (H, W) and RGB keys
        another (off for the reference's legacy files, whose attributions may be on another grid).

    Returns
    -------
    int
        Number of samples ``N``.

    Raises
    ------
    ValueError
        Unknown key, wrong dtype or number of dimensions, object arrays, inconsistent ``N`` or grids;
        the message names ``where`` and the key.

    Examples
    --------
    >>> validate_arrays({"labels": np.zeros(3, np.int8)})
    3
    """
    shapes = {}
    for key, a in arrays.items():
        a = np.asarray(a)
        if key == "meta":
            if a.ndim != 0 or a.dtype.kind != "U":
                raise ValueError(f"{where}: key 'meta' must be a 0-d unicode array (one JSON string)")
            continue
        _check_key(where, key, a.shape, a.dtype)
        shapes[key] = a.shape
    return _check_consistency(where, shapes, check_grids=check_grids)


def _canonical(key: str, a: np.ndarray) -> np.ndarray:
    """Cast to the canonical dtype of ``key`` (float32 maps, int8 labels, ...)."""
    a = np.asarray(a)
    spec = _key_spec(key)
    if spec is not None and spec[2] is not None and a.dtype != spec[2] and a.dtype.kind in spec[0]:
        if key == "labels" and a.size and (a.min() < -128 or a.max() > 127):
            raise ValueError(f"key 'labels' has values outside int8: [{a.min()}, {a.max()}]")
        a = a.astype(spec[2])
    if a.dtype.kind == "U" and a.ndim == 1 and a.size == 0:
        a = a.astype("<U1")
    return np.ascontiguousarray(a)


def write_shard(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping | None = None) -> Path:
    """Validate ``arrays`` and write them atomically as an uncompressed ``.npz`` file.

    The data go to a temporary file in the same directory, which is flushed, ``fsync``-ed and then
    renamed onto ``path`` with :func:`os.replace`: a reader (or a resumed export) sees the complete
    file or none.

    Parameters
    ----------
    path : path-like
        Destination; should end in ``.npz``.
    arrays : mapping of str to array
        Per-sample arrays (see the module docstring). Floats are cast to float32, ``labels`` to int8.
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
    out = {k: _canonical(k, v) for k, v in arrays.items() if k != "meta"}
    validate_arrays(out, where=str(path))
    m = dict(meta or {})
    m.setdefault("schema_version", SCHEMA_VERSION)
    m.setdefault("library_version", __version__)
    m.setdefault("created_at", _now())
    out["meta"] = np.array(json.dumps(m, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **out)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_index(directory: str | os.PathLike, shards: Sequence[Mapping], *, meta: Mapping | None = None,
                complete: bool = False, extra: Mapping | None = None) -> Path:
    """Write ``index.json`` of a shard directory atomically.

    Parameters
    ----------
    directory : path-like
        The shard directory.
    shards : sequence of dict
        One entry per shard file: ``file`` (name relative to ``directory``), ``n`` (samples) and
        optionally ``first_index``/``last_index`` (data-set indices).
    meta : mapping, optional
        Metadata common to the shards (the export's ``meta``).
    complete : bool
        True once the export that owns the directory finished.
    extra : mapping, optional
        More top-level fields (e.g. ``num_shards``).

    Returns
    -------
    pathlib.Path
        The index path.
    """
    directory = Path(directory)
    doc = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "library_version": __version__,
        "updated_at": _now(),
        "complete": bool(complete),
        "num_samples": int(sum(int(s["n"]) for s in shards)),
        "shards": [dict(s) for s in shards],
        "meta": dict(meta or {}),
    }
    if extra:
        doc.update(extra)
    p = directory / INDEX_NAME
    _atomic_write_text(p, json.dumps(doc, indent=1, sort_keys=True))
    return p


def read_index(path: str | os.PathLike) -> dict:
    """Read and check an ``index.json`` (a directory or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / INDEX_NAME
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{p}: no index file; is this an export directory? "
                         "(a resumed export or `defocus-xai merge` writes it)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: index is not valid JSON: {e}") from None
    if doc.get("format") != FORMAT_NAME or "shards" not in doc:
        raise ValueError(f"{p}: not a defocus_xai attribution index (format={doc.get('format')!r})")
    return doc


# --------------------------------------------------------------------------------------------- reading


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of every array in an ``.npz`` file, read from the headers only (no data)."""
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not name.endswith(".npy"):
                    raise ValueError(f"{path}: member {name!r} is not a .npy array")
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                out[name[:-4]] = (tuple(shape), dtype)
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not an .npz (zip) file") from None
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    return out


def shard_info(path: str | os.PathLike) -> dict:
    """Validate one ``.npz`` file from its headers and return ``{"n", "keys", "meta"}``.

    Raises
    ------
    ValueError
        On object arrays, unknown keys, wrong shapes or dtypes (naming file and key).
    """
    path = Path(path)
    headers = _npz_headers(path)
    for key, (shape, dtype) in headers.items():
        if key == "meta":
            if dtype.kind != "U" or shape != ():
                raise ValueError(f"{path}: key 'meta' must be a 0-d unicode array, got {dtype} {shape}")
            continue
        _check_key(str(path), key, shape, dtype)
    shapes = {k: s for k, (s, _) in headers.items() if k != "meta"}
    n = _check_consistency(str(path), shapes)
    meta = {}
    if "meta" in headers:
        with np.load(path, allow_pickle=False) as z:
            try:
                meta = json.loads(str(z["meta"]))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: key 'meta' is not valid JSON: {e}") from None
    return {"n": n, "keys": {k: v for k, v in headers.items() if k != "meta"}, "meta": meta}


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
        if self.arrays is not None:
            a = self.arrays[key]
        else:
            with np.load(self.path, allow_pickle=False) as z:
                a = z[key]
        return a if self.rows is None else a[self.rows]


class AttributionSet:
    """A lazy, read-only view of an attribution store (one file, a shard directory, or legacy files).

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
        return f"AttributionSet(n={len(self)}, shards={len(self._shards)}, keys={self.keys()}, source={self.source!r})"

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
            shape, dtype = self._shards[0].keys[key] if self._shards else ((0,), np.float32)
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
                lab = np.atleast_1d(np.asarray(labels))
                keep &= np.isin(s.load("labels"), lab)
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


def _legacy_sample(a: Any, key: str, where: str) -> np.ndarray:
    """One sample of a reference file as a float32 (H, W) map or (3, H, W) / (H, W) RGB attribution."""
    x = np.asarray(a, dtype=np.float32)
    while x.ndim > 2 and 1 in x.shape:
        x = np.squeeze(x, axis=x.shape.index(1))
    if x.ndim == 2:
        return x
    if x.ndim == 3 and key == "rgb_shaps":
        if x.shape[0] == 3:
            return x
        if x.shape[-1] == 3:
            return np.moveaxis(x, -1, 0)
    raise ValueError(f"{where}: key {key!r}: cannot read a sample of shape {np.shape(a)} as a map")


def _read_legacy(path: Path, label: int, family: str, allow_pickle: bool) -> _Shard:
    """Read a reference-notebook file and convert it to plain arrays (``allow_pickle`` only after opt-in)."""
    out: dict[str, np.ndarray] = {}
    where = str(path)
    with np.load(path, allow_pickle=allow_pickle) as z:
        for key in z.files:
            if key not in _LEGACY_KEYS:
                continue
            a = z[key]
            if a.dtype == object and a.ndim >= 2:
                try:  # np.array(list_of_equal_arrays, dtype=object): an object array of scalars
                    a = a.astype(np.float32)
                except (TypeError, ValueError):
                    pass
            if a.dtype == object:
                items = list(a.reshape(-1)) if a.ndim else [a.item()]
                if len(items) == 1 and isinstance(items[0], (list, tuple)):
                    items = list(items[0])
                arr = (np.stack([_legacy_sample(v, key, where) for v in items]) if items
                       else np.zeros((0, 1, 1), np.float32))
            else:
                arr = np.asarray(a, dtype=np.float32)
                ok = arr.ndim == 3 or (key == "rgb_shaps" and arr.ndim == 4 and arr.shape[1] == 3)
                if not ok:
                    arr = np.stack([_legacy_sample(v, key, where) for v in arr])
            out[key] = arr.astype(np.float32)
    if not out:
        raise ValueError(f"{path}: none of the reference keys {_LEGACY_KEYS} found")
    ns = {k: len(v) for k, v in out.items()}
    n = min(ns.values())
    if len(set(ns.values())) > 1:
        raise ValueError(f"{path}: reference keys disagree on the number of samples: {ns}")
    out["labels"] = np.full(n, label, np.int8)
    out["paths"] = np.array([f"{path.name}:{i}" for i in range(n)]) if n else np.zeros(0, "<U1")
    out["families"] = np.array([family] * n) if n else np.zeros(0, "<U1")
    validate_arrays(out, where=str(path), check_grids=False)
    keys = {k: (v.shape, v.dtype) for k, v in out.items()}
    meta = {"legacy": True, "legacy_files": [str(path)], "schema_version": 0}
    return _Shard(n=n, keys=keys, arrays=out, meta=meta)


def _has_object_arrays(path: Path) -> bool:
    return any(dt.hasobject for _, dt in _npz_headers(path).values())


def _family_from_name(path: Path, label: int) -> str:
    if label == 0:
        return "real"
    m = re.match(r"^shap_data_fake_(.+)\.npz$", path.name)
    return m.group(1) if m else "fake"


def _expand(p: Path) -> list[_Shard]:
    if p.is_dir() and not (p / INDEX_NAME).exists() and any(p.glob("shard-*.npz")):
        import warnings

        warnings.warn(f"{p}: no index (the export was interrupted before writing it, or is running); the "
                      "export is not complete: reading the shard files present", stacklevel=3)
        return [_shard_from_file(f) for f in sorted(p.glob("shard-*.npz"))]
    if p.is_dir() or p.name == INDEX_NAME:
        doc = read_index(p)
        d = p if p.is_dir() else p.parent
        if not doc.get("complete", False):
            import warnings

            warnings.warn(f"{d}: the export is not complete (index says complete=false); "
                          "reading the shards written so far", stacklevel=3)
        shards = []
        for entry in doc["shards"]:
            sp = d / entry["file"]
            if not sp.exists():
                raise ValueError(f"{d / INDEX_NAME}: lists shard {entry['file']!r}, which does not exist")
            sh = _shard_from_file(sp)
            if sh.n != int(entry["n"]):
                raise ValueError(f"{sp}: holds {sh.n} samples, the index says {entry['n']}")
            shards.append(sh)
        return shards
    return [_shard_from_file(p)]


def load_attributions(path_or_paths: Any, *, allow_legacy_pickle: bool = False) -> AttributionSet:
    """Open an attribution store lazily.

    Parameters
    ----------
    path_or_paths : path-like, or sequence of path-like
        * a ``.npz`` file written by :func:`write_shard` / ``export_attributions``;
        * a shard directory (or its ``index.json``);
        * a list of such files / directories (concatenated in order);
        * the reference notebooks' pair ``(real_file, fake_file)`` (``shap_data_real.npz``,
          ``shap_data_fake_<Method>.npz``): labels come from the position (0 real, 1 fake) and
          ``families`` from the file name.
    allow_legacy_pickle : bool, default False
        Reference files store object arrays, which ``numpy`` can only read by unpickling, and unpickling
        executes code chosen by whoever wrote the file. They are refused unless this is True; then they
        are read and converted to plain float32 arrays (``rgb_shaps`` stays (N, H, W), the reference's
        channel 0). Only pass True for files you trust.

    Returns
    -------
    AttributionSet

    Raises
    ------
    ValueError
        Object arrays without the opt-in, unknown keys, wrong shapes or dtypes, a missing index or shard;
        the message names the file and the key.

    Examples
    --------
    >>> s = load_attributions("exports/ffpp_deepfakes")                      # doctest: +SKIP
    >>> s = load_attributions(("shap_data_real.npz", "shap_data_fake_Deepfakes.npz"),
    ...                       allow_legacy_pickle=True)                       # doctest: +SKIP
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [Path(path_or_paths)]
        pair = False
    else:
        paths = [Path(p) for p in path_or_paths]
        pair = len(paths) == 2
    if not paths:
        raise ValueError("load_attributions: no paths given")
    shards: list[_Shard] = []
    for pos, p in enumerate(paths):
        if not p.exists():
            raise ValueError(f"{p}: no such file or directory")
        if p.is_file() and p.suffix == ".npz":
            headers = _npz_headers(p)
            is_ours = "meta" in headers and "labels" in headers
            if _has_object_arrays(p):
                if not allow_legacy_pickle:
                    bad = [k for k, (_, dt) in headers.items() if dt.hasobject]
                    raise ValueError(
                        f"{p}: keys {bad} are object arrays (the reference notebooks' format). Reading them "
                        "needs pickle, and unpickling runs code from the file. Pass allow_legacy_pickle=True "
                        "only if you trust the file; it is then converted to plain arrays."
                    )
                if not pair:
                    raise ValueError(f"{p}: a legacy reference file must be given as the pair (real_file, fake_file) "
                                     "so that labels are known")
                shards.append(_read_legacy(p, label=pos, family=_family_from_name(p, pos),
                                           allow_pickle=allow_legacy_pickle))
                continue
            if not is_ours and pair and "labels" not in headers:
                # a reference-style pair saved with plain arrays: labels from the position
                shards.append(_read_legacy(p, label=pos, family=_family_from_name(p, pos), allow_pickle=False))
                continue
        shards.extend(_expand(p))
    meta = next((s.meta for s in shards if s.meta and not s.meta.get("legacy")), None)
    if meta is None:
        meta = {"legacy": True, "legacy_files": [str(p) for p in paths], "schema_version": 0}
    return AttributionSet(shards, meta=meta, source=", ".join(str(p) for p in paths))
