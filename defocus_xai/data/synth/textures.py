"""Procedural and photographic textures of DefocusSynth: (3, h, w) float32 colour images in [0, 1].

Internal to :mod:`defocus_xai.data.synth`. Photographs come from scikit-learn's and scikit-image's sample
images, loaded once per process.
"""

from __future__ import annotations

import colorsys

import numpy as np

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


def _resize(arr: np.ndarray, h: int, w: int, resample=None, box=None) -> np.ndarray:
    """Resize a float32 2-D array with Pillow (mode "F")."""
    from PIL import Image

    if resample is None:
        resample = Image.Resampling.BICUBIC
    im = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32), mode="F")
    return np.asarray(im.resize((w, h), resample=resample, box=box), dtype=np.float32)


def _random_color(rng: np.random.Generator, sat=(0.1, 0.7), val=(0.2, 0.95)) -> np.ndarray:
    h = rng.random()
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _fractal(rng: np.random.Generator, h: int, w: int, cells: float = 4, octaves: int = 3):
    """Zero-mean, unit-std smooth fractal noise of shape (h, w); ``cells`` along the longer side."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for o in range(octaves):
        c = cells * 2**o / max(h, w)
        grid = rng.standard_normal((int(c * h) + 3, int(c * w) + 3)).astype(np.float32)
        out += amp * _resize(grid, h, w)
        amp *= 0.5
    out -= out.mean()
    out /= out.std() + 1e-6
    return out


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
