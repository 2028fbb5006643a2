"""DefocusSynth: a physically rendered benchmark with depth-of-field ground truth.

Each *real* sample is a layered scene (a background plane, a few objects at known depths and a
face-like subject) photographed by a thin-lens camera: every layer is blurred by the Gaussian
that matches its circle of confusion and the layers are composited back to front, occlusion
aware. Sensor noise, 8-bit quantization and optional JPEG compression follow. Each *fake* is
rendered from the same scene (same geometry, textures, camera, noise realization and JPEG
quality) and differs from its real partner only by one manipulation that breaks
depth-of-field physics:

``"no_dof"``
    All-in-focus rendering (sigma 0 everywhere), as a fully synthetic image without a lens.
``"splice"``
    The subject's head is re-rendered with a blur inconsistent with its depth and pasted back
    (face-swap analogue); ``mask`` marks the replaced pixels exactly.
``"depth_inconsistent"``
    The layers' blurs are permuted among the layers, so blur is no longer a function of
    ``|1/d - 1/d_f|`` (the histogram of layer blurs is unchanged).
``"generator_smoothing"``
    The image is rendered at a lower resolution (area average over a factor 2-3) and
    upsampled bilinearly, as generators do: every pixel gains a blur floor.

Camera model and the sigma convention
-------------------------------------
Thin lens with focal length ``f``, f-number ``N`` (aperture diameter ``A = f / N``) and focus
distance ``d_f``: a point at depth ``d`` images to a disc of diameter (circle of confusion)::

    c(d) = A f |d - d_f| / (d (d_f - f)) = A f d_f / (d_f - f) * |1/d - 1/d_f|

so ``c`` is proportional to (hence monotone in) the inverse-depth distance ``|1/d - 1/d_f|``.
The disc is replaced by the Gaussian with the same second moment: a uniform disc of diameter
``c`` has a per-axis standard deviation of ``c / 4``, hence ::

    sigma_px = SIGMA_PER_COC * c / pixel_pitch,    SIGMA_PER_COC = 1/4

with ``pixel_pitch`` the sensor width of one pixel of the rendered grid. The same
second-moment convention gives the blur of ``"generator_smoothing"``: an area average over a
factor ``s`` (variance ``s^2/12``) followed by bilinear upsampling (variance ``s^2/6``) is a
Gaussian of sigma ``s / 2`` px; the true sigma becomes ``sqrt(sigma_lens^2 + (s/2)^2)``.

Ground truth
------------
``depth`` is the depth of the front-most layer whose *sharp* (pre-blur) coverage of the pixel
is at least one half: a mixed boundary pixel belongs to the layer covering most of it, as a
depth sensor with a pinhole would see it. ``sigma`` is that layer's blur (for real samples
exactly ``camera.sigma_px(depth)``). Blurred light that spills from a defocused foreground
object over its neighbours does not change the owner of a pixel.

Randomness
----------
Everything is drawn from :class:`numpy.random.Generator` objects seeded through
:class:`numpy.random.SeedSequence`; no global random state is used or changed. In
:class:`DefocusSynth` sample ``i`` depends only on ``seed`` and ``i`` (and the constructor's
``size``, ``families``, ``fake_fraction`` and ``jpeg``), never on ``n`` or on the order of
access.
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

__all__ = [
    "FAMILIES",
    "REAL",
    "SIGMA_PER_COC",
    "SYNTH_VERSION",
    "ThinLens",
    "DefocusSynth",
    "render_scene",
    "collate",
]

#: Version of the generator: bump when a change alters the pixels a seed produces.
SYNTH_VERSION = "1.0"

#: Family name of real samples.
REAL = "real"

#: The fake families, each a named way of breaking depth-of-field physics.
FAMILIES = ("no_dof", "splice", "depth_inconsistent", "generator_smoothing")

#: Factor from circle-of-confusion diameter to Gaussian sigma (second-moment match of a disc).
SIGMA_PER_COC = 0.25

#: Sigma (px at 128x128) range of the most defocused layer of a real scene; scales with size.
SIGMA_MAX_RANGE = (1.5, 4.5)

#: Downsampling factor range of ``"generator_smoothing"`` (sigma = factor / 2 px).
GENERATOR_FACTOR_RANGE = (2.0, 3.0)

#: Read-noise standard deviation range and shot-noise gain range (variance = gain * intensity).
READ_NOISE_RANGE = (0.002, 0.015)
SHOT_GAIN_RANGE = (0.0, 3e-4)

_FOCAL_RANGE = (0.07, 0.2)  # focal length (m), log-uniform
_N_RANGE = (1.0, 22.0)  # f-number limits
_HEAD_FRAC_RANGE = (0.28, 0.45)  # subject head height as a fraction of the image height
_HEAD_HEIGHT_M = 0.23  # physical height of the subject's head (m), sets the pixel pitch
_TRUNCATE = 3.5  # Gaussian kernels are cut at this many sigmas
_BG_STEP = 0.5  # sigma spacing (px) of the blur stack of a slanted background


# --------------------------------------------------------------------------------------------
# camera
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ThinLens:
    """A thin-lens camera; lengths in metres.

    Parameters
    ----------
    f : float
        Focal length (m), e.g. ``0.085`` for an 85 mm lens.
    N : float
        f-number; the aperture diameter is ``A = f / N``.
    d_f : float
        Focus distance (m), greater than ``f``.
    pixel_pitch : float
        Sensor width (m) of one pixel of the rendered grid.

    Examples
    --------
    >>> cam = ThinLens(f=0.085, N=1.8, d_f=1.5, pixel_pitch=2e-4)
    >>> float(cam.sigma_px(1.5))
    0.0
    >>> round(float(cam.sigma_px(10.0)), 2)
    2.98
    """

    f: float
    N: float
    d_f: float
    pixel_pitch: float

    def __post_init__(self):
        for name in ("f", "N", "d_f", "pixel_pitch"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating, np.integer)) and value > 0):
                raise ValueError(f"ThinLens.{name} must be a positive number, got {value!r}")
        if self.d_f <= self.f:
            raise ValueError(f"ThinLens.d_f ({self.d_f}) must exceed the focal length f ({self.f})")

    @property
    def aperture(self) -> float:
        """Aperture diameter ``A = f / N`` (m)."""
        return self.f / self.N

    def coc(self, depth):
        """Circle-of-confusion diameter (m on the sensor) of points at ``depth`` (m).

        ``c = A f |d - d_f| / (d (d_f - f))``. Works on floats, numpy arrays and torch tensors.

        Examples
        --------
        >>> cam = ThinLens(f=0.05, N=2.0, d_f=2.0, pixel_pitch=1e-4)
        >>> float(cam.coc(2.0))
        0.0
        """
        if np.any(np.asarray(depth <= 0)):
            raise ValueError("depth must be positive (metres)")
        return self.aperture * self.f * abs(depth - self.d_f) / (depth * (self.d_f - self.f))

    def sigma_px(self, depth):
        """Gaussian blur sigma in pixels of the rendered grid: ``SIGMA_PER_COC * coc / pitch``.

        Examples
        --------
        >>> cam = ThinLens(f=0.05, N=2.0, d_f=2.0, pixel_pitch=1e-4)
        >>> round(float(cam.sigma_px(4.0)), 3)
        0.801
        """
        return SIGMA_PER_COC * self.coc(depth) / self.pixel_pitch

    def to_dict(self) -> dict:
        """The parameters as a plain dict."""
        return {"f": self.f, "N": self.N, "d_f": self.d_f, "pixel_pitch": self.pixel_pitch}


# --------------------------------------------------------------------------------------------
# photographs shipped inside installed packages (loaded once per process)
# --------------------------------------------------------------------------------------------
_PHOTO_CACHE: dict | None = None


def _photos() -> dict:
    """Return ``{"color": [uint8 (H,W,3)], "gray": [uint8 (H,W)]}``; cached per process."""
    global _PHOTO_CACHE
    if _PHOTO_CACHE is not None:
        return _PHOTO_CACHE
    color, gray = [], []
    try:
        from sklearn.datasets import load_sample_images

        color.extend(np.ascontiguousarray(im) for im in load_sample_images().images)
    except Exception:  # pragma: no cover - depends on the installed packages
        pass
    try:
        import skimage.data as skd

        for name in ("astronaut", "chelsea", "coffee", "rocket"):
            try:
                im = getattr(skd, name)()
                if im.ndim == 3 and im.shape[2] >= 3:
                    color.append(np.ascontiguousarray(im[..., :3]))
            except Exception:  # pragma: no cover
                pass
        for name in ("brick", "grass", "gravel"):
            try:
                im = getattr(skd, name)()
                if im.ndim == 2:
                    gray.append(np.ascontiguousarray(im))
            except Exception:  # pragma: no cover
                pass
    except Exception:  # pragma: no cover
        pass
    _PHOTO_CACHE = {"color": color, "gray": gray}
    return _PHOTO_CACHE


# --------------------------------------------------------------------------------------------
# small image helpers
# --------------------------------------------------------------------------------------------
def _resize(arr: np.ndarray, h: int, w: int, resample=None, box=None) -> np.ndarray:
    """Resize a float32 2-D array with Pillow (mode "F")."""
    from PIL import Image

    if resample is None:
        resample = Image.Resampling.BICUBIC
    im = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32), mode="F")
    return np.asarray(im.resize((w, h), resample=resample, box=box), dtype=np.float32)


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


def _random_color(rng: np.random.Generator, sat=(0.1, 0.7), val=(0.2, 0.95)) -> np.ndarray:
    h = rng.random()
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _fractal(rng: np.random.Generator, h: int, w: int, cells: float = 4, octaves: int = 3):
    """Zero-mean, unit-std smooth fractal noise of shape (h, w); ``cells`` along the longer side."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        c = cells * 2**o / max(h, w)
        grid = rng.standard_normal((int(c * h) + 3, int(c * w) + 3)).astype(np.float32)
        out += amp * _resize(grid, h, w)
        total += amp
        amp *= 0.5
    out -= out.mean()
    out /= out.std() + 1e-6
    return out


