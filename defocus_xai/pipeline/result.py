"""The one result type of every pipeline stage, and its conversion to JSON.

A stage returns a :class:`StageResult`: numbers, figures (with captions that identify their samples)
and optionally a table; ``demo`` and ``paper_figures`` write them to files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["StageResult", "jsonable"]


def jsonable(x: Any) -> Any:
    """Numbers, arrays, data frames, paths and nested containers -> JSON values (NaN and inf -> None).

    Examples
    --------
    >>> jsonable({"a": np.float32(1.5), "b": [float("nan")], "c": np.arange(2)})
    {'a': 1.5, 'b': [None], 'c': [0, 1]}
    """
    import pandas as pd

    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return jsonable(x.to_dict(orient="records"))
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, Path):
        return str(x)
    return x


@dataclass(frozen=True)
class StageResult:
    """What one stage computed: numbers, figures with captions, and optionally a table.

    Attributes
    ----------
    name : str
        The stage (``"masks"``, ``"variance"``, ...).
    numbers : dict
        Every number of the stage (JSON-able through :meth:`to_dict`).
    figures : dict
        File stem -> ``matplotlib.figure.Figure``, in reading order.
    captions : dict
        File stem -> caption: what was computed, on which samples (index, family, source, score).
    table : pandas.DataFrame or None
        The stage's long table (activation per threshold, detection per family, ...).

    Examples
    --------
    >>> r = StageResult("variance", numbers={"ks_statistic": 0.2})
    >>> r.to_dict()["numbers"]
    {'ks_statistic': 0.2}
    """

    name: str
    numbers: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    captions: dict = field(default_factory=dict)
    table: Any = None

    def to_dict(self) -> dict:
        """Plain-Python view: numbers, figure stems, captions and the table as records."""
        return {"name": self.name, "numbers": jsonable(self.numbers), "figures": list(self.figures),
                "captions": dict(self.captions), "table": None if self.table is None else jsonable(self.table)}

    def save_figures(self, folder, *, formats: Sequence[str] = ("png", "pdf"), dpi: int = 300) -> list[Path]:
        """Write every figure as ``folder/<stem>.<format>`` and close it; return the files written.

        Examples
        --------
        >>> files = result.save_figures("figures", formats=("png",))      # doctest: +SKIP
        """
        from ..plot import style

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for stem, fig in self.figures.items():
            written.extend(style.save(fig, folder / stem, formats=formats, dpi=dpi, close=True))
        return written

    def close(self) -> None:
        """Close every figure (for callers that want the numbers only)."""
        from ..plot import style

        style.close(*self.figures.values())
