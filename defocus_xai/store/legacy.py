"""The reference notebooks' files (``shap_data_real.npz``, ``shap_data_fake_<Method>.npz``).

They store object arrays of per-sample arrays, which numpy can only read by unpickling, and unpickling
runs code chosen by whoever wrote the file: they are read only after an explicit opt-in and converted to
plain float32 arrays. FaceForensics++ video ids are inferred from the sample paths when a file has them
(``docs/npz_format.md``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .schema import validate_arrays
from .shards import npz_headers

__all__ = ["LEGACY_KEYS", "LEGACY_PATH_KEYS", "read_legacy", "object_keys", "family_from_name",
           "ffpp_source_id", "ffpp_source_ids"]

LEGACY_KEYS = ("dmaps", "defocus_shaps", "rgb_shaps")
"""The keys of the reference's files."""

LEGACY_PATH_KEYS = ("paths", "image_paths", "img_paths")
"""Keys under which a reference-layout file may carry the image path of each sample (the first present wins)."""

_FAKE_VIDEO = re.compile(r"^([^_]+)_([^_]+)$")


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


def _legacy_array(a: np.ndarray, key: str, where: str) -> np.ndarray:
    """A reference file's array (object array of samples, or plain) as a float32 stack."""
    if a.dtype == object and a.ndim >= 2:
        try:  # np.array(list_of_equal_arrays, dtype=object): an object array of scalars
            a = a.astype(np.float32)
        except (TypeError, ValueError):
            pass
    if a.dtype == object:
        items = list(a.reshape(-1)) if a.ndim else [a.item()]
        if len(items) == 1 and isinstance(items[0], (list, tuple)):
            items = list(items[0])
        if not items:
            return np.zeros((0, 1, 1), np.float32)
        return np.stack([_legacy_sample(v, key, where) for v in items])
    arr = np.asarray(a, dtype=np.float32)
    ok = arr.ndim == 3 or (key == "rgb_shaps" and arr.ndim == 4 and arr.shape[1] == 3)
    return arr if ok else np.stack([_legacy_sample(v, key, where) for v in arr])


def read_legacy(path: Path, label: int, family: str, allow_pickle: bool) -> dict[str, np.ndarray]:
    """Read a reference-notebook file as plain arrays (``allow_pickle`` only after the caller's opt-in).

    ``labels`` come from ``label``, ``families`` from ``family``; ``paths`` are the file's own sample paths
    (one of :data:`LEGACY_PATH_KEYS`) when it has them, else ``<file name>:<i>``.

    Examples
    --------
    >>> arrays = read_legacy(Path("shap_data_real.npz"), 0, "real", allow_pickle=True)   # doctest: +SKIP
    """
    out: dict[str, np.ndarray] = {}
    where = str(path)
    with np.load(path, allow_pickle=allow_pickle) as z:
        for key in z.files:
            if key in LEGACY_KEYS:
                out[key] = _legacy_array(z[key], key, where).astype(np.float32)
        path_key = next((k for k in LEGACY_PATH_KEYS if k in z.files), None)
        paths = _legacy_paths(z[path_key]) if path_key else None
    if not out:
        raise ValueError(f"{path}: none of the reference keys {LEGACY_KEYS} found")
    ns = {k: len(v) for k, v in out.items()}
    if paths is not None:
        ns[path_key] = len(paths)
    if len(set(ns.values())) > 1:
        raise ValueError(f"{path}: reference keys disagree on the number of samples: {ns}")
    n = min(ns.values())
    out["labels"] = np.full(n, label, np.int8)
    if paths is None:
        paths = np.array([f"{path.name}:{i}" for i in range(n)]) if n else np.zeros(0, "<U1")
    out["paths"] = paths
    out["families"] = np.array([family] * n) if n else np.zeros(0, "<U1")
    validate_arrays(out, where=str(path), check_grids=False)
    return out


def _legacy_paths(a: np.ndarray) -> np.ndarray:
    """A reference file's sample paths (object or string array, bytes decoded) as a str array."""
    items = [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(a).reshape(-1)]
    return np.array(items) if items else np.zeros(0, "<U1")


def ffpp_source_id(path: str) -> str | None:
    """The FaceForensics++ video group of a frame path, or None when the path is not in FF++'s layout.

    A real frame ``.../original_sequences/<source>/<comp>/<frames dir>/<video>/<frame>.png`` belongs to
    ``<video>``; a fake ``.../manipulated_sequences/<Method>/<comp>/<frames dir>/<target>_<donor>/<frame>.png``
    to ``<target>``, the real video it was made from, so that a fake and its real share a group.

    Examples
    --------
    >>> ffpp_source_id("ff/manipulated_sequences/Deepfakes/raw/v1faces/800_840/0000.png")
    '800'
    >>> ffpp_source_id("ff/original_sequences/youtube/raw/v1faces/800/0000.png")
    '800'
    >>> ffpp_source_id("shap_data_real.npz:0") is None
    True
    """
    parts = str(path).replace("\\", "/").split("/")
    if len(parts) < 3 or not parts[-2]:
        return None
    video = parts[-2]
    if "original_sequences" in parts[:-2]:
        return video
    if "manipulated_sequences" in parts[:-2]:
        m = _FAKE_VIDEO.match(video)
        return m.group(1) if m else None
    return None


def ffpp_source_ids(paths) -> np.ndarray | None:
    """:func:`ffpp_source_id` of every path as a str array, or None when any path does not parse.

    Examples
    --------
    >>> ffpp_source_ids(["a/original_sequences/youtube/c23/frames/007/0.png",
    ...                  "a/manipulated_sequences/FaceSwap/c23/frames/007_132/0.png"]).tolist()
    ['007', '007']
    """
    ids = [ffpp_source_id(p) for p in paths]
    if not ids or any(i is None for i in ids):
        return None
    return np.array(ids)


def object_keys(path: Path) -> list[str]:
    """The keys of an ``.npz`` file that hold object arrays (which only pickle can read)."""
    return [k for k, (_, dt) in npz_headers(path).items() if dt.hasobject]


def family_from_name(path: Path, label: int) -> str:
    """``real`` for the real file; the method name of ``shap_data_fake_<Method>.npz`` for a fake one.

    Examples
    --------
    >>> family_from_name(Path("shap_data_fake_Deepfakes.npz"), 1)
    'Deepfakes'
    """
    if label == 0:
        return "real"
    m = re.match(r"^shap_data_fake_(.+)\.npz$", path.name)
    return m.group(1) if m else "fake"
