"""The store's schema: key names, dtypes and shapes, and the checks every file passes.

The table of keys and the meaning of ``meta`` are in ``docs/npz_format.md``.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Mapping

import numpy as np

__all__ = ["SCHEMA_VERSION", "FORMAT_NAME", "validate_arrays", "attribution_key"]

SCHEMA_VERSION = 1
"""Version of the store layout written into every ``meta`` and index."""

FORMAT_NAME = "defocus_xai.attributions"
"""The ``format`` field of an index."""

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


def now() -> str:
    """The current UTC time as an ISO 8601 string (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def attribution_key(space: str, method: str) -> str:
    """Store key of an attribution.

    ``defocus_shaps`` / ``rgb_shaps`` for ``shap_gradient`` (the reference's keys), else
    ``attr_<space>_<method>``.

    Examples
    --------
    >>> attribution_key("defocus", "shap_gradient"), attribution_key("rgb", "saliency")
    ('defocus_shaps', 'attr_rgb_saliency')
    """
    if method == "shap_gradient":
        return f"{space}_shaps"
    return f"attr_{space}_{method}"


def key_spec(key: str) -> tuple[str, tuple[int, ...], Any] | None:
    """``(dtype kinds, ndims, canonical dtype)`` of a known key, else None."""
    if key in _SPEC:
        return _SPEC[key]
    m = _ATTR_RE.match(key)
    if m:
        return ("f", (3,) if m.group(1) == "defocus" else (4,), np.float32)
    return None


def check_key(where: str, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise ``ValueError`` when ``key`` with ``shape`` / ``dtype`` breaks the contract."""
    if dtype.kind == "O" or dtype.hasobject:
        raise ValueError(
            f"{where}: key {key!r} is an object array; the store holds plain numeric and unicode arrays "
            "only (object arrays need pickle, and unpickling runs code from the file)"
        )
    if key.startswith("x_"):
        if dtype.kind not in "biufcUS":
            raise ValueError(f"{where}: key {key!r} has unsupported dtype {dtype}")
        if len(shape) < 1:
            raise ValueError(f"{where}: key {key!r} has shape {shape}, expected (N, ...)")
        return
    spec = key_spec(key)
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


def grids(shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict, dict]:
    """``(map grids, image grids)``: the (H, W) of every map-grid key and of every RGB key."""
    maps = {k: tuple(s[1:]) for k, s in shapes.items() if k in _MAP_GRID_KEYS or k.startswith("attr_defocus_")}
    rgb = {k: tuple(s[-2:]) for k, s in shapes.items() if k == "rgb_shaps" or k.startswith("attr_rgb_")}
    return maps, rgb


def check_consistency(where: str, shapes: Mapping[str, tuple[int, ...]], check_grids: bool = True) -> int:
    """Check that every per-sample key has the same N and map keys one grid; return N."""
    per_sample = {k: s for k, s in shapes.items() if k != "meta"}
    if not per_sample:
        raise ValueError(f"{where}: no data keys")
    ns = {k: s[0] for k, s in per_sample.items()}
    n = next(iter(ns.values()))
    if any(v != n for v in ns.values()):
        raise ValueError(f"{where}: keys disagree on the number of samples: {ns}")
    if not check_grids:
        return n
    map_grids, rgb_grids = grids(per_sample)
    if len(set(map_grids.values())) > 1:
        raise ValueError(f"{where}: map-grid keys disagree on (H, W): {map_grids}")
    if len(set(rgb_grids.values())) > 1:
        raise ValueError(f"{where}: image-grid keys disagree on (H, W): {rgb_grids}")
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
        check_key(where, key, a.shape, a.dtype)
        shapes[key] = a.shape
    return check_consistency(where, shapes, check_grids=check_grids)


def canonical(key: str, a: np.ndarray) -> np.ndarray:
    """Cast to the canonical dtype of ``key`` (float32 maps, int8 labels, ...)."""
    a = np.asarray(a)
    spec = key_spec(key)
    if spec is not None and spec[2] is not None and a.dtype != spec[2] and a.dtype.kind in spec[0]:
        if key == "labels" and a.size and (a.min() < -128 or a.max() > 127):
            raise ValueError(f"key 'labels' has values outside int8: [{a.min()}, {a.max()}]")
        a = a.astype(spec[2])
    if a.dtype.kind == "U" and a.ndim == 1 and a.size == 0:
        a = a.astype("<U1")
    return np.ascontiguousarray(a)
