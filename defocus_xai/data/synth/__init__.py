"""DefocusSynth: a physically rendered real/fake benchmark with depth-of-field ground truth.

Real samples are layered scenes photographed by a thin-lens camera; each fake family re-renders the same
scene with one manipulation of depth of field. Every sample carries its true blur (sigma, px), depth and
manipulation mask. docs/synth.md describes the model, the families and the checks.

Examples
--------
>>> from defocus_xai.data.synth import DefocusSynth, render_scene
>>> s = render_scene(size=64, family="splice", seed=3)
>>> tuple(s["sigma"].shape), s["label"]
((1, 64, 64), 1)
"""

from .camera import SIGMA_PER_COC, ThinLens
from .dataset import DefocusSynth
from .families import FAMILIES, REAL
from .render import SYNTH_VERSION, render_scene

__all__ = ["FAMILIES", "REAL", "SIGMA_PER_COC", "SYNTH_VERSION", "ThinLens", "DefocusSynth", "render_scene"]
