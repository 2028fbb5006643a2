"""The thin-lens camera of DefocusSynth and its circle-of-confusion to Gaussian-sigma convention.

See docs/synth.md ("Camera model and the sigma convention") for the derivation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SIGMA_PER_COC", "ThinLens"]

#: Factor from circle-of-confusion diameter to Gaussian sigma (second-moment match of a disc).
SIGMA_PER_COC = 0.25


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
    3.01
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
        """The parameters as a plain dict.

        Examples
        --------
        >>> ThinLens(f=0.05, N=2.0, d_f=2.0, pixel_pitch=1e-4).to_dict()["N"]
        2.0
        """
        return {"f": self.f, "N": self.N, "d_f": self.d_f, "pixel_pitch": self.pixel_pitch}
