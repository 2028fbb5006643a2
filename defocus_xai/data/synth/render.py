"""``render_scene``: one DefocusSynth sample (scene, manipulation, sensor) with its ground truth.

The sensor model (noise, 8-bit quantization, JPEG) lives here too; docs/synth.md explains the whole chain.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from .camera import ThinLens
from .composite import _layer_sigma
from .families import FAMILIES, REAL, _FakeDraws, _render_family
from .scene import _sample_scene

__all__ = ["SYNTH_VERSION", "render_scene"]

#: Version of the generator: bump when a change alters the pixels a seed produces.
SYNTH_VERSION = "1.0"

#: Read-noise standard deviation range and shot-noise gain range (variance = gain * intensity).
READ_NOISE_RANGE = (0.002, 0.015)
SHOT_GAIN_RANGE = (0.0, 3e-4)


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
    _check_render_args(family, size, seed, camera)
    q = _as_quality(jpeg_quality)
    size, seed = int(size), int(seed)
    ss_scene, ss_post, ss_fake = np.random.SeedSequence(seed).spawn(3)
    scene = _sample_scene(np.random.default_rng(ss_scene), size, camera)
    # post-processing parameters and noise realization (shared by every family)
    rp = np.random.default_rng(ss_post)
    read, gain = rp.uniform(*READ_NOISE_RANGE), rp.uniform(*SHOT_GAIN_RANGE)
    z = rp.standard_normal((3, size, size)).astype(np.float32)
    if not noise:
        read, gain = 0.0, 0.0
    draws = _FakeDraws.draw(np.random.default_rng(ss_fake))
    lens_sigmas = [_layer_sigma(scene, layer) for layer in scene.layers]
    img, sigma, mask, depth = _render_family(family, scene, lens_sigmas, draws)
    img = _postprocess(img, z, read, gain, q)
    out = _sample_dict(img, family, sigma, mask, depth, seed, q)
    if return_camera:
        out["camera"] = scene.camera
        out["layers"] = [
            {"name": layer.name,
             "depth": float(np.median(layer.depth)) if isinstance(layer.depth, np.ndarray) else layer.depth,
             "sigma": float(np.median(s)) if isinstance(s, np.ndarray) else float(s)}
            for layer, s in zip(scene.layers, lens_sigmas)
        ]
    return out


def _sample_dict(img, family: str, sigma, mask, depth, seed: int, q: int | None) -> dict:
    return {
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


def _check_render_args(family, size, seed, camera) -> None:
    if family != REAL and family not in FAMILIES:
        raise ValueError(f"family must be 'real' or one of {FAMILIES}, got {family!r}")
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if camera is not None and not isinstance(camera, ThinLens):
        raise TypeError(f"camera must be a ThinLens or None, got {type(camera).__name__}")
