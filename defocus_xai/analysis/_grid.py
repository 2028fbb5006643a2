"""Bilinear resampling to a target grid (private; shared with the plot package)."""

from __future__ import annotations

import numpy as np

__all__: list[str] = []


def to_grid(a: np.ndarray, shape: tuple) -> np.ndarray:
    """Bilinear resample of an (H, W) or (H, W, C) array to the (h, w) grid ``shape``."""
    if a.shape[:2] == tuple(shape):
        return a
    from scipy.ndimage import zoom

    f = (shape[0] / a.shape[0], shape[1] / a.shape[1]) + ((1,) if a.ndim == 3 else ())
    out = zoom(a, f, order=1)
    return out[: shape[0], : shape[1]]
