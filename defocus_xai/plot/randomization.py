"""The model-randomization sanity check: similarity of attributions to the original, per layer."""

from __future__ import annotations

import pandas as pd
import seaborn as sns

from . import style as S
from ._layout import add_caption, caption_text, group_column, single_ax

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


def _draw_group(ax, g: pd.DataFrame, pos: dict, metric: str, color, label, seed: int) -> tuple[str | None, float]:
    """One line with its band; returns (what the band is, lowest value drawn)."""
    g = g.assign(_x=g["layer"].astype(str).map(pos)).dropna(subset=["_x"])
    per_sample = bool((g.groupby("_x")[metric].count() > 1).any())
    if per_sample:  # several rows per layer: mean with a bootstrap 95% CI over samples
        sns.lineplot(data=g, x="_x", y=metric, ax=ax, color=color, label=label, marker="o", markeredgewidth=0,
                     errorbar=("ci", 95), n_boot=1000, seed=seed, err_kws={"lw": 0}, zorder=3)
        low = min(float(c.get_paths()[0].vertices[:, 1].min()) for c in ax.collections) if ax.collections else 0.0
        return "95% bootstrap CI over samples", min(low, float(g[metric].min()))
    st = g.groupby("_x")[metric].mean().sort_index()
    ax.plot(st.index, st.to_numpy(), "-o", color=color, label=label, zorder=3, markeredgewidth=0)
    if f"{metric}_std" in g.columns:  # summary rows (randomization_test): +- 1 sd over samples
        sd = g.groupby("_x")[f"{metric}_std"].mean().reindex(st.index).fillna(0)
        ax.fill_between(st.index, st - sd, st + sd, color=color, alpha=0.18, lw=0)
        return "+-1 sd over samples", float((st - sd).min())
    return None, float(st.min())


def randomization_plot(
    df: pd.DataFrame,
    *,
    metric: str = "spearman",
    group: str | None = None,
    layer_order=None,
    title: str | None = None,
    n: int | None = None,
    background: str | None = None,
    caption: str | None = None,
    seed: int = 0,
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
        e.g. ``per_sample=True``, are averaged and drawn with a bootstrap 95% CI band (seaborn); one
        row with a ``<metric>_std`` column gets a +-1 sd band. The caption says which.
    metric : str
        Column to plot.
    group : str, optional
        Group column (default ``method`` when present).
    layer_order : sequence of str, optional
        Order of the x axis (default: order of first appearance).
    title : str, optional
    n : int, optional
        Number of samples the similarities are computed on, stated in the caption.
    background : str, optional
        The attribution reference (e.g. ``"10 real training maps"``), stated in the caption.
    caption : str, optional
        Text under the figure, after the computed facts.
    seed : int
        Seed of the bootstrap bands.
    ax : Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        One axes with a zero line; y from 0 to 1 when nothing drawn goes below 0, else from -1 to 1.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"layer": ["logits", "block12", "block1"] * 2,
    ...                    "spearman": [0.9, 0.2, 0.0, 0.95, 0.9, 0.85],
    ...                    "method": ["shap"] * 3 + ["edge"] * 3})
    >>> fig = randomization_plot(df)
    >>> tuple(float(v) for v in fig.axes[0].get_ylim())
    (0.0, 1.05)
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
    created = ax is None
    with S.house_style():
        fig, ax = single_ax(ax, width="double" if len(order) > 8 else "single",
                            aspect=0.42 if len(order) > 8 else 0.72)
        ax.axhline(0.0, color="0.4", lw=0.6, ls="--", zorder=1)
        bands, low = set(), 0.0
        for i, (name, g) in enumerate(groups):
            label = None if name is None else str(name)
            band, lo = _draw_group(ax, g, pos, metric, S.PALETTE[i % len(S.PALETTE)], label, seed)
            bands.add(band)
            low = min(low, lo)
        ax.set_ylim(0.0 if low >= 0 else -1.05, 1.05)
        ax.set_xticks(range(len(order)), ticks, rotation=45 if len(order) > 3 else 0,
                      ha="right" if len(order) > 3 else "center", rotation_mode="anchor")
        ax.set_xlabel("randomized up to layer (from the head down)"
                      + (f"; layer names without the prefix '{prefix}'" if prefix else ""))
        ylab = {"spearman": "Spearman rank corr.", "spearman_abs": "Spearman corr. of |a|",
                "ssim": "SSIM"}.get(metric, metric)
        ax.set_ylabel(f"{ylab}\nwith original")
        ax.grid(True, axis="y", lw=0.3, alpha=0.5)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        if gcol is not None:
            S._legend(ax, created=created)
        if title:
            ax.set_title(title)
        band_text = "; ".join(sorted(b for b in bands if b)) or None
        add_caption(fig, caption_text(caption, n=n, n_label="samples", background=background, bands=band_text))
    return fig
