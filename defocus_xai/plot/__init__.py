"""Publication figures in one house style (matplotlib only; no torch at import).

Every function takes numpy arrays (or torch tensors) or the library's result objects, an optional
``ax`` / ``axes`` / ``fig``, returns the :class:`matplotlib.figure.Figure` and never calls
``plt.show()``. The style (:mod:`defocus_xai.plot.style`) is applied per figure with an
``rc_context``; global ``rcParams`` are left untouched. Paired maps are keyword-only
(``real_map=``, ``fake_map=``). The whole set from a store: :func:`defocus_xai.paper_figures`.

Examples
--------
>>> import numpy as np
>>> from defocus_xai import plot
>>> fig = plot.variance_pair(real_map=np.random.rand(32, 32), fake_map=np.random.rand(32, 32), window=5)
>>> fig.savefig("/tmp/variance_pair.png")  # doctest: +SKIP
"""

from . import style
from .alignment import alignment_comparison, alignment_histogram
from .attribution import attribution_overlay
from .curves import activation_curve, deletion_curves
from .embedding import embedding_scatter
from .localization import localization_curves
from .maps import defocus_triptych, mask_triptych
from .randomization import randomization_plot
from .region import region_contrast_plot
from .variance import variance_distributions, variance_pair

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
    "region_contrast_plot",
]
