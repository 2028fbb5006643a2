"""Defocus-blur estimation: images -> sigma maps in pixels.

Public API (re-exported as ``defocus_xai.*``):

* :func:`estimate_defocus` -- functional form, returns a :class:`DefocusResult`;
* :class:`DefocusEstimator` -- the same as an ``nn.Module`` whose :meth:`~DefocusEstimator.config`
  records the recipe of its maps;
* :func:`as_image_batch`, :func:`to_gray` -- the library's image input convention.

Building blocks live in :mod:`.filters` (Gaussian derivatives, box and guided filters),
:mod:`.edges` (batched Canny), :mod:`.propagation` (normalized fill + guided filter) and
:mod:`.matting` (closed-form matting Laplacian).
"""

from .._images import as_image_batch, to_gray
from .estimator import DefocusEstimator, DefocusResult, estimate_defocus, sigma_from_ratio

__all__ = [
    "estimate_defocus",
    "DefocusEstimator",
    "DefocusResult",
    "sigma_from_ratio",
    "as_image_batch",
    "to_gray",
]
