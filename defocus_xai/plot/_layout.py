"""Layout helpers shared by the plot functions (private): axes creation, panel sizes, labels."""

from __future__ import annotations

import pandas as pd

from . import style as S

__all__: list[str] = []

_GROUP_COLUMNS = ("method", "group", "family")


def group_column(df: pd.DataFrame, group: str | None) -> str | None:
    """The column that splits ``df`` into lines: ``group`` or the first of method / group / family."""
    if group is not None:
        if group not in df.columns:
            raise ValueError(f"group column {group!r} not in DataFrame columns {list(df.columns)}")
        return group
    for c in _GROUP_COLUMNS:
        if c in df.columns:
            return c
    return None


def single_ax(ax, *, width="single", aspect=0.72):
    """``(figure, ax)``: the given axes, or a new one-panel figure in the house style."""
    if ax is not None:
        return ax.figure, ax
    return S.new_figure(width=width, aspect=aspect)


def panel_height(h: int, w: int, ncols: int, width: float, extra: float = 0.3, cbar: float = 0.75,
                 suptitle: bool = False) -> float:
    """Figure height that fits ``ncols`` images of aspect h/w in ``width`` inches.

    ``cbar`` inches of the width go to a colorbar with its label; ``extra`` to the panel titles.
    """
    img_w = (width - cbar - 0.05 * ncols) / ncols
    return img_w * (h / w) + extra + (0.25 if suptitle else 0.0)


def units_label(units: str) -> str:
    """Colorbar label of a map: sigma in pixels, normalized defocus, or the string given."""
    if units == "sigma":
        return S.LABEL_SIGMA
    if units == "normalized":
        return S.LABEL_NORMALIZED
    return units
