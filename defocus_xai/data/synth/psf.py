"""Lens point-spread functions of DefocusSynth 2.0: a disc or polygonal aperture, optionally soft-edged.

One convention ties every blur of the benchmark together: ``sigma`` is the per-axis standard deviation
(square root of the second moment about the centre) of the point-spread function, in pixels. A uniform
disc of radius ``R`` has ``sigma = R / 2`` (``SIGMA_PER_RADIUS``), the circle of confusion of diameter
``c`` has ``sigma = c / 4`` (the factor ``SIGMA_PER_COC`` of version 1.0), and second moments add under
convolution, so lens, texture and antialiasing blurs combine as ``sqrt(s1^2 + s2^2)``
(docs/synth.md, "Version 2.0: point-spread functions").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["SIGMA_AA", "SIGMA_PER_RADIUS", "Aperture"]

#: Per-axis sigma of a uniform disc of radius 1 (its second moment is R^2 / 4 per axis).
SIGMA_PER_RADIUS = 0.5

#: Antialiasing blur (px) of every sharp edge drawn by version 2.0: an erf edge of this sigma.
SIGMA_AA = 0.3

_SMALL = 0.75  # below this sigma (px) the kernel is the 3x3 separable kernel of exact variance
_SS = 4  # supersampling per axis when a kernel is rasterized


@dataclass(frozen=True)
class Aperture:
    """The shape of the lens aperture, hence of its defocus point-spread function.

    Parameters
    ----------
    blades : int
        0 for a circular aperture, else the number of diaphragm blades (a regular polygon, >= 3).
    rotation : float
        Rotation of the polygon (radians).
    soft : float
        Width of a linear fall-off at the rim, as a fraction of the radius (0: a hard edge).

    Examples
    --------
    >>> k = Aperture().kernel(2.0)
    >>> k.shape, round(float(k.sum()), 6)
    ((13, 13), 1.0)
    >>> round(float(Aperture.second_moment(k)), 3)
    4.0
    """

    blades: int = 0
    rotation: float = 0.0
    soft: float = 0.0

    def __post_init__(self):
        if self.blades != 0 and self.blades < 3:
            raise ValueError(f"Aperture.blades must be 0 (a disc) or >= 3, got {self.blades!r}")
        if not 0.0 <= self.soft < 1.0:
            raise ValueError(f"Aperture.soft must be in [0, 1), got {self.soft!r}")

    def kernel(self, sigma: float, *, flip: bool = False) -> np.ndarray:
        """The normalized (2r+1, 2r+1) kernel whose per-axis second moment is ``sigma**2`` (px^2).

        Below 0.75 px the shape is invisible on the pixel grid, and the kernel is the separable
        ``[a, 1 - 2a, a]`` with ``a = sigma^2 / 2`` (exact variance). ``flip`` turns the shape by 180
        degrees (a point in front of the focus plane images the aperture upside down).

        Examples
        --------
        >>> Aperture(blades=6).kernel(0.0).shape
        (1, 1)
        """
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}")
        k = _kernel(round(float(sigma), 4), self.blades, round(self.rotation % (2 * math.pi), 4),
                    round(self.soft, 4))
        return k[::-1, ::-1] if flip else k

    @staticmethod
    def second_moment(kernel: np.ndarray) -> float:
        """Per-axis second moment (px^2) of a kernel about its centroid (mean of the two axes).

        Examples
        --------
        >>> Aperture.second_moment(np.ones((1, 1)))
        0.0
        """
        k = np.asarray(kernel, np.float64)
        k = k / k.sum()
        h, w = k.shape
        y, x = np.mgrid[:h, :w]
        my, mx = (k * y).sum(), (k * x).sum()
        return float(0.5 * ((k * (y - my) ** 2).sum() + (k * (x - mx) ** 2).sum()))


def _shape(blades: int, rotation: float, soft: float, radius: float, m: int) -> np.ndarray:
    """Supersampled coverage of the aperture of circumradius ``radius`` on a (2m+1)^2 grid."""
    off = (np.arange(_SS) + 0.5) / _SS - 0.5
    c = (np.arange(-m, m + 1)[:, None] + off[None, :]).ravel()
    X, Y = np.meshgrid(c, c)
    if blades == 0:
        sd = np.hypot(X, Y) - radius
    else:
        ang = rotation + 2 * np.pi * np.arange(blades) / blades
        apothem = radius * math.cos(math.pi / blades)
        sd = X * math.cos(ang[0]) + Y * math.sin(ang[0])
        for a in ang[1:]:
            np.maximum(sd, X * math.cos(a) + Y * math.sin(a), out=sd)
        sd -= apothem
    cov = np.clip(0.5 - sd / (soft * radius), 0, 1) if soft > 0 else (sd <= 0).astype(np.float64)
    n = 2 * m + 1
    return cov.reshape(n, _SS, n, _SS).mean(axis=(1, 3))


def _convolve_same(k: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Full 2-D convolution of a kernel with a 3x3 kernel (the result is 2 pixels wider)."""
    n = k.shape[0]
    out = np.zeros((n + 2, n + 2))
    for i in range(3):
        for j in range(3):
            out[i:i + n, j:j + n] += small[i, j] * k
    return out


@lru_cache(maxsize=None)
def _unit_moment(blades: int, soft: float) -> float:
    """Per-axis second moment of the continuous aperture of circumradius 1 (fine rasterization)."""
    r = 48.0
    return Aperture.second_moment(_shape(blades, 0.0, soft, r, int(r * (1 + soft)) + 2)) / (r * r)


@lru_cache(maxsize=4096)
def _kernel(sigma: float, blades: int, rotation: float, soft: float) -> np.ndarray:
    if sigma <= 1e-6:
        return np.ones((1, 1), np.float32)
    if sigma < _SMALL:
        a = sigma * sigma / 2
        k1 = np.array([a, 1 - 2 * a, a])
        return np.outer(k1, k1).astype(np.float32)
    # the continuous shape's moment scales as radius^2, and rasterizing (averaging over the pixel) adds
    # about 1/12 px^2; start just above sigma^2, rescale if needed, remove the rest with a centre delta
    radius = 1.005 * math.sqrt(max(sigma * sigma - 1 / 12, 0.25) / _unit_moment(blades, round(soft, 2)))
    for _ in range(4):
        m = int(math.ceil(radius * (1 + soft / 2))) + 2
        k = _shape(blades, rotation, soft, radius, m)
        k /= k.sum()
        var = Aperture.second_moment(k)
        if sigma * sigma <= var < 1.05 * sigma * sigma:
            break
        radius *= 1.01 * sigma / math.sqrt(var)
    if var > sigma * sigma:
        k *= sigma * sigma / var
        k[m, m] += 1 - k.sum()
    elif var < sigma * sigma:  # variances add under convolution: top up with the small exact kernel
        a = (sigma * sigma - var) / 2
        k = _convolve_same(k, np.outer([a, 1 - 2 * a, a], [a, 1 - 2 * a, a]))
    k = k.astype(np.float32)
    k.setflags(write=False)
    return k
