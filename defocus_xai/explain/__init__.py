"""Attributions of defocus detectors and their batch export to the ``.npz`` store.

* :func:`attribute` -- one entry point over shap and captum methods, on the defocus map or the image;
* :func:`export_attributions` -- stream a data set to sharded, resumable, distributed ``.npz`` files;
* :func:`load_attributions` / :class:`AttributionSet` -- read a store lazily (also the reference's files);
* :func:`merge_exports` -- join the shard directories of several machines;
* :func:`extract_features` -- pooled penultimate features of a detector, for t-SNE / PCA;
* :func:`randomization_test` -- the model-parameter randomization sanity check;
* :func:`deletion_insertion` -- deletion / insertion faithfulness curves on the defocus map.

Examples
--------
>>> import defocus_xai.explain as dxe                                         # doctest: +SKIP
>>> attr = dxe.attribute(detector, maps, method="shap_gradient")            # doctest: +SKIP
>>> dxe.export_attributions(dataset, detector, "out/", background=10)       # doctest: +SKIP
>>> store = dxe.load_attributions("out/")                                   # doctest: +SKIP
"""

from .attribute import DEFAULT_N_SAMPLES, ENGINES, METHODS, SPACES, attribute, sample_seed
from .faithfulness import CurveSet, FaithfulnessResult, deletion_insertion, make_baseline, trapezoid_auc
from .features import FEATURE_SPACES, FeatureSet, extract_features
from .sanity import randomizable_layers, randomization_test, rank_correlation, reinitialize_
from .export import attribution_key, export_attributions, merge_exports, shard_range
from .store import (
    INDEX_NAME,
    SCHEMA_VERSION,
    AttributionSet,
    load_attributions,
    read_index,
    validate_arrays,
    write_index,
    write_shard,
)

__all__ = [
    "attribute",
    "export_attributions",
    "merge_exports",
    "load_attributions",
    "AttributionSet",
    "METHODS",
    "SPACES",
    "ENGINES",
    "DEFAULT_N_SAMPLES",
    "sample_seed",
    "attribution_key",
    "shard_range",
    "write_shard",
    "write_index",
    "read_index",
    "validate_arrays",
    "SCHEMA_VERSION",
    "INDEX_NAME",
    "extract_features",
    "FeatureSet",
    "FEATURE_SPACES",
    "randomization_test",
    "randomizable_layers",
    "reinitialize_",
    "rank_correlation",
    "deletion_insertion",
    "FaithfulnessResult",
    "CurveSet",
    "make_baseline",
    "trapezoid_auc",
]
