"""Occlusion-aware compositing of blurred layers, and the per-pixel ground truth (owner, depth, sigma).

Internal to :mod:`defocus_xai.data.synth`. Each layer's premultiplied colour and coverage are blurred with
its sigma and composited back to front with "over" (docs/synth.md, "Rendering").
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from .layers import _Layer, _owner, _Scene

_TRUNCATE = 3.5  # Gaussian kernels are cut at this many sigmas
_BG_STEP = 0.5  # sigma spacing (px) of the blur stack of a slanted background


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (..., H, W) over the last two axes; sigma 0 returns the input."""
    if sigma <= 1e-6:
        return img
    s = (0,) * (img.ndim - 2) + (sigma, sigma)
    return ndimage.gaussian_filter(img, s, mode="nearest", truncate=_TRUNCATE)


def _blur_varying(img: np.ndarray, smap: np.ndarray) -> np.ndarray:
    """Spatially varying Gaussian blur of (3,H,W): linear interpolation in a blur stack."""
    lo, hi = float(smap.min()), float(smap.max())
    if hi - lo < 1e-3:
        return _blur(img, lo)
    start = math.floor(lo / _BG_STEP) * _BG_STEP
    n_lev = max(2, int(math.ceil((hi - start) / _BG_STEP)) + 1)
    levels = start + _BG_STEP * np.arange(n_lev)
    pos = np.clip((smap - start) / _BG_STEP, 0, n_lev - 1 - 1e-6)
    i0 = np.floor(pos).astype(np.int64)
    t = (pos - i0).astype(np.float32)
    out = np.zeros_like(img)
    cur, cur_s = img, 0.0
    for k, s in enumerate(levels):
        # blur stack built incrementally: G(s_k) = G(sqrt(s_k^2 - s_{k-1}^2)) * G(s_{k-1})
        cur = _blur(cur, math.sqrt(max(s * s - cur_s * cur_s, 0.0)))
        cur_s = float(s)
        wk = np.where(i0 == k, 1 - t, 0) + np.where(i0 + 1 == k, t, 0)
        if wk.any():
            out += wk[None].astype(np.float32) * cur
    return out


def _layer_sigma(scene: _Scene, layer: _Layer):
    s = scene.camera.sigma_px(layer.depth)
    return s.astype(np.float32) if isinstance(s, np.ndarray) else float(s)


def _render(scene: _Scene, sigmas: Sequence) -> np.ndarray:
    """Occlusion-aware "over" compositing back to front of premultiplied, blurred layers.

    Returns the (3, size, size) clean image.
    """
    out = None
    n_canvas = scene.size + 2 * scene.pad
    for layer, s in zip(scene.layers, sigmas):
        if layer.alpha is None:
            out = _blur_varying(layer.color, s) if isinstance(s, np.ndarray) else _blur(layer.color, s)
            out = np.array(out, dtype=np.float32, copy=True)
            continue
        by0, by1, bx0, bx1 = layer.box
        m = int(math.ceil(_TRUNCATE * s)) + 1 if s > 1e-6 else 0
        y0, y1 = max(0, by0 - m), min(n_canvas, by1 + m)
        x0, x1 = max(0, bx0 - m), min(n_canvas, bx1 + m)
        a = np.zeros((y1 - y0, x1 - x0), np.float32)
        a[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] = layer.alpha
        pre = np.zeros((3, y1 - y0, x1 - x0), np.float32)
        pre[:, by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] = layer.color * layer.alpha[None]
        if s > 1e-6:
            pre = ndimage.gaussian_filter(pre, (0, s, s), mode="constant", truncate=_TRUNCATE)
            a = ndimage.gaussian_filter(a, s, mode="constant", truncate=_TRUNCATE)
        region = out[:, y0:y1, x0:x1]
        out[:, y0:y1, x0:x1] = pre + (1 - a)[None] * region
    p, n = scene.pad, scene.size
    return np.clip(out[:, p:p + n, p:p + n], 0, 1)


def _truth(scene: _Scene, sigmas: Sequence):
    """Per-pixel owner layer, depth and sigma (front-most layer with sharp coverage >= 1/2)."""
    p, n = scene.pad, scene.size
    owner = _owner(scene)
    depth = np.zeros((n, n), np.float32)
    sigma = np.zeros((n, n), np.float32)
    for i, (layer, s) in enumerate(zip(scene.layers, sigmas)):
        sel = owner == i
        if not sel.any():
            continue
        d = layer.depth
        depth[sel] = d[p:p + n, p:p + n][sel] if isinstance(d, np.ndarray) else d
        sigma[sel] = s[p:p + n, p:p + n][sel] if isinstance(s, np.ndarray) else s
    return owner, depth, sigma
