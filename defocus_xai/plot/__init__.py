"""Publication figures in one house style (matplotlib only; no torch at import).

Every function takes numpy arrays (or torch tensors) or the library's result objects, an optional
``ax`` / ``axes`` / ``fig``, returns the :class:`matplotlib.figure.Figure` and never calls
``plt.show()``. The style (:mod:`defocus_xai.plot.style`) is applied per figure with an
``rc_context``; global ``rcParams`` are left untouched. :func:`paper_figures` writes the whole set
from an attribution store.

Examples
--------
>>> import numpy as np
>>> from defocus_xai import plot
>>> fig = plot.variance_pair(np.random.rand(32, 32), np.random.rand(32, 32), window=5)
>>> fig.savefig("/tmp/variance_pair.png")  # doctest: +SKIP
"""

from . import style
from .curves import activation_curve, deletion_curves, localization_curves, randomization_plot
from .maps import attribution_overlay, defocus_triptych, mask_triptych, variance_pair
from .stats import alignment_comparison, alignment_histogram, embedding_scatter, variance_distributions
from .paper import paper_figures

__all__ = [
    "style",
    "defocus_triptych",
    "mask_triptych",
    "activation_curve",
    "variance_pair",
    "variance_distributions",
    "embedding_scatter",
    "alignment_histogram",
    "alignment_comparison",
    "attribution_overlay",
    "localization_curves",
    "deletion_curves",
    "randomization_plot",
    "paper_figures",
]
