"""The ``.npz`` attribution store: plain arrays in one file or in a folder of shards, read lazily.

Torch-free (numpy only), so stores can be read and analysed without the models. The keys, the
``meta`` fields, shards, resume and the reference's legacy files are described in
``docs/npz_format.md``.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from defocus_xai.store import write_shard, load_attributions
>>> d = tempfile.mkdtemp()
>>> arrays = {"dmaps": np.zeros((2, 8, 8), np.float32), "labels": np.array([0, 1], np.int8),
...           "paths": np.array(["a.png", "b.png"])}
>>> p = write_shard(os.path.join(d, "one.npz"), arrays, meta={"note": "demo"})
>>> s = load_attributions(p)
>>> len(s), s["dmaps"].shape, s.fake()["paths"].tolist()
(2, (2, 8, 8), ['b.png'])
"""

from .atomic import OutputLocked
from .index import INDEX_NAME, read_index, rebuild_index, write_index
from .merge import merge_exports
from .npzfile import write_npz
from .reader import AttributionSet, load_attributions, load_store_arrays
from .schema import SCHEMA_VERSION, attribution_key, validate_arrays
from .shards import shard_info, shard_name, shard_range, write_shard

__all__ = [
    "load_attributions",
    "AttributionSet",
    "load_store_arrays",
    "merge_exports",
    "OutputLocked",
    "write_shard",
    "write_npz",
    "write_index",
    "read_index",
    "rebuild_index",
    "shard_info",
    "shard_name",
    "shard_range",
    "validate_arrays",
    "attribution_key",
    "SCHEMA_VERSION",
    "INDEX_NAME",
]
