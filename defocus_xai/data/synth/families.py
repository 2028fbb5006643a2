"""The fake families of DefocusSynth: each renders a real scene with one manipulation of depth of field.

Internal to :mod:`defocus_xai.data.synth` (the public names are re-exported there). Every family takes the
same scene and the same manipulation draws, so a fake differs from its real partner by the manipulation only
(docs/synth.md, "Fake families").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .composite import _render, _truth
from .layers import _Scene
from .textures import _resize

__all__ = ["REAL", "FAMILIES", "GENERATOR_FACTOR_RANGE"]

#: Family name of real samples.
REAL = "real"

#: The fake families, each a named way of breaking depth-of-field physics.
FAMILIES = ("no_dof", "splice", "depth_inconsistent", "generator_smoothing")

#: Downsampling factor range of ``"generator_smoothing"`` (sigma = factor / 2 px).
GENERATOR_FACTOR_RANGE = (2.0, 3.0)


@dataclass
class _FakeDraws:
    """The manipulation parameters of a scene, drawn in a fixed order whatever the family."""

    u_splice: float
    gen_factor: float
    perms: list

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "_FakeDraws":
        u_splice = rng.random()
        gen_factor = rng.uniform(*GENERATOR_FACTOR_RANGE)
        perms = [rng.permutation(64) for _ in range(24)]
        return cls(u_splice=u_splice, gen_factor=gen_factor, perms=perms)


def _render_family(family: str, scene: _Scene, lens_sigmas: list, draws: _FakeDraws):
    """Render ``scene`` as ``family``: ``(image (3,H,W), sigma (H,W), mask (H,W) uint8, depth (H,W))``."""
    owner, depth, sigma_true = _truth(scene, lens_sigmas)
    mask = np.zeros((scene.size, scene.size), np.uint8)
    if family == REAL:
        return _render(scene, lens_sigmas), sigma_true, mask, depth
    if family == "no_dof":
        img = _render(scene, [0.0 for _ in scene.layers])
        return img, np.zeros_like(sigma_true), mask, depth
    if family == "generator_smoothing":
        img = _generator_smoothing(_render(scene, lens_sigmas), draws.gen_factor)
        sigma = np.sqrt(sigma_true**2 + (draws.gen_factor / 2) ** 2).astype(np.float32)
        return img, sigma, mask, depth
    if family == "splice":
        img, sigma, mask = _splice(scene, lens_sigmas, owner, sigma_true, draws.u_splice)
        return img, sigma, mask, depth
    if family == "depth_inconsistent":
        sig2 = _permuted_sigmas(scene, lens_sigmas, owner, draws.perms)
        _, _, sigma = _truth(scene, sig2)
        return _render(scene, sig2), sigma, mask, depth
    raise ValueError(f"family must be {REAL!r} or one of {FAMILIES}, got {family!r}")


def _splice(scene: _Scene, lens_sigmas: list, owner, sigma_true, u_splice: float):
    """Re-render the subject's head with a blur inconsistent with its depth and paste it back (feathered)."""
    img = _render(scene, lens_sigmas)
    head = _head_index(scene)
    s_new = _splice_sigma(float(lens_sigmas[head]), scene.size / 128.0, u_splice)
    sig2 = list(lens_sigmas)
    sig2[head] = s_new
    alt = _render(scene, sig2)
    m = owner == head
    mask = m.astype(np.uint8)
    w = np.clip(ndimage.distance_transform_edt(m) / 1.5, 0, 1).astype(np.float32)  # feathered paste
    img = img * (1 - w)[None] + alt * w[None]
    sigma = np.where(m, np.float32(s_new), sigma_true).astype(np.float32)
    return img, sigma, mask


def _head_index(scene: _Scene) -> int:
    return [i for i, layer in enumerate(scene.layers) if layer.name == "subject_head"][0]


def _splice_sigma(s_head: float, unit: float, u_splice: float) -> float:
    """The spliced head's lens sigma: blurred (1.5-3.5 px) if the head was sharp, else sharper by >= 1.5 px."""
    if s_head < 1.0 * unit:  # a blurred face pasted into a sharp subject
        return (1.5 + 2.0 * u_splice) * unit
    return max(0.0, s_head - 1.5 * unit) * u_splice  # a sharper face pasted into a defocused subject


def _permuted_sigmas(scene: _Scene, lens_sigmas: list, owner, perms: list) -> list:
    """Layer blurs permuted among depth groups (objects, subject, a frontal background).

    Only groups that cover at least 2 % of the image take part (so the change is visible); the first
    permutation that moves some group's blur by at least 1 px (at 128 px) wins, else the largest change.
    """
    unit = scene.size / 128.0
    groups = sorted({layer.group for layer in scene.layers
                     if layer.alpha is not None or not isinstance(layer.depth, np.ndarray)})
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
    return [new[layer.group] if layer.group in new else s for layer, s in zip(scene.layers, lens_sigmas)]


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
