"""Input validation shared by the analyses (private).

Every helper returns a *new* array (or a read-only view) and never writes into the caller's data.
"""

from __future__ import annotations

import numpy as np

__all__: list[str] = []


def as_float_array(x, name: str, *, allow_nan: bool = False) -> np.ndarray:
    """Return ``x`` as a floating numpy array; reject non-numeric data and NaN / inf."""
    arr = np.asarray(x)
    if arr.dtype == bool:
        arr = arr.astype(np.float64)
    if not (np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not allow_nan and arr.size and not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s) (shape {arr.shape})")
    return arr


def as_map_batch(x, name: str) -> np.ndarray:
    """Return maps as (N, H, W).

    Accepts (N, H, W) or (N, 1, H, W) (the estimator's output layout). A single (H, W) map is *not*
    accepted here: batch functions ask for a batch so that a (C, H, W) array is never mistaken for one.
    """
    arr = as_float_array(x, name)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W) or (N, 1, H, W), got {arr.shape}")
    return arr


def as_single_map(x, name: str) -> np.ndarray:
    """Return one map as (H, W); accepts (H, W) or (1, H, W)."""
    arr = as_float_array(x, name)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W) or (1, H, W), got {arr.shape}")
    return arr


def reduce_attribution(a, name: str, mode: str = "abs") -> np.ndarray:
    """Reduce one attribution, (H, W) or (C, H, W), to an (H, W) float64 relevance map.

    ``mode="abs"``: sum over channels of |a_c|. ``mode="positive"``: positive part of the channel sum
    (the pixel's net contribution towards the explained output). ``mode="raw"``: the signed channel sum.
    """
    arr = as_float_array(a, name).astype(np.float64, copy=False)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (H, W) or (C, H, W), got {arr.shape}")
    if mode == "abs":
        out = np.abs(arr)
        return out.sum(axis=0) if out.ndim == 3 else out
    summed = arr.sum(axis=0) if arr.ndim == 3 else arr.copy()
    if mode == "positive":
        return np.maximum(summed, 0.0)
    if mode == "raw":
        return summed
    raise ValueError(f"mode must be 'abs', 'positive' or 'raw', got {mode!r}")


def as_attribution_batch(x, name: str) -> np.ndarray:
    """Return attributions as (N, H, W) or (N, C, H, W) floats (no reduction)."""
    arr = as_float_array(x, name)
    if arr.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (N, H, W) or (N, C, H, W), got {arr.shape}")
    return arr


def as_labels(x, name: str, n: int) -> np.ndarray:
    """Return a 1-D array of per-sample labels of length ``n`` (any hashable values)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} samples")
    return arr


def readonly(a) -> np.ndarray:
    """A read-only float64 copy of ``a`` (for array fields of frozen result objects)."""
    out = np.array(a, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


def check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return c
