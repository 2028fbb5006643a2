"""The model-randomization sanity check: similarity of attributions to the original, per layer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import style as S
from ._layout import group_column, single_ax

__all__ = ["randomization_plot"]


def _shared_prefix(order: list) -> str:
    """The dotted module prefix every named layer shares ("backbone.features."), or ""."""
    named = [n for n in order if n != "original"]
    if len(named) < 2:
        return ""
    parts = [n.split(".") for n in named]
    k = 0
    while all(len(p) > k + 1 for p in parts) and len({p[k] for p in parts}) == 1:
        k += 1
    return ".".join(parts[0][:k]) + "." if k else ""


def _draw_group(ax, g: pd.DataFrame, pos: dict, metric: str, color, label) -> bool:
    """One line with its band; returns whether the band is +-1 sd from summary rows."""
    g = g.assign(_x=g["layer"].astype(str).map(pos)).dropna(subset=["_x"])
    st = g.groupby("_x")[metric].agg(["mean", "std", "count"]).sort_index()
    ax.plot(st.index, st["mean"], "-o", color=color, label=label, zorder=3)
    if (st["count"] > 1).any():
        half = 1.96 * st["std"].fillna(0) / np.sqrt(st["count"])
        ax.fill_between(st.index, st["mean"] - half, st["mean"] + half, color=color, alpha=0.18, lw=0)
    elif f"{metric}_std" in g.columns:  # summary rows (randomization_test): +- 1 sd over samples
        sd = g.groupby("_x")[f"{metric}_std"].mean().reindex(st.index).fillna(0)
        ax.fill_between(st.index, st["mean"] - sd, st["mean"] + sd, color=color, alpha=0.18, lw=0)
        return True
    return False


def randomization_plot(
    df: pd.DataFrame,
    *,
    metric: str = "spearman",
    group: str | None = None,
    layer_order=None,
    title: str | None = None,
    ax=None,
):
    """Model-randomization sanity check: similarity of attributions to the original, per layer.

    Layers are randomized cumulatively from the head down (Adebayo et al. 2018); a method that
    passes drops towards 0 quickly.

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`defocus_xai.explain.sanity.randomization_test`, or any table with
        columns ``layer`` and ``metric`` (``spearman``, ``spearman_abs``, ``ssim``) and
        optionally ``method`` (one line each). Rows are in randomization order (head first,
        ``"original"`` first) unless ``layer_order`` is given. Several rows per (method, layer),
        e.g. ``per_sample=True``, are averaged and drawn with a 95% CI band; one row with a
        ``<metric>_std`` column gets a +-1 sd band.
    metric : str
        Column to plot.
    group : str, optional
        Group column (default ``method`` when present).
    layer_order : sequence of str, optional
        Order of the x axis (default: order of first appearance).
    title : str, optional
    ax : Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        One axes, y in [-1, 1] with a zero line.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"layer": ["logits", "block12", "block1"] * 2,
    ...                    "spearman": [0.9, 0.2, 0.0, 0.95, 0.9, 0.85],
    ...                    "method": ["shap"] * 3 + ["edge"] * 3})
    >>> fig = randomization_plot(df)
    >>> tuple(float(v) for v in fig.axes[0].get_ylim())
    (-1.05, 1.05)
    """
    for col in ("layer", metric):
        if col not in df.columns:
            raise ValueError(f"column {col!r} not in DataFrame columns {list(df.columns)}")
    order = list(dict.fromkeys(df["layer"].astype(str))) if layer_order is None else [str(v) for v in layer_order]
    pos = {name: i for i, name in enumerate(order)}
    gcol = group_column(df, group)
    groups = [(None, df)] if gcol is None else list(df.groupby(gcol, sort=False))
    # long module paths ("backbone.features.22") crowd the axis: drop the prefix every layer shares
    prefix = _shared_prefix(order)
    ticks = [n[len(prefix):] if prefix and n.startswith(prefix) else n for n in order]
    with S.house_style():
        fig, ax = single_ax(ax, width="double" if len(order) > 8 else "single",
                            aspect=0.42 if len(order) > 8 else 0.72)
        ax.axhline(0.0, color="0.4", lw=0.6, ls="--", zorder=1)
        sd_band = False
        for i, (name, g) in enumerate(groups):
            label = None if name is None else str(name)
            sd_band = _draw_group(ax, g, pos, metric, S.PALETTE[i % len(S.PALETTE)], label) or sd_band
        ax.set_ylim(-1.05, 1.05)
        ax.set_xticks(range(len(order)), ticks, rotation=45 if len(order) > 3 else 0,
                      ha="right" if len(order) > 3 else "center", rotation_mode="anchor")
        ax.set_xlabel("randomized up to layer (from the head down)"
                      + (f"; layer names without the prefix '{prefix}'" if prefix else ""))
        ylab = {"spearman": "Spearman rank corr.", "spearman_abs": "Spearman corr. of |a|",
                "ssim": "SSIM"}.get(metric, metric)
        ax.set_ylabel(f"{ylab}\nwith original")
        ax.grid(True, axis="y", lw=0.3, alpha=0.5)
        if gcol is not None:
            ax.legend(loc="best", title="band: +-1 sd over samples" if sd_band else None)
        if title:
            ax.set_title(title)
    return fig
