"""Input conversion shared by the plot functions (numpy or torch in, numpy out)."""

from __future__ import annotations

import warnings

import numpy as np

from ..analysis._grid import to_grid
from .style import to_numpy

__all__ = ["attr", "given_or_field", "as_map", "as_image", "gray", "to_grid"]


def attr(obj, *names, default=None):
    """First attribute (or mapping key) of ``obj`` among ``names`` that exists."""
    for n in names:
        if obj is None:
            break
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def given_or_field(value, result, field: str, *, name: str | None = None) -> np.ndarray | None:
    """``value``, else the ``field`` of ``result`` (:func:`attr`), as a flat float array; ``None`` if neither."""
    v = value if value is not None else attr(result, field)
    return None if v is None else np.asarray(to_numpy(v, name=name or field)).ravel()


def as_map(x, *, name: str = "map", index: int = 0) -> np.ndarray:
    """One 2-D map from (H, W), (1, H, W), (B, 1, H, W) or (B, H, W) (``index`` picks the sample)."""
    a = to_numpy(x, name=name)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"{name}: expected (B, 1, H, W), got shape {a.shape}")
        a = a[index, 0]
    elif a.ndim == 3:
        a = a[index] if a.shape[0] > 1 else a[0]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D map (H, W), got shape {a.shape}")
    return a


def as_image(x, *, name: str = "image", index: int = 0) -> np.ndarray:
    """An image for display, float in [0, 1], (H, W, 3) or (H, W).

    Accepted layouts: (H, W), (H, W, 3), (3, H, W), (1, H, W), (B, 3, H, W), (B, 1, H, W),
    (B, H, W, 3) (``index`` picks the sample). Value conventions, checked in this order:
    ``uint8`` -> divided by 255; float in [0, 1] -> as is; float in [-1, 1] -> ``(x + 1) / 2``
    (the reference training convention); float in [0, 255] -> divided by 255; anything else ->
    min-max rescaled for display, with a warning.
    """
    raw = to_numpy(x, name=name, dtype=None)
    is_uint8 = raw.dtype == np.uint8
    a = raw.astype(np.float64)
    if a.ndim == 4:
        a = a[index]
    if a.ndim == 3:
        if a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
            a = np.moveaxis(a, 0, -1)
        elif a.shape[0] in (1, 3) and a.shape[-1] in (1, 3):
            # ambiguous tiny image; (C, H, W) is the torch convention used across the library
            a = np.moveaxis(a, 0, -1)
        if a.shape[-1] == 1:
            a = a[..., 0]
        elif a.shape[-1] != 3:
            raise ValueError(f"{name}: expected 1 or 3 channels, got shape {to_numpy(x, dtype=None).shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"{name}: expected (H, W), (H, W, 3) or (3, H, W), got shape {raw.shape}")
    if is_uint8:
        return a / 255.0
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo >= 0.0 and hi <= 1.0:
        return a
    if lo >= -1.0 and hi <= 1.0:
        return (a + 1.0) / 2.0
    if lo >= 0.0 and hi <= 255.0:
        return a / 255.0
    warnings.warn(
        f"{name}: float values in [{lo:.3g}, {hi:.3g}] match no known convention; min-max rescaled "
        "for display",
        UserWarning,
        stacklevel=3,
    )
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def gray(image: np.ndarray) -> np.ndarray:
    """Luma-free grey (mean of channels) of a display image in [0, 1]."""
    return image.mean(axis=-1) if image.ndim == 3 else image
