"""``render_scene``: one DefocusSynth sample (scene, manipulation, sensor) with its ground truth.

The sensor model (noise, 8-bit quantization, JPEG) lives here too; docs/synth.md explains the whole chain.
"""

from __future__ import annotations

import numpy as np
import torch

from .camera import ThinLens
from .composite import _layer_sigma
from .cameras import _camera_stream, _CameraDraws
from .fakes import FAMILIES_V2, _render_family_v2, _SwapDraws
from .families import FAMILIES, REAL, _FakeDraws, _render_family
from .scene import _sample_scene
from .sensor import (READ_NOISE_RANGE, READ_NOISE_RANGE_V2, SHOT_GAIN_RANGE, SHOT_GAIN_RANGE_V2, _as_quality,
                     _postprocess)

__all__ = ["SYNTH_VERSION", "SYNTH_VERSIONS", "render_scene"]

#: The default version of the generator (what ``version=None`` renders; the bundled weights record it).
SYNTH_VERSION = "2.0"

#: Every version that can be rendered; a version's pixels for a seed never change.
SYNTH_VERSIONS = ("1.0", "2.0")

def render_scene(*, size: int = 128, family: str = "real", seed: int = 0, camera: ThinLens | None = None,
                 jpeg_quality: int | None = None, noise: bool = True, return_camera: bool = False,
                 version: str | None = None) -> dict:
    """Render one DefocusSynth sample.

    The scene (geometry, textures, camera, noise realization) depends only on ``seed`` and
    ``size``; every ``family`` renders the same scene, so a fake and the real sample of the
    same seed differ only by the manipulation.

    Parameters
    ----------
    size : int
        Height and width of the square image (>= 32). Blur in pixels scales with ``size``.
    family : str
        ``"real"`` or a fake family of the version (:data:`FAMILIES`; version 2.0 adds ``"face_swap"``).
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
        ``"layers"`` (name, depth, lens sigma); version 2.0 also the :class:`Aperture`.
    version : str, optional
        Generator version, one of :data:`SYNTH_VERSIONS`; ``None`` means :data:`SYNTH_VERSION`.
        "1.0": Gaussian blur, every real has depth of field, photo textures. "2.0": disc or
        polygonal apertures, deep-focus and shallow-focus cameras, vector textures of known blur,
        ``sigma`` the total blur, a wider noise model, and the ``face_swap`` family.

    Returns
    -------
    dict
        ``image`` (3, H, W) float32 tensor in [0, 1] (on the 8-bit grid); ``label`` int (0 real,
        1 fake); ``family`` str; ``sigma`` (1, H, W) float32 true blur sigma in px; ``depth``
        (1, H, W) float32 metres; ``mask`` (1, H, W) uint8 manipulated pixels; ``source_id``
        str shared by all families of one scene; ``seed`` int; ``index`` int (-1 outside a
        data set); ``jpeg_quality`` int (0 = none); ``f_number``, ``focal_length`` (m) and
        ``focus_distance`` (m) floats of the camera; ``version`` str.

    Examples
    --------
    >>> s = render_scene(size=64, family="splice", seed=3)
    >>> tuple(s["image"].shape), s["label"], int(s["mask"].sum()) > 0
    ((3, 64, 64), 1, True)
    >>> r = render_scene(size=64, family="real", seed=3)
    >>> r["source_id"] == s["source_id"]
    True
    """
    version = _check_render_args(family, size, seed, camera, version)
    q = _as_quality(jpeg_quality)
    size, seed = int(size), int(seed)
    if version == "2.0":
        out, scene, lens = _render_v2(size, family, seed, camera, q, noise)
    else:
        ss_scene, ss_post, ss_fake = np.random.SeedSequence(seed).spawn(3)
        scene = _sample_scene(np.random.default_rng(ss_scene), size, camera)
        # post-processing parameters and noise realization (shared by every family)
        rp = np.random.default_rng(ss_post)
        read, gain = rp.uniform(*READ_NOISE_RANGE), rp.uniform(*SHOT_GAIN_RANGE)
        z = rp.standard_normal((3, size, size)).astype(np.float32)
        if not noise:
            read, gain = 0.0, 0.0
        draws = _FakeDraws.draw(np.random.default_rng(ss_fake))
        lens = [_layer_sigma(scene, layer) for layer in scene.layers]
        img, sigma, mask, depth = _render_family(family, scene, lens, draws)
        img = _postprocess(img, z, read, gain, q)
        out = _sample_dict(img, family, sigma, mask, depth, seed, q)
    cam = scene.camera
    out.update(f_number=float(cam.N), focal_length=float(cam.f), focus_distance=float(cam.d_f), version=version)
    aperture = out.pop("aperture", None)
    if return_camera:
        out["camera"] = cam
        if aperture is not None:
            out["aperture"] = aperture
        out["layers"] = [
            {"name": layer.name,
             "depth": float(np.median(layer.depth)) if isinstance(layer.depth, np.ndarray) else layer.depth,
             "sigma": float(np.median(s)) if isinstance(s, np.ndarray) else float(s)}
            for layer, s in zip(scene.layers, lens)
        ]
    return out


def _render_v2(size: int, family: str, seed: int, camera, q, noise: bool):
    """Version 2.0: the sample dict, the scene and its layers' lens sigmas."""
    ss_scene, ss_post, ss_fake = np.random.SeedSequence(seed).spawn(3)
    cam_draws = _CameraDraws.draw(np.random.default_rng(_camera_stream(seed)), size)
    scene = _sample_scene(np.random.default_rng(ss_scene), size, camera, v2=cam_draws)
    rp = np.random.default_rng(ss_post)
    read, gain = (float(np.exp(rp.uniform(*np.log(r)))) for r in (READ_NOISE_RANGE_V2, SHOT_GAIN_RANGE_V2))
    z = rp.standard_normal((3, size, size)).astype(np.float32)
    if not noise:
        read, gain = 0.0, 0.0
    rf = np.random.default_rng(ss_fake)
    draws = _FakeDraws.draw(rf)
    swap = _SwapDraws.draw(rf, size)
    lens = [_layer_sigma(scene, layer) for layer in scene.layers]

    def sensor(img):
        return _postprocess(img, z, read, gain, q)

    img, sigma, mask, depth = _render_family_v2(family, scene, lens, draws, swap, cam_draws.aperture, sensor,
                                                noise=noise, jpeg=q is not None)
    out = _sample_dict(img, family, sigma, mask, depth, seed, q)
    out["aperture"] = cam_draws.aperture
    return out, scene, lens


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


def _check_render_args(family, size, seed, camera, version) -> str:
    version = SYNTH_VERSION if version is None else version
    if version not in SYNTH_VERSIONS:
        raise ValueError(f"version must be one of {SYNTH_VERSIONS} or None, got {version!r}")
    families = FAMILIES_V2 if version == "2.0" else FAMILIES
    if family != REAL and family not in families:
        raise ValueError(f"family must be 'real' or one of {families} (version {version}), got {family!r}")
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if camera is not None and not isinstance(camera, ThinLens):
        raise TypeError(f"camera must be a ThinLens or None, got {type(camera).__name__}")
    return version
