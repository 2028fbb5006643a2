"""The cameras of DefocusSynth 2.0: deep-focus and shallow-focus shooting, lens and aperture draws.

Internal to :mod:`defocus_xai.data.synth`. A scene's camera draws come from their own random stream, whose
first draw is the shooting mode, so whether a seed is deep-focus is known without rendering it
(docs/synth.md, "Version 2.0: cameras").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .psf import Aperture

#: Share of version-2.0 scenes shot deep-focus (every layer's lens sigma below ``DEEP_LENS_SIGMA_MAX``).
DEEP_SHARE = 0.62

#: Largest lens sigma (px at 128 px) of a deep-focus scene: with the 0.3 px antialiasing the total stays < 0.5.
DEEP_LENS_SIGMA_MAX = 0.38

#: Log-uniform range of the most defocused layer's lens sigma (px at 128 px) of a shallow-focus scene.
BOKEH_SIGMA_RANGE = (0.75, 6.0)

#: f-number limits of version 2.0 (f/1.0 to f/32).
N_RANGE_V2 = (1.0, 32.0)

_DEEP_FOCAL_RANGE = (0.018, 0.05)  # wide and normal lenses (m), log-uniform
_BOKEH_FOCAL_RANGE = (0.035, 0.2)  # normal to telephoto lenses (m), log-uniform
_BLADES = (0, 0, 0, 5, 6, 7, 8, 9)  # 0: circular aperture


@dataclass(frozen=True)
class _CameraDraws:
    """What the camera stream of a version-2.0 scene decides: mode, focal length, blur target, aperture."""

    deep: bool
    f: float
    target_smax: float  # px of the rendered grid
    aperture: Aperture

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> "_CameraDraws":
        unit = size / 128.0
        deep = bool(rng.random() < DEEP_SHARE)  # first draw: see _is_deep_seed
        lo, hi = _DEEP_FOCAL_RANGE if deep else _BOKEH_FOCAL_RANGE
        f = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        if deep:
            target = rng.uniform(0.05, DEEP_LENS_SIGMA_MAX)
        else:
            target = float(np.exp(rng.uniform(*np.log(BOKEH_SIGMA_RANGE))))
        blades = int(_BLADES[int(rng.integers(len(_BLADES)))])
        aperture = Aperture(blades=blades, rotation=float(rng.uniform(0, 2 * np.pi)),
                            soft=float(rng.uniform(0.0, 0.3)))
        return cls(deep=deep, f=f, target_smax=float(target * unit), aperture=aperture)


def _camera_stream(seed: int) -> np.random.SeedSequence:
    """The camera draws' seed sequence of scene ``seed`` (the fourth child; 1.0 uses the first three)."""
    return np.random.SeedSequence(int(seed)).spawn(4)[3]


def _is_deep_seed(seed: int) -> bool:
    """Whether version-2.0 scene ``seed`` is shot deep-focus (its camera stream's first draw)."""
    return bool(np.random.default_rng(_camera_stream(seed)).random() < DEEP_SHARE)
