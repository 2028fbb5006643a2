"""Attributions of defocus detectors and their batch export to the ``.npz`` store.

* :func:`attribute` -- one entry point over shap and captum methods, on the defocus map or the image;
* :func:`export_attributions` -- stream a data set to sharded, resumable, distributed ``.npz`` files;
* :func:`load_attributions` / :class:`AttributionSet` -- read a store lazily (also the reference's files);
* :func:`merge_exports` -- join the shard directories of several machines.

Examples
--------
>>> import defocus_xai.explain as dxe                                         # doctest: +SKIP
>>> attr = dxe.attribute(detector, maps, method="shap_gradient")            # doctest: +SKIP
>>> dxe.export_attributions(dataset, detector, "out/", background=10)       # doctest: +SKIP
>>> store = dxe.load_attributions("out/")                                   # doctest: +SKIP
"""

from .attribute import DEFAULT_N_SAMPLES, ENGINES, METHODS, SPACES, attribute, sample_seed
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
]
