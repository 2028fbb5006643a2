"""Vector textures of DefocusSynth 2.0: sharp-edged patterns whose own blur is known exactly.

Internal to :mod:`defocus_xai.data.synth`. Every edge is drawn from a signed distance with an erf profile of
``SIGMA_AA`` px (the canvas' ``cover``), so the texture's intrinsic blur is that antialiasing and nothing
else; smooth shading carries no edges. Textures: dead leaves (overlapping discs with power-law radii, a
classic model of natural-image occlusion statistics), tinted two-tone dead leaves, hard-edged stripes and
checkerboards (docs/synth.md, "Version 2.0: textures").
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .textures import _random_color, _two_tone

#: Version 1.0 texture names -> the version 2.0 texture drawn in their place (the scene draws are shared).
V2_KIND = {"photo": "leaves", "gray_photo": "leaves_tinted", "noise": "fine_leaves", "stripes": "stripes",
           "checker": "checker", "blobs": "spots"}

_MAX_DISCS = 60


def _leaves(rng, X, Y, size, aa, *, r_px=(2.5, 6.0), r_max=(0.08, 0.3), n_max=_MAX_DISCS, tinted=False):
    """Dead leaves: discs with radii ~ r^-3 between ``r_min`` (px) and ``r_max`` (image units), on a fill."""
    h, w = X.shape
    x0, y0 = float(X[0, 0]), float(Y[0, 0])
    px = 1.0 / size
    rmin = rng.uniform(*r_px) * px
    rmax = max(rng.uniform(*r_max), 2 * rmin)
    area = (w * px + 2 * rmax) * (h * px + 2 * rmax)
    # inverse CDF of p(r) ~ r^-3 on [rmin, rmax]; mean disc area pi * E[r^2]
    e_r2 = 2 * rmin**2 * rmax**2 * np.log(rmax / rmin) / (rmax**2 - rmin**2)
    n = int(np.clip(rng.uniform(1.0, 2.5) * area / (np.pi * e_r2), 4, n_max))
    u = rng.random(n)
    radii = 1.0 / np.sqrt(1 / rmin**2 - u * (1 / rmin**2 - 1 / rmax**2))
    cx = x0 - rmax + rng.random(n) * (w * px + 2 * rmax)
    cy = y0 - rmax + rng.random(n) * (h * px + 2 * rmax)
    if tinted:
        lo, hi = _random_color(rng, val=(0.05, 0.4)), _random_color(rng, val=(0.6, 1.0))
        levels = rng.random(n + 1).astype(np.float32)
        cols = lo[None] * (1 - levels[:, None]) + hi[None] * levels[:, None]
    else:
        palette = np.stack([_random_color(rng) for _ in range(4)])
        pick = rng.integers(4, size=n + 1)
        cols = np.clip(palette[pick] * rng.uniform(0.85, 1.15, (n + 1, 1)), 0, 1).astype(np.float32)
    out = np.empty((3, h, w), np.float32)
    out[:] = cols[0][:, None, None]
    reach = 3 * aa * px
    for k in np.argsort(-radii, kind="stable"):  # large discs first: small ones stay visible
        r = radii[k]
        i0 = max(0, int((cy[k] - r - reach - y0) * size))
        i1 = min(h, int((cy[k] + r + reach - y0) * size) + 2)
        j0 = max(0, int((cx[k] - r - reach - x0) * size))
        j1 = min(w, int((cx[k] + r + reach - x0) * size) + 2)
        if i0 >= i1 or j0 >= j1:
            continue
        dy = Y[i0:i1, :1] - cy[k]
        dx = X[:1, j0:j1] - cx[k]
        a = ndtr((r - np.sqrt(dx * dx + dy * dy)) * (size / aa)).astype(np.float32)
        view = out[:, i0:i1, j0:j1]
        view += a[None] * (cols[k + 1][:, None, None] - view)
    return out


def _square_wave(rng, u, freq, size, aa):
    """Hard-edged square wave of ``u`` (image units), in [-1, 1], erf edges of ``aa`` px."""
    phase = 2 * np.pi * freq * u + rng.uniform(0, 2 * np.pi)
    return 2 * ndtr(np.sin(phase) / (2 * np.pi * freq) * (size / aa)) - 1


def _vector_texture(rng: np.random.Generator, kind: str, X: np.ndarray, Y: np.ndarray, *, size: int,
                    aa: float) -> np.ndarray:
    """A (3, h, w) float32 texture in [0, 1] over the canvas coordinates X, Y (image units).

    ``kind`` is a version 1.0 name (mapped by :data:`V2_KIND`) or a version 2.0 name.
    """
    kind = V2_KIND.get(kind, kind)
    if kind == "leaves":
        return _leaves(rng, X, Y, size, aa)
    if kind == "leaves_tinted":
        return _leaves(rng, X, Y, size, aa, tinted=True)
    if kind == "fine_leaves":
        return _leaves(rng, X, Y, size, aa, r_px=(1.5, 3.0), r_max=(0.03, 0.08))
    if kind == "spots":
        return _leaves(rng, X, Y, size, aa, r_px=(6.0, 12.0), r_max=(0.1, 0.2), n_max=12)
    c1, c2 = _random_color(rng), _random_color(rng)
    theta = rng.uniform(0, np.pi)
    u = X * np.cos(theta) + Y * np.sin(theta)
    if kind == "stripes":
        t = 0.5 + 0.5 * _square_wave(rng, u, rng.uniform(3, 12), size, aa)
    elif kind == "checker":
        v = -X * np.sin(theta) + Y * np.cos(theta)
        freq = rng.uniform(3, 9)
        t = 0.5 + 0.5 * _square_wave(rng, u, freq, size, aa) * _square_wave(rng, v, freq, size, aa)
    else:
        raise ValueError(f"unknown texture kind {kind!r}")
    return _two_tone(t.astype(np.float32), c1, c2).astype(np.float32)
