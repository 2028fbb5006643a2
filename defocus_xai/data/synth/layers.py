"""The building blocks of a DefocusSynth scene: layers, the padded canvas, antialiased shapes, pixel owners.

Internal to :mod:`defocus_xai.data.synth`. Shapes are approximate signed distances in image units (the
visible image spans [0, 1]); a layer's coverage is the antialiased inside of its shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from .camera import ThinLens


def _cover(sd: np.ndarray, size: int) -> np.ndarray:
    """Antialiased coverage of a signed distance: 1 inside, 0 outside, a one-pixel ramp between."""
    return np.clip(0.5 - sd * size, 0, 1).astype(np.float32)


def _ellipse_sd(X, Y, cx, cy, rx, ry, theta=0.0):
    c, s = math.cos(theta), math.sin(theta)
    xr = (X - cx) * c + (Y - cy) * s
    yr = -(X - cx) * s + (Y - cy) * c
    rho = np.sqrt((xr / rx) ** 2 + (yr / ry) ** 2)
    dist = np.sqrt(xr**2 + yr**2)
    return dist * (1 - 1 / np.maximum(rho, 1e-6))


def _rect_sd(X, Y, cx, cy, hw, hh, theta=0.0):
    c, s = math.cos(theta), math.sin(theta)
    xr = (X - cx) * c + (Y - cy) * s
    yr = -(X - cx) * s + (Y - cy) * c
    return np.maximum(np.abs(xr) - hw, np.abs(yr) - hh)


def _blob_sd(X, Y, cx, cy, r, amps, phases):
    phi = np.arctan2(Y - cy, X - cx)
    rad = np.ones_like(phi)
    for k, (a, ph) in enumerate(zip(amps, phases), start=2):
        rad += a * np.cos(k * phi + ph)
    return np.sqrt((X - cx) ** 2 + (Y - cy) ** 2) - r * rad


@dataclass
class _Layer:
    name: str
    group: int  # layers of one group share a depth (the subject's head and body)
    color: np.ndarray  # (3, bh, bw) colour inside ``box``
    alpha: np.ndarray | None  # (bh, bw) sharp coverage inside ``box``; None = opaque background
    depth: Any  # float, or (hc, wc) canvas array for a slanted background
    box: tuple  # (y0, y1, x0, x1) on the canvas


class _Canvas:
    """Pixel grid of the padded canvas; image units: the visible image spans [0, 1].

    ``aa`` chooses how sharp shapes are antialiased: ``None`` (version 1.0) a one-pixel linear ramp;
    a float (version 2.0) an erf edge, i.e. a Gaussian of that sigma (px) across every straight edge.
    ``texture(rng, kind, X, Y)`` draws the layer textures.
    """

    def __init__(self, size: int, pad: int, aa: float | None = None, texture=None):
        self.size, self.pad = size, pad
        self.n = size + 2 * pad
        self.coords = (np.arange(self.n, dtype=np.float32) - pad + 0.5) / size
        self.aa = aa
        self.texture = texture

    def cover(self, sd: np.ndarray) -> np.ndarray:
        """Antialiased coverage of a signed distance (image units; negative inside)."""
        if self.aa is None:
            return _cover(sd, self.size)
        return ndtr(-sd * (self.size / self.aa)).astype(np.float32)

    def ramp(self, t: np.ndarray) -> np.ndarray:
        """Coverage of the half-plane ``t > 0`` (image units), 1/2 at ``t = 0.5 / size``."""
        if self.aa is None:
            return np.clip(t * self.size, 0, 1)
        return self.cover(0.5 / self.size - t)

    def wave(self, phase: np.ndarray, freq: float, gain: float) -> np.ndarray:
        """Stripes from ``sin(phase)`` (``freq`` cycles per image unit): v1 a clipped ramp, v2 erf edges."""
        if self.aa is None:
            return np.clip(0.5 + gain * np.sin(phase), 0, 1)
        return self.cover(-np.sin(phase) / (2 * np.pi * freq))

    def window(self, x0, x1, y0, y1):
        """Pixel box (y0, y1, x0, x1) covering image-unit bounds, clipped; None if empty."""
        def idx(v):
            return int(math.floor(v * self.size + self.pad - 0.5))

        b = (max(0, idx(y0) - 1), min(self.n, idx(y1) + 2), max(0, idx(x0) - 1), min(self.n, idx(x1) + 2))
        if b[0] >= b[1] or b[2] >= b[3]:
            return None
        return b

    def grid(self, box):
        y0, y1, x0, x1 = box
        return np.meshgrid(self.coords[x0:x1], self.coords[y0:y1])


@dataclass
class _Scene:
    layers: list  # back to front
    camera: ThinLens | None  # None while the scene is being built
    pad: int
    size: int


def _owner(scene: _Scene) -> np.ndarray:
    """Index of the front-most layer with sharp coverage >= 1/2, per visible pixel."""
    p, n = scene.pad, scene.size
    nc = n + 2 * p
    owner = np.zeros((nc, nc), np.int16)
    for i, layer in enumerate(scene.layers):
        if layer.alpha is None:
            owner[:] = i
            continue
        y0, y1, x0, x1 = layer.box
        view = owner[y0:y1, x0:x1]
        view[layer.alpha >= 0.5] = i
    return owner[p:p + n, p:p + n]
