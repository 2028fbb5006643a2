"""DefocusSynth: a physically rendered real/fake benchmark with depth-of-field ground truth.

Real samples are layered scenes photographed by a thin-lens camera; each fake family re-renders the same
scene with one manipulation of depth of field. Every sample carries its true blur (sigma, px), depth and
manipulation mask. Versions: "1.0" (Gaussian blur) and "2.0" (aperture-shaped blur, deep-focus cameras,
textures of known blur, ``face_swap``). docs/synth.md describes the model, the families and the checks.

Examples
--------
>>> from defocus_xai.data.synth import DefocusSynth, render_scene
>>> s = render_scene(size=64, family="splice", seed=3)
>>> tuple(s["sigma"].shape), s["label"]
((1, 64, 64), 1)
"""

from .camera import SIGMA_PER_COC, ThinLens
from .dataset import DefocusSynth
from .fakes import FAMILIES_V2
from .families import FAMILIES, REAL
from .psf import SIGMA_AA, Aperture
from .render import SYNTH_VERSION, SYNTH_VERSIONS, render_scene

__all__ = ["FAMILIES", "FAMILIES_V2", "REAL", "SIGMA_AA", "SIGMA_PER_COC", "SYNTH_VERSION", "SYNTH_VERSIONS",
           "Aperture", "ThinLens", "DefocusSynth", "render_scene"]