# --------------------------------------------------------------------------------------------
# textures: (3, h, w) float32 in [0, 1]
# --------------------------------------------------------------------------------------------
def _two_tone(t: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    return c1[:, None, None] * (1 - t)[None] + c2[:, None, None] * t[None]


_PIL_CACHE: dict = {}


def _pil_image(arr: np.ndarray):
    from PIL import Image

    key = id(arr)
    if key not in _PIL_CACHE:
        _PIL_CACHE[key] = Image.fromarray(arr)
    return _PIL_CACHE[key]


def _photo_crop(rng: np.random.Generator, h: int, w: int, gray: bool = False):
    photos = _photos()["gray" if gray else "color"]
    if not photos:
        return None
    src = photos[int(rng.integers(len(photos)))]
    sh, sw = src.shape[:2]
    # a crop at least 1.5x the output size, so the photo's own blur shrinks below ~0.5 px
    scale = rng.uniform(1.5, 3.0)
    ch, cw = min(sh, h * scale), min(sw, w * scale)
    aspect = (w / h) / (cw / ch)
    if aspect > 1:
        ch = cw * h / w
    else:
        cw = ch * w / h
    y0 = rng.uniform(0, sh - ch)
    x0 = rng.uniform(0, sw - cw)
    box = (x0, y0, x0 + cw, y0 + ch)
    from PIL import Image

    im = _pil_image(src).resize((w, h), resample=Image.Resampling.BICUBIC, box=box)
    out = np.asarray(im, dtype=np.float32) / 255.0
    out = out[None] if gray else out.transpose(2, 0, 1)
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    out = np.clip(out, 0, 1)
    if gray:
        lo, hi = _random_color(rng, val=(0.05, 0.4)), _random_color(rng, val=(0.6, 1.0))
        out = _two_tone(out[0], lo, hi)
    return np.ascontiguousarray(out, dtype=np.float32)


def _texture(rng: np.random.Generator, kind: str, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """A texture over the canvas coordinates X, Y (image units; the image spans [0, 1])."""
    h, w = X.shape
    span = max(float(X[0, -1] - X[0, 0]), float(Y[-1, 0] - Y[0, 0]), 1e-3)  # extent in image units
    if kind in ("photo", "gray_photo"):
        out = _photo_crop(rng, h, w, gray=kind == "gray_photo")
        if out is not None:
            return out
        kind = "noise"
    c1, c2 = _random_color(rng), _random_color(rng)
    if kind == "noise":
        t = _fractal(rng, h, w, cells=rng.uniform(2, 5) * span, octaves=4)
        t = np.clip(0.5 + 0.22 * t, 0, 1)
    elif kind == "stripes":
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(3, 12)
        u = X * np.cos(theta) + Y * np.sin(theta)
        t = np.clip(0.5 + rng.uniform(1, 6) * np.sin(2 * np.pi * freq * u + rng.uniform(0, 6.3)), 0, 1)
    elif kind == "checker":
        theta = rng.uniform(0, np.pi / 2)
        freq = rng.uniform(3, 9)
        u = X * np.cos(theta) + Y * np.sin(theta)
        v = -X * np.sin(theta) + Y * np.cos(theta)
        t = np.clip(0.5 + 8 * np.sin(2 * np.pi * freq * u) * np.sin(2 * np.pi * freq * v), 0, 1)
    elif kind == "blobs":
        n = _fractal(rng, h, w, cells=rng.uniform(3, 7) * span, octaves=2)
        t = np.clip(0.5 + 4 * (n - rng.uniform(-0.5, 0.5)), 0, 1)
    else:  # pragma: no cover - internal
        raise ValueError(f"unknown texture kind {kind!r}")
    out = _two_tone(t.astype(np.float32), c1, c2)
    grain = 0.03 * _fractal(rng, h, w, cells=40 * span, octaves=1)
    return np.clip(out + grain[None], 0, 1).astype(np.float32)


def _shading(rng: np.random.Generator, h: int, w: int, strength: float) -> np.ndarray:
    return (1 + strength * _fractal(rng, h, w, cells=1.5, octaves=2)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# shapes: antialiased coverage from an approximate signed distance (image units)
# --------------------------------------------------------------------------------------------
def _cover(sd: np.ndarray, size: int) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# the scene
# --------------------------------------------------------------------------------------------
@dataclass
class _Layer:
    name: str
    group: int  # layers of one group share a depth (the subject's head and body)
    color: np.ndarray  # (3, bh, bw) colour inside ``box``
    alpha: np.ndarray | None  # (bh, bw) sharp coverage inside ``box``; None = opaque background
    depth: Any  # float, or (hc, wc) canvas array for a slanted background
    box: tuple  # (y0, y1, x0, x1) on the canvas


class _Canvas:
    """Pixel grid of the padded canvas; image units: the visible image spans [0, 1]."""

    def __init__(self, size: int, pad: int):
        self.size, self.pad = size, pad
        self.n = size + 2 * pad
        self.coords = (np.arange(self.n, dtype=np.float32) - pad + 0.5) / size

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


_SKIN = np.array(
    [[0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.80, 0.60, 0.46], [0.62, 0.43, 0.30], [0.45, 0.30, 0.21]],
    np.float32,
)


def _subject_layers(rng, cv: _Canvas, group, depth, cx, cy, ry):
    """Two layers at one depth: body (neck, torso) and head (hair, face, features)."""
    size = cv.size
    rx = ry * rng.uniform(0.68, 0.8)
    skin = np.clip(_SKIN[int(rng.integers(len(_SKIN)))] * rng.uniform(0.9, 1.1, 3), 0, 1).astype(np.float32)
    torso_rx = rx * rng.uniform(2.0, 2.6)
    cloth_kind = str(rng.choice(["photo", "stripes", "checker", "noise", "gray_photo"]))
    hair_c = _random_color(rng, sat=(0.2, 0.6), val=(0.05, 0.45))
    hair_freq, hair_len, fringe_len = rng.uniform(25, 45), rng.uniform(0.2, 0.9), rng.uniform(0.45, 0.7)
    theta = rng.uniform(-0.15, 0.15)
    iris = [_random_color(rng, sat=(0.3, 0.7), val=(0.15, 0.45)) for _ in range(2)]
    layers = []

    # body: torso ellipse plus neck rectangle
    box = cv.window(cx - torso_rx, cx + torso_rx, cy + 0.6 * ry, cy + 3.65 * ry)
    if box is not None:
        X, Y = cv.grid(box)
        torso_a = _cover(_ellipse_sd(X, Y, cx, cy + 2.35 * ry, torso_rx, 1.25 * ry), size)
        neck_a = _cover(_rect_sd(X, Y, cx, cy + 1.05 * ry, 0.42 * rx, 0.4 * ry), size)
        cloth = _texture(rng, cloth_kind, X, Y)
        body_col = cloth * (1 - neck_a)[None] + (skin[:, None, None] * 0.85) * neck_a[None]
        layers.append(_Layer("subject_body", group, body_col.astype(np.float32),
                             np.maximum(torso_a, neck_a), depth, box))

    # head: hair behind the face, face with shading, eyes, brows, nose, mouth, fringe
    box = cv.window(cx - 1.15 * rx, cx + 1.15 * rx, cy - 1.2 * ry, cy + 1.05 * ry)
    X, Y = cv.grid(box)
    c, s = math.cos(theta + 1.3), math.sin(theta + 1.3)
    hair_t = np.clip(0.5 + 3 * np.sin(2 * np.pi * hair_freq * (X * c + Y * s)), 0, 1)
    hair_tex = _two_tone(hair_t, hair_c * 0.6, np.clip(hair_c * 1.5, 0, 1))
    hair_a = _cover(_ellipse_sd(X, Y, cx, cy - 0.12 * ry, 1.12 * rx, 1.02 * ry), size)
    hair_a *= np.clip((cy + hair_len * ry - Y) * size, 0, 1)
    face_a = _cover(_ellipse_sd(X, Y, cx, cy, rx, ry, theta), size)
    r2 = ((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2
    shade = 1 - 0.22 * np.clip(r2, 0, 1) + 0.08 * (cx - X) / rx
    h, w = X.shape
    shade = shade * (1 + 0.025 * _fractal(rng, h, w, cells=30 * w / size, octaves=1))
    face = skin[:, None, None] * shade[None]
    feats = []
    for k, side in enumerate((-1, 1)):
        ex, ey = cx + side * 0.36 * rx, cy - 0.12 * ry
        feats.append((_ellipse_sd(X, Y, ex, ey, 0.2 * rx, 0.085 * ry), np.array([0.93, 0.92, 0.9], np.float32)))
        feats.append((_ellipse_sd(X, Y, ex, ey, 0.075 * ry, 0.075 * ry), iris[k]))
        feats.append((_ellipse_sd(X, Y, ex, ey, 0.032 * ry, 0.032 * ry), np.zeros(3, np.float32)))
        feats.append((_rect_sd(X, Y, ex, ey - 0.19 * ry, 0.22 * rx, 0.025 * ry, -0.1 * side), hair_c * 0.8))
    feats.append((_ellipse_sd(X, Y, cx, cy + 0.2 * ry, 0.09 * rx, 0.05 * ry), skin * 0.7))
    lip = np.clip(skin * np.array([1.0, 0.6, 0.6], np.float32), 0, 1) * 0.8
    feats.append((_ellipse_sd(X, Y, cx, cy + 0.47 * ry, 0.3 * rx, 0.065 * ry), lip))
    for sd, col in feats:
        a = _cover(sd, size) * face_a
        face = face * (1 - a)[None] + col[:, None, None] * a[None]
    fringe = face_a * np.clip((cy - fringe_len * ry - Y) * size, 0, 1)
    face = face * (1 - fringe)[None] + hair_tex * fringe[None]
    head_col = hair_tex * (1 - face_a)[None] + face * face_a[None]
    layers.append(_Layer("subject_head", group, np.clip(head_col, 0, 1).astype(np.float32),
                         np.maximum(hair_a, face_a), depth, box))
    return layers


@dataclass
class _Scene:
    layers: list  # back to front
    camera: ThinLens
    pad: int
    size: int


def _sample_scene(rng: np.random.Generator, size: int, camera: ThinLens | None) -> _Scene:
    unit = size / 128.0
    # ---- depths (m): subject, background plane, objects in front of / behind the subject
    d_s = float(np.exp(rng.uniform(np.log(1.0), np.log(3.0))))
    d_bg = float(np.exp(rng.uniform(np.log(max(4.0, 2 * d_s)), np.log(30.0))))
    slanted = rng.random() < 0.5
    d_near = d_bg * rng.uniform(0.3, 0.7)  # slanted plane: depth at the bottom row
    gx = rng.uniform(-0.3, 0.3) * (1 / d_near - 1 / d_bg)  # and a small sideways tilt
    obj_depths = []
    for _ in range(int(rng.integers(2, 5))):
        if rng.random() < 0.3:
            obj_depths.append(("front", d_s * rng.uniform(0.4, 0.8)))
        else:
            obj_depths.append(("mid", float(np.exp(rng.uniform(np.log(d_s * 1.2), np.log(d_bg * 0.85))))))
    # ---- framing: head height as a fraction of the image, subject position
    head_frac = rng.uniform(*_HEAD_FRAC_RANGE)
    cx, cy = rng.uniform(0.38, 0.62), rng.uniform(0.34, 0.48)
    # ---- camera: focal length, and the pixel pitch that gives the subject's head that size
    f = float(np.exp(rng.uniform(np.log(_FOCAL_RANGE[0]), np.log(_FOCAL_RANGE[1]))))
    pitch = f / (d_s - f) * _HEAD_HEIGHT_M / (head_frac * size)
    focus_u, focus_k, fx = rng.random(3)
    target_smax = rng.uniform(*SIGMA_MAX_RANGE) * unit

    def u_background(X, Y):  # a plane's inverse depth is affine in image coordinates
        if not slanted:
            return np.full_like(X, 1 / d_bg)
        return np.clip(1 / d_bg + (1 / d_near - 1 / d_bg) * Y + gx * (X - 0.5), 1 / 100.0, None)

    if camera is None:
        pad_sigma = target_smax
    else:
        vis = (np.arange(size, dtype=np.float32) + 0.5) / size
        u_all = np.concatenate([[1 / d_s], [1 / d for _, d in obj_depths], u_background(*np.meshgrid(vis, vis)).ravel()])
        pad_sigma = float(np.max(camera.sigma_px(1 / u_all)))
    # padding wide enough for the largest blur any family uses (light from outside the frame)
    pad = min(int(math.ceil(_TRUNCATE * max(pad_sigma, 3.5 * unit, 1.5))) + 2, 2 * size)
    cv = _Canvas(size, pad)
    full = (0, cv.n, 0, cv.n)
    X, Y = cv.grid(full)
    bg_depth = (1 / u_background(X, Y)).astype(np.float32) if slanted else float(d_bg)

    # ---- layers, back to front
    layers = []
    bg_kind = str(rng.choice(["photo", "photo", "photo", "gray_photo", "noise"]))
    bg_col = _texture(rng, bg_kind, X, Y) * _shading(rng, cv.n, cv.n, 0.12)[None]
    layers.append(_Layer("background", 0, np.clip(bg_col, 0, 1).astype(np.float32), None, bg_depth, full))
    objs = []
    for k, (where, d) in enumerate(obj_depths):
        shape = str(rng.choice(["rect", "disc", "blob", "ellipse"]))
        r = rng.uniform(0.1, 0.3) if where == "mid" else rng.uniform(0.15, 0.35)
        if where == "front":  # foreground occluders stay near the left/right borders
            ox = rng.uniform(-0.15, 0.2) if rng.random() < 0.5 else rng.uniform(0.8, 1.15)
            oy = rng.uniform(-0.1, 1.1)
        else:
            ox, oy = rng.uniform(-0.1, 1.1), rng.uniform(-0.1, 1.1)
        theta = rng.uniform(0, np.pi)
        aspect = rng.uniform(0.3, 1.2) if shape == "rect" else rng.uniform(0.4, 0.9)
        amps = rng.uniform(0, 0.5 / np.arange(2, 6)) if shape == "blob" else np.zeros(4)
        phases = rng.uniform(0, 2 * np.pi, 4)
        kind = str(rng.choice(["photo", "photo", "gray_photo", "noise", "stripes", "checker", "blobs"]))
        reach = r * max(1.0, aspect) * (1.45 if shape == "rect" else 1.0) * (1 + amps.sum()) + 0.01
        if where == "front":  # never cover the middle of the subject's face
            keep = 0.5 * 0.68 * head_frac / 2 + reach
            if abs(ox - cx) < keep:
                ox = cx - keep if ox < cx else cx + keep
        box = cv.window(ox - reach, ox + reach, oy - reach, oy + reach)
        if box is None:
            continue
        Xw, Yw = cv.grid(box)
        if shape == "rect":
            sd = _rect_sd(Xw, Yw, ox, oy, r, r * aspect, theta)
        elif shape == "disc":
            sd = _ellipse_sd(Xw, Yw, ox, oy, r * 0.8, r * 0.8)
        elif shape == "ellipse":
            sd = _ellipse_sd(Xw, Yw, ox, oy, r, r * aspect, theta)
        else:
            sd = _blob_sd(Xw, Yw, ox, oy, r * 0.8, amps, phases)
        alpha = _cover(sd, size)
        if not alpha.any():
            continue
        col = _texture(rng, kind, Xw, Yw) * _shading(rng, *Xw.shape, 0.1)[None]
        objs.append([_Layer(f"object{k}", k + 2, np.clip(col, 0, 1).astype(np.float32), alpha, float(d), box)])
    subject = _subject_layers(rng, cv, 1, float(d_s), cx, cy, head_frac / 2)
    for item in sorted(objs + [subject], key=lambda group: -group[0].depth):
        layers.extend(item)
    scene = _Scene(layers=layers, camera=camera, pad=pad, size=size)
    if camera is not None:
        return scene

    # ---- autofocus on something visible: the subject (65 %), else a visible object or a
    # visible point of the background; then the aperture that gives the most defocused
    # visible layer the target sigma
    owner = _owner(scene)
    if focus_u < 0.65:
        d_f = d_s
    else:
        cands = [layer.depth for i, layer in enumerate(layers)
                 if layer.name.startswith("object") and (owner == i).mean() >= 0.02]
        ys, xs = np.nonzero(owner == 0)
        if len(ys):
            j = int(fx * len(ys))
            cands.append(float(bg_depth[ys[j] + pad, xs[j] + pad]) if slanted else float(d_bg))
        d_f = float(cands[int(focus_k * len(cands))]) if cands else d_s
    u_vis = np.concatenate([np.atleast_1d(1 / np.asarray(layers[i].depth, np.float64)).ravel()
                            for i in np.unique(owner) if i > 0] +
                           [1 / bg_depth[pad:pad + size, pad:pad + size][owner == 0] if slanted
                            else np.array([1 / d_bg])])
    du_max = float(np.abs(u_vis - 1 / d_f).max())
    n_num = SIGMA_PER_COC * f * f * d_f / (d_f - f) * du_max
    N = float(np.clip(n_num / (pitch * target_smax), _N_RANGE[0], _N_RANGE[1]))
    scene.camera = ThinLens(f=f, N=N, d_f=float(d_f), pixel_pitch=float(pitch))
    return scene


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


def _postprocess(img: np.ndarray, z: np.ndarray, read: float, gain: float, jpeg_quality: int | None) -> np.ndarray:
    """Sensor noise ``sqrt(read^2 + gain * x) * z``, clip, 8-bit quantization, optional JPEG."""
    std = np.sqrt(read**2 + gain * img)
    x = np.clip(img + std * z, 0, 1)
    u8 = np.round(x.transpose(1, 2, 0) * 255).astype(np.uint8)
    if jpeg_quality is not None:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=int(jpeg_quality))
        buf.seek(0)
        u8 = np.asarray(Image.open(buf).convert("RGB"))
    return (u8.transpose(2, 0, 1).astype(np.float32) / 255.0).copy()


def _generator_smoothing(img: np.ndarray, factor: float) -> np.ndarray:
    """Area-average down by ``factor``, bilinear up: a Gaussian of sigma factor/2 (2nd moment)."""
    from PIL import Image

    n = img.shape[-1]
    small = max(4, int(round(n / factor)))
    out = []
    for c in img:
        lo = _resize(c, small, small, resample=Image.Resampling.BOX)
        out.append(_resize(lo, n, n, resample=Image.Resampling.BILINEAR))
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


def _as_quality(jpeg_quality) -> int | None:
    if jpeg_quality is None:
        return None
    q = int(jpeg_quality)
    if not 1 <= q <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100 or None, got {jpeg_quality!r}")
    return q


def render_scene(*, size: int = 128, family: str = "real", seed: int = 0, camera: ThinLens | None = None,
                 jpeg_quality: int | None = None, noise: bool = True, return_camera: bool = False) -> dict:
    """Render one DefocusSynth sample.

    The scene (geometry, textures, camera, noise realization) depends only on ``seed`` and
    ``size``; every ``family`` renders the same scene, so a fake and the real sample of the
    same seed differ only by the manipulation.

    Parameters
    ----------
    size : int
        Height and width of the square image (>= 32). Blur in pixels scales with ``size``.
    family : str
        ``"real"`` or one of :data:`FAMILIES`.
    seed : int
        Non-negative seed of the scene.
    camera : ThinLens, optional
        Use this camera instead of the sampled one (the scene layout is still sampled).
    jpeg_quality : int, optional
        JPEG quality (1-100) of the final image; ``None`` (default) leaves it uncompressed.
    noise : bool
        Add sensor noise (Gaussian read noise plus signal-dependent shot noise).
    return_camera : bool
        Also return the :class:`ThinLens` under ``"camera"`` and the per-layer list
        ``"layers"`` (name, depth, sigma).

    Returns
    -------
    dict
        ``image`` (3, H, W) float32 tensor in [0, 1] (on the 8-bit grid); ``label`` int (0 real,
        1 fake); ``family`` str; ``sigma`` (1, H, W) float32 true blur sigma in px; ``depth``
        (1, H, W) float32 metres; ``mask`` (1, H, W) uint8 manipulated pixels; ``source_id``
        str shared by all families of one scene; ``seed`` int; ``index`` int (-1 outside a
        data set); ``jpeg_quality`` int (0 = none).

    Examples
    --------
    >>> s = render_scene(size=64, family="splice", seed=3)
    >>> tuple(s["image"].shape), s["label"], int(s["mask"].sum()) > 0
    ((3, 64, 64), 1, True)
    >>> r = render_scene(size=64, family="real", seed=3)
    >>> r["source_id"] == s["source_id"]
    True
    """
    if family != REAL and family not in FAMILIES:
        raise ValueError(f"family must be 'real' or one of {FAMILIES}, got {family!r}")
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if camera is not None and not isinstance(camera, ThinLens):
        raise TypeError(f"camera must be a ThinLens or None, got {type(camera).__name__}")
    q = _as_quality(jpeg_quality)
    size, seed = int(size), int(seed)

    ss_scene, ss_post, ss_fake = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(ss_scene)
    scene = _sample_scene(rng, size, camera)
    # post-processing parameters and noise realization (shared by every family)
    rp = np.random.default_rng(ss_post)
    read, gain = rp.uniform(*READ_NOISE_RANGE), rp.uniform(*SHOT_GAIN_RANGE)
    z = rp.standard_normal((3, size, size)).astype(np.float32)
    if not noise:
        read, gain = 0.0, 0.0
    # manipulation parameters: drawn in a fixed order whatever the family
    rf = np.random.default_rng(ss_fake)
    u_splice = rf.random()
    gen_factor = rf.uniform(*GENERATOR_FACTOR_RANGE)
    perms = [rf.permutation(64) for _ in range(24)]

    lens_sigmas = [_layer_sigma(scene, layer) for layer in scene.layers]
    unit = size / 128.0
    mask = np.zeros((size, size), np.uint8)
    owner, depth, sigma_true = _truth(scene, lens_sigmas)
    if family in (REAL, "generator_smoothing", "splice"):
        img = _render(scene, lens_sigmas)
        sigma = sigma_true
    if family == "no_dof":
        zero = [0.0 for _ in scene.layers]
        img = _render(scene, zero)
        sigma = np.zeros_like(sigma_true)
    elif family == "generator_smoothing":
        img = _generator_smoothing(img, gen_factor)
        sigma = np.sqrt(sigma_true**2 + (gen_factor / 2) ** 2).astype(np.float32)
    elif family == "splice":
        head = [i for i, layer in enumerate(scene.layers) if layer.name == "subject_head"][0]
        s_head = float(lens_sigmas[head])
        if s_head < 1.0 * unit:  # a blurred face pasted into a sharp subject
            s_new = (1.5 + 2.0 * u_splice) * unit
        else:  # a sharper face pasted into a defocused subject
            s_new = max(0.0, s_head - 1.5 * unit) * u_splice
        sig2 = list(lens_sigmas)
        sig2[head] = s_new
        alt = _render(scene, sig2)
        m = owner == head
        mask = m.astype(np.uint8)
        w = np.clip(ndimage.distance_transform_edt(m) / 1.5, 0, 1).astype(np.float32)  # feathered paste
        img = img * (1 - w)[None] + alt * w[None]
        sigma = np.where(m, np.float32(s_new), sigma_true).astype(np.float32)
    elif family == "depth_inconsistent":
        # permute the blur among depth groups (objects, subject, a frontal background)
        groups = sorted({layer.group for layer in scene.layers
                         if layer.alpha is not None or not isinstance(layer.depth, np.ndarray)})
        # only groups that cover at least 2 % of the image take part, so the change is visible
        frac = {g: 0.0 for g in groups}
        for i, layer in enumerate(scene.layers):
            if layer.group in frac:
                frac[layer.group] += float((owner == i).mean())
        visible = [g for g in groups if frac[g] >= 0.02]
        groups = visible if len(visible) >= 2 else groups
        gsig = {}
        for layer, s in zip(scene.layers, lens_sigmas):
            if layer.group in groups:
                gsig[layer.group] = float(s)
        vals = np.array([gsig[g] for g in groups])
        best, best_gap = None, -1.0
        for perm in perms:
            order = [int(k) for k in perm if k < len(groups)]
            gap = float(np.abs(vals[order] - vals).max())
            if gap >= 1.0 * unit:
                best = order
                break
            if gap > best_gap:
                best, best_gap = order, gap
        new = {g: float(vals[best[i]]) for i, g in enumerate(groups)}
        sig2 = [new[layer.group] if layer.group in new else s for layer, s in zip(scene.layers, lens_sigmas)]
        img = _render(scene, sig2)
        _, _, sigma = _truth(scene, sig2)
    img = _postprocess(img, z, read, gain, q)

    out = {
        "image": torch.from_numpy(img),
        "label": 0 if family == REAL else 1,
        "family": family,
        "sigma": torch.from_numpy(np.ascontiguousarray(sigma, np.float32)[None]),
        "depth": torch.from_numpy(depth[None].copy()),
        "mask": torch.from_numpy(mask[None].copy()),
        "source_id": f"synth-{seed:016x}",
        "seed": seed,
        "index": -1,
        "jpeg_quality": 0 if q is None else q,
    }
    if return_camera:
        out["camera"] = scene.camera
        out["layers"] = [
            {"name": layer.name,
             "depth": float(np.median(layer.depth)) if isinstance(layer.depth, np.ndarray) else layer.depth,
             "sigma": float(np.median(s)) if isinstance(s, np.ndarray) else float(s)}
            for layer, s in zip(scene.layers, lens_sigmas)
        ]
    return out


# --------------------------------------------------------------------------------------------
# the data set
# --------------------------------------------------------------------------------------------
def _scene_seed(seed: int, k: int) -> int:
    state = np.random.SeedSequence([int(seed), int(k)]).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


class DefocusSynth(Dataset):
    """The DefocusSynth benchmark as a map-style ``torch.utils.data.Dataset``.

    Parameters
    ----------
    n : int
        Number of samples.
    size : int
        Image height and width (default 128).
    families : sequence of str
        Fake families to draw from (subset of :data:`FAMILIES`).
    fake_fraction : float
        Fraction of fakes. With 0.5 (default) samples come in pairs: sample ``2k`` is the
        real image of scene ``k`` and sample ``2k + 1`` a fake of the same scene, of family
        ``families[k % len(families)]``. Any other value in [0, 1] gives unpaired samples:
        sample ``i`` is its own scene, fake with probability ``fake_fraction`` (its real
        partner is ``render_scene(seed=sample["seed"], family="real", ...)``).
    seed : int
        Seed of the whole data set; sample ``i`` depends only on ``(seed, i)``.
    jpeg : None, int or (int, int)
        JPEG quality: ``None`` for no compression, an int for a fixed quality, or a range from
        which each scene draws one (real and fake of one scene share it). Default (75, 95).
    noise : bool
        Add sensor noise (default True).

    Examples
    --------
    >>> ds = DefocusSynth(4, size=64, seed=0)
    >>> a, b = ds[0], ds[1]
    >>> (a["label"], b["label"], a["source_id"] == b["source_id"])
    (0, 1, True)
    >>> ds.families
    ('no_dof', 'splice', 'depth_inconsistent', 'generator_smoothing')
    """

    def __init__(self, n: int, *, size: int = 128, families: Sequence[str] = FAMILIES,
                 fake_fraction: float = 0.5, seed: int = 0, jpeg=(75, 95), noise: bool = True):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if isinstance(families, str):
            families = (families,)
        families = tuple(families)
        bad = [f for f in families if f not in FAMILIES]
        if bad or not families:
            raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {families!r}")
        if not 0.0 <= float(fake_fraction) <= 1.0:
            raise ValueError(f"fake_fraction must be in [0, 1], got {fake_fraction!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if jpeg is None:
            self._jpeg = None
        elif isinstance(jpeg, (int, np.integer)):
            self._jpeg = (_as_quality(jpeg), _as_quality(jpeg))
        else:
            lo, hi = (_as_quality(v) for v in jpeg)
            if lo > hi:
                raise ValueError(f"jpeg range must be (low, high), got {jpeg!r}")
            self._jpeg = (lo, hi)
        if not isinstance(size, (int, np.integer)) or size < 32:
            raise ValueError(f"size must be an integer >= 32, got {size!r}")
        self.n = int(n)
        self.size = int(size)
        self.families = families
        self.fake_fraction = float(fake_fraction)
        self.seed = int(seed)
        self.noise = bool(noise)
        self._plan_cache = None

    @property
    def paired(self) -> bool:
        """Whether samples come in real/fake pairs of one scene (``fake_fraction == 0.5``)."""
        return self.fake_fraction == 0.5

    def __len__(self) -> int:
        return self.n

    def plan(self, i: int) -> dict:
        """What sample ``i`` is without rendering it: label, family, seed, source id, JPEG quality.

        Examples
        --------
        >>> DefocusSynth(4, size=64).plan(1)["family"]
        'no_dof'
        """
        i = int(i)
        if self.paired:
            k, fake = i // 2, i % 2 == 1
            family = self.families[k % len(self.families)] if fake else REAL
        else:
            k = i
            r = np.random.default_rng(np.random.SeedSequence([self.seed, i, 2]))
            fake = r.random() < self.fake_fraction
            fam = self.families[int(r.integers(len(self.families)))]
            family = fam if fake else REAL
        scene_seed = _scene_seed(self.seed, k)
        q = 0
        if self._jpeg is not None:
            rq = np.random.default_rng(np.random.SeedSequence([self.seed, k, 1]))
            q = int(rq.integers(self._jpeg[0], self._jpeg[1] + 1))
        return {"label": int(fake), "family": family, "seed": scene_seed,
                "source_id": f"synth-{scene_seed:016x}", "jpeg_quality": q}

    def _plans(self):
        if self._plan_cache is None:
            self._plan_cache = [self.plan(i) for i in range(self.n)]
        return self._plan_cache

    @property
    def source_ids(self) -> list:
        """Source id of every sample (a real and its fake share one)."""
        return [p["source_id"] for p in self._plans()]

    @property
    def labels(self) -> list:
        """Label of every sample (0 real, 1 fake)."""
        return [p["label"] for p in self._plans()]

    @property
    def sample_families(self) -> list:
        """Family of every sample (``"real"`` for real ones)."""
        return [p["family"] for p in self._plans()]

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for DefocusSynth of length {self.n}")
        p = self.plan(i)
        s = render_scene(size=self.size, family=p["family"], seed=p["seed"],
                         jpeg_quality=p["jpeg_quality"] or None, noise=self.noise)
        s["index"] = i
        return s

    def __repr__(self) -> str:
        return (f"DefocusSynth(n={self.n}, size={self.size}, families={self.families}, "
                f"fake_fraction={self.fake_fraction}, seed={self.seed}, jpeg={self._jpeg})")


def collate(samples: Sequence[dict]) -> dict:
    """Batch samples: tensors stacked, ints to a tensor, strings to lists.

    ``torch.utils.data.default_collate`` does the same for the data set's samples; this
    function also accepts the extra ``camera``/``layers`` keys of ``render_scene`` (kept as
    lists).

    Examples
    --------
    >>> b = collate([render_scene(size=32, seed=s) for s in (0, 1)])
    >>> tuple(b["image"].shape), b["family"]
    ((2, 3, 32, 32), ['real', 'real'])
    """
    if not samples:
        raise ValueError("collate needs at least one sample")
    out = {}
    for key in samples[0]:
        vals = [s[key] for s in samples]
        if isinstance(vals[0], torch.Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(vals[0], (int, np.integer)) and not isinstance(vals[0], bool):
            out[key] = torch.tensor([int(v) for v in vals], dtype=torch.int64)
        else:
            out[key] = list(vals)
    return out
