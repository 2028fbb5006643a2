"""Torch-free analyses of defocus maps and attributions: numpy in; numpy, pandas and dataclasses out.

The paper's analyses (UPSTREAM.md section 4) and ours, as plain functions on arrays that work on
``.npz`` files made anywhere:

* binary difference masks: :func:`normalize_maps`, :func:`binary_mask`, :func:`pair_by_source`,
  :func:`mask_activation`;
* local variance and the real-vs-fake test: :func:`local_variance`, :func:`mean_local_variance`,
  :func:`variance_test` -> :class:`VarianceTestResult`;
* embeddings: :func:`embed`, :func:`separability` -> :class:`SeparabilityResult`;
* attribution alignment: :func:`alignment_score` -> :class:`AlignmentResult`,
  :func:`alignment_scores` -> :class:`AlignmentSummary`;
* localization against ground-truth masks: :func:`pointing_game`, :func:`relevance_mass_accuracy`,
  :func:`relevance_rank_accuracy`, :func:`attribution_auroc`, :func:`localization_scores` ->
  :class:`LocalizationSummary`;
* statistics helpers: :func:`bootstrap_mean_ci`, :func:`bootstrap_difference_ci` -> :class:`BootstrapCI`,
  :func:`cliffs_delta`, :func:`cohens_d`.

Functions never modify their inputs. Functions that sample take ``seed`` (int or
``numpy.random.Generator``) and never touch a global RNG. Samples that are not independent (frames of
one video) are declared with ``groups=``; bootstrap CIs then resample groups and results report the
number of independent units. See ``docs/analysis.md``.
"""

from ._bootstrap import BootstrapCI, bootstrap_difference_ci, bootstrap_mean_ci
from .alignment import DEFAULT_EPS, AlignmentResult, AlignmentSummary, alignment_score, alignment_scores
from .embedding import SeparabilityResult, embed, separability
from .localization import (LOCALIZATION_METRICS, LocalizationSummary, attribution_auroc, localization_scores,
                           pointing_game, relevance_mass_accuracy, relevance_rank_accuracy)
from .masks import DEFAULT_THRESHOLDS, binary_mask, mask_activation, normalize_maps, pair_by_source
from .variance import (VarianceTestResult, cliffs_delta, cohens_d, local_variance, mean_local_variance,
                       variance_test)

__all__ = [
    # masks
    "normalize_maps", "binary_mask", "pair_by_source", "mask_activation", "DEFAULT_THRESHOLDS",
    # variance
    "local_variance", "mean_local_variance", "variance_test", "VarianceTestResult", "cliffs_delta", "cohens_d",
    # embedding
    "embed", "separability", "SeparabilityResult",
    # alignment
    "alignment_score", "alignment_scores", "AlignmentResult", "AlignmentSummary", "DEFAULT_EPS",
    # localization
    "pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "attribution_auroc",
    "localization_scores", "LocalizationSummary", "LOCALIZATION_METRICS",
    # statistics
    "bootstrap_mean_ci", "bootstrap_difference_ci", "BootstrapCI",
]
