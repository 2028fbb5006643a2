"""The families of DefocusSynth 2.0: the version 1.0 manipulations through the lens model, and ``face_swap``.

Internal to :mod:`defocus_xai.data.synth`. Every family renders the same scene with the same draws and ends
in the same sensor as the real image, except ``face_swap``, which carries a processing history of its own:
the camera's frame (noise, JPEG) receives a face generated at a lower resolution with another blur, blended
with a soft mask, and the result is compressed again (docs/synth.md, "Version 2.0: families").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from .families import FAMILIES, REAL, _FakeDraws, _generator_smoothing, _head_index, _permuted_sigmas, _splice_sigma
from .layers import _Scene
from .optics import _render_lens, _total_sigma, _truth_v2
from .psf import SIGMA_AA, Aperture
from .sensor import _store
from .textures import _resize

#: The fake families of version 2.0.
FAMILIES_V2 = FAMILIES + ("face_swap",)

#: Families whose manipulation needs visible depth of field: version 2.0 renders them on shallow-focus scenes.
NEEDS_DOF = ("no_dof", "depth_inconsistent")

#: ``face_swap``: the generated face's resolution factor and its own (source) lens sigma range (px at 128).
SWAP_SCALE_RANGE = (1.5, 3.0)
SWAP_SIGMA_RANGE = (0.0, 2.0)


@dataclass
class _SwapDraws:
    """The ``face_swap`` parameters of a scene (drawn after the version 1.0 manipulation draws)."""

    scale: float  # the face is generated at 1 / scale of the frame's resolution
    src_sigma: float  # its own lens blur (px of the frame)
    feather: float  # width (px) of the mask's soft edge
    inset: float  # the mask starts this far (px) inside the head
    face_noise: float  # noise std of the generated face, at its own resolution
    quality: int  # JPEG quality of the second compression
    seed: int

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> "_SwapDraws":
        unit = size / 128.0
        return cls(scale=float(rng.uniform(*SWAP_SCALE_RANGE)),
                   src_sigma=float(rng.uniform(*SWAP_SIGMA_RANGE) * unit),
                   feather=float(rng.uniform(2.0, 5.0) * unit), inset=float(rng.uniform(0.0, 2.0) * unit),
                   face_noise=float(rng.uniform(0.001, 0.004)), quality=int(rng.integers(70, 96)),
                   seed=int(rng.integers(2**31)))


def _render_family_v2(family: str, scene: _Scene, lens: list, draws: _FakeDraws, swap: _SwapDraws,
                      aperture: Aperture, sensor: Callable, *, noise: bool, jpeg: bool):
    """Render ``scene`` as ``family`` through ``sensor``: ``(image, sigma, mask, depth)`` (sigma = total blur).

    ``noise`` and ``jpeg`` say whether the sensor adds noise and compresses; ``face_swap`` then adds its
    generator's noise and its second compression too.
    """
    owner, depth, sigma = _truth_v2(scene, lens)
    cache: dict = {}
    mask = np.zeros((scene.size, scene.size), np.uint8)
    if family == REAL:
        return sensor(_render_lens(scene, lens, aperture, cache)), sigma, mask, depth
    if family == "no_dof":
        img = _render_lens(scene, [0.0] * len(lens), aperture, cache)
        return sensor(img), np.full_like(sigma, SIGMA_AA), mask, depth
    if family == "generator_smoothing":
        img = _generator_smoothing(_render_lens(scene, lens, aperture, cache), draws.gen_factor)
        return sensor(img), np.sqrt(sigma**2 + (draws.gen_factor / 2) ** 2).astype(np.float32), mask, depth
    if family == "depth_inconsistent":
        sig2 = _permuted_sigmas(scene, lens, owner, draws.perms)
        return sensor(_render_lens(scene, sig2, aperture, cache)), _truth_v2(scene, sig2)[2], mask, depth
    head = _head_index(scene)
    if family == "splice":
        sig2 = list(lens)
        sig2[head] = _splice_sigma(float(lens[head]), scene.size / 128.0, draws.u_splice)
        w = np.clip(ndimage.distance_transform_edt(owner == head) / 1.5, 0, 1).astype(np.float32)
        return _blend(_render_lens(scene, lens, aperture, cache), _render_lens(scene, sig2, aperture, cache), w,
                      sigma, _total_sigma(np.float32(sig2[head])), sensor, depth)
    if family == "face_swap":
        return _face_swap(scene, lens, owner, sigma, swap, aperture, cache, sensor, depth, noise=noise, jpeg=jpeg)
    raise ValueError(f"family must be {REAL!r} or one of {FAMILIES_V2}, got {family!r}")


def _blend(base, alt, w, sigma, alt_sigma, finish, depth):
    """``base (1 - w) + alt w`` through ``finish``; sigma mixes in variance (the mixed PSF's second moment)."""
    img = base * (1 - w)[None] + alt * w[None]
    mixed = np.sqrt((1 - w) * sigma**2 + w * np.float32(alt_sigma) ** 2).astype(np.float32)
    return finish(img), mixed, (w > 0).astype(np.uint8), depth


def _face_swap(scene, lens, owner, sigma, swap: _SwapDraws, aperture, cache, sensor, depth, *, noise, jpeg):
    """A face generated at 1/scale resolution with its own blur, blended into the camera's frame."""
    head = _head_index(scene)
    frame = sensor(_render_lens(scene, lens, aperture, cache))  # the real photograph, as stored
    sig2 = list(lens)
    sig2[head] = swap.src_sigma
    face = _render_lens(scene, sig2, aperture, cache)
    rng = np.random.default_rng(swap.seed)
    face = _down_up(face, swap.scale, rng, swap.face_noise if noise else 0.0)
    d = ndimage.distance_transform_edt(owner == head)
    m = np.clip((d - swap.inset) / swap.feather, 0, 1)
    m = (m * m * (3 - 2 * m)).astype(np.float32)  # smoothstep: a soft edge, exactly 0 outside
    face_sigma = float(np.sqrt(swap.src_sigma**2 + SIGMA_AA**2 + (swap.scale / 2) ** 2))
    quality = swap.quality if jpeg else None
    return _blend(frame, face, m, sigma, face_sigma, lambda img: _store(img, quality), depth)


def _down_up(img: np.ndarray, factor: float, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Area-average down by ``factor``, add the generator's own noise there, bilinear up (sigma factor/2)."""
    from PIL import Image

    n = img.shape[-1]
    small = max(4, int(round(n / factor)))
    out = []
    for c in img:
        lo = _resize(c, small, small, resample=Image.Resampling.BOX)
        lo = lo + noise * rng.standard_normal(lo.shape).astype(np.float32)
        out.append(_resize(lo, n, n, resample=Image.Resampling.BILINEAR))
    return np.clip(np.stack(out), 0, 1).astype(np.float32)
