"""Defocus of DefocusSynth 2.0: layers blurred with the aperture's point-spread function, composited "over".

Internal to :mod:`defocus_xai.data.synth`. Each layer's premultiplied colour and coverage are convolved with
the lens kernel of its sigma and composited back to front, ``out = K*(a C) + (1 - K*a) out``: a defocused
foreground's blurred coverage partially occludes what lies behind it, as a real lens does. The stored sigma
is the total blur, ``sqrt(lens^2 + SIGMA_AA^2)`` (docs/synth.md, "Version 2.0: rendering").
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import fft, ndimage

from .composite import _truth
from .layers import _Scene
from .psf import SIGMA_AA, Aperture

_BG_STEP = 0.5  # sigma spacing (px) of the blur stack of a slanted background


def _convolve(arr: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve (c, h, w) with a (k, k) kernel over the last two axes, zero outside ('same' size)."""
    k = kernel.shape[0]
    if k == 1:
        return arr.copy()
    if k == 3:
        return ndimage.convolve(arr, kernel[None], mode="constant")
    return _fft_convolve_many(arr, [kernel])[0]


def _fft_convolve_many(arr: np.ndarray, kernels: Sequence[np.ndarray]) -> list:
    """``[convolve(arr, k) for k in kernels]`` with one forward transform of ``arr``."""
    r = max(k.shape[0] for k in kernels) // 2
    h, w = arr.shape[-2:]
    shape = (fft.next_fast_len(h + 2 * r, real=True), fft.next_fast_len(w + 2 * r, real=True))
    spec = fft.rfft2(arr, shape, axes=(-2, -1), workers=1)
    out = []
    for ker in kernels:
        kr = ker.shape[0] // 2
        kspec = fft.rfft2(ker, shape, workers=1)
        full = fft.irfft2(spec * kspec, shape, axes=(-2, -1), workers=1)
        out.append(np.ascontiguousarray(full[..., kr:kr + h, kr:kr + w], dtype=np.float32))
    return out


def _blur_varying(img: np.ndarray, smap: np.ndarray, aperture: Aperture) -> np.ndarray:
    """Spatially varying blur of (3, H, W): a stack of kernels 0.5 px apart, interpolated in variance.

    Between levels ``s0 < s1`` the weight ``t = (s^2 - s0^2) / (s1^2 - s0^2)`` makes the mixed kernel's
    second moment exactly ``s^2``.
    """
    lo, hi = float(smap.min()), float(smap.max())
    if hi - lo < 1e-3:
        return _convolve(img, aperture.kernel(lo))
    start = math.floor(lo / _BG_STEP) * _BG_STEP
    n_lev = max(2, int(math.ceil((hi - start) / _BG_STEP)) + 1)
    levels = start + _BG_STEP * np.arange(n_lev)
    stack = _fft_convolve_many(img, [aperture.kernel(float(s)) for s in levels])
    pos = np.clip(np.searchsorted(levels, smap, side="right") - 1, 0, n_lev - 2)
    s0, s1 = levels[pos], levels[pos + 1]
    t = np.clip((smap.astype(np.float64) ** 2 - s0**2) / (s1**2 - s0**2), 0, 1).astype(np.float32)
    out = np.zeros_like(img)
    for k in range(n_lev):
        wk = np.where(pos == k, 1 - t, 0) + np.where(pos + 1 == k, t, 0)
        if wk.any():
            out += wk[None].astype(np.float32) * stack[k]
    return out


def _layer_blur(scene: _Scene, i: int, sigma, aperture: Aperture, cache: dict):
    """Blurred (premultiplied colour, coverage, box) of layer ``i``; memoized in ``cache`` per sigma."""
    key = (i, float(sigma) if not isinstance(sigma, np.ndarray) else id(sigma))
    if key in cache:
        return cache[key]
    layer = scene.layers[i]
    n_canvas = scene.size + 2 * scene.pad
    if layer.alpha is None:
        col = (_blur_varying(layer.color, sigma, aperture) if isinstance(sigma, np.ndarray)
               else _convolve(layer.color, aperture.kernel(sigma, flip=_near(scene, layer))))
        cache[key] = (col, None, (0, n_canvas, 0, n_canvas))
        return cache[key]
    kernel = aperture.kernel(float(sigma), flip=_near(scene, layer))
    m = kernel.shape[0] // 2
    by0, by1, bx0, bx1 = layer.box
    y0, y1 = max(0, by0 - m), min(n_canvas, by1 + m)
    x0, x1 = max(0, bx0 - m), min(n_canvas, bx1 + m)
    stack = np.zeros((4, y1 - y0, x1 - x0), np.float32)
    stack[:3, by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] = layer.color * layer.alpha[None]
    stack[3, by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] = layer.alpha
    stack = _convolve(stack, kernel)
    cache[key] = (stack[:3], np.clip(stack[3], 0, 1), (y0, y1, x0, x1))
    return cache[key]


def _near(scene: _Scene, layer) -> bool:
    """Whether a layer of constant depth lies in front of the focus plane (its kernel is flipped)."""
    return not isinstance(layer.depth, np.ndarray) and layer.depth < scene.camera.d_f


def _render_lens(scene: _Scene, sigmas: Sequence, aperture: Aperture, cache: dict | None = None) -> np.ndarray:
    """The (3, size, size) clean image: layers blurred with their lens sigma, composited back to front.

    ``cache`` (a dict) keeps blurred layers between calls on the same scene (the fake families re-render
    it with some layers' sigma changed).
    """
    cache = {} if cache is None else cache
    out = None
    for i, s in enumerate(sigmas):
        pre, a, (y0, y1, x0, x1) = _layer_blur(scene, i, s, aperture, cache)
        if a is None:
            out = np.array(pre, dtype=np.float32, copy=True)
            continue
        out[:, y0:y1, x0:x1] = pre + (1 - a)[None] * out[:, y0:y1, x0:x1]
    p, n = scene.pad, scene.size
    return np.clip(out[:, p:p + n, p:p + n], 0, 1)


def _total_sigma(lens_sigma: np.ndarray) -> np.ndarray:
    """Total blur of a pixel: its lens sigma and the antialiasing of the edges drawn, added in variance."""
    return np.sqrt(np.square(lens_sigma, dtype=np.float32) + np.float32(SIGMA_AA**2)).astype(np.float32)


def _truth_v2(scene: _Scene, lens_sigmas: Sequence):
    """Per-pixel owner layer, depth, and total sigma (``sqrt(lens^2 + SIGMA_AA^2)``) of the owner."""
    owner, depth, lens = _truth(scene, lens_sigmas)
    return owner, depth, _total_sigma(lens)
