"""Defocus-blur estimation: images -> sigma maps in pixels (``estimate_defocus``, ``DefocusEstimator``).

The method, its parameters and the reference recipe: ``docs/estimator.md`` and ``docs/reference_recipe.md``.
"""

from .config import EstimatorConfig
from .estimator import DefocusEstimator, estimate_defocus
from .ratio import sigma_from_ratio
from .result import DefocusResult

__all__ = [
    "estimate_defocus",
    "DefocusEstimator",
    "DefocusResult",
    "EstimatorConfig",
    "sigma_from_ratio",
]
