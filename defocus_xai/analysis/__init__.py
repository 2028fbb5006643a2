"""Torch-free analyses of defocus maps and attributions: numpy in; numpy, pandas and dataclasses out.

The paper's analyses (binary masks, local variance, embeddings, alignment) and ours (localization,
region blur contrast), plus pairing and RGB reduction of store arrays. Paired sides are keyword-only (``real_maps=``,
``fake_maps=``); dependent samples are declared with ``groups=``. See docs/analysis.md.
"""

from .alignment import AlignmentResult, alignment_score
from .alignment_summary import AlignmentSummary, alignment_scores
from .embedding import SeparabilityResult, embed, separability
from .localization import (LOCALIZATION_METRICS, LocalizationSummary, attribution_auroc, localization_scores,
                           pointing_game, relevance_mass_accuracy, relevance_rank_accuracy)
from .masks import DEFAULT_THRESHOLDS, binary_mask, mask_activation, normalize_maps
from .pairs import fake_real_pairs, pair_by_source, random_attributions, reduce_rgb
from .region import RegionContrastResult, box_region, centre_region, region_contrast
from .stats import (BootstrapCI, bootstrap_difference_ci, bootstrap_mean_ci, cliffs_delta, cohens_d,
                    paired_signed_rank)
from .variance import VarianceTestResult, local_variance, mean_local_variance, variance_test

__all__ = [
    # masks
    "normalize_maps", "binary_mask", "mask_activation", "DEFAULT_THRESHOLDS",
    # pairs
    "pair_by_source", "fake_real_pairs", "reduce_rgb", "random_attributions",
    # variance
    "local_variance", "mean_local_variance", "variance_test", "VarianceTestResult",
    # embedding
    "embed", "separability", "SeparabilityResult",
    # alignment
    "alignment_score", "alignment_scores", "AlignmentResult", "AlignmentSummary",
    # region contrast
    "region_contrast", "RegionContrastResult", "centre_region", "box_region",
    # localization
    "pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "attribution_auroc",
    "localization_scores", "LocalizationSummary", "LOCALIZATION_METRICS",
    # statistics
    "bootstrap_mean_ci", "bootstrap_difference_ci", "paired_signed_rank", "BootstrapCI", "cliffs_delta",
    "cohens_d",
]
