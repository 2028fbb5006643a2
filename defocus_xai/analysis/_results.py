"""The plain-Python form of the analyses' result dataclasses (private)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd

__all__: list[str] = []


def plain_dict(result, *, optional: tuple = (), include_optional: bool = False) -> dict:
    """Fields of the dataclass ``result``: arrays as lists, DataFrames as lists of records.

    The fields named in ``optional`` (large per-sample tables or value arrays) are left out unless
    ``include_optional`` is true.
    """
    out = {}
    for f in fields(result):
        if f.name in optional and not include_optional:
            continue
        v = getattr(result, f.name)
        if isinstance(v, pd.DataFrame):
            v = v.to_dict(orient="records")
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        out[f.name] = v
    return out
