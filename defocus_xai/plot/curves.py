"""Line figures: activated pixels versus threshold, deletion / insertion curves."""

from __future__ import annotations

from typing import Mapping

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from . import style as S
from ._convert import attr
from ._layout import add_caption, caption_text, group_column, single_ax

__all__ = ["activation_curve", "deletion_curves"]

_BAND_COLUMNS = {"ci": ("ci_low", "ci_high"), "minmax": ("min", "max"), "iqr": ("q25", "q75")}


def _band(df: pd.DataFrame, band, stat: str, fraction: bool) -> tuple:
    """(band name, low column, high column) of the shaded band, or Nones."""
    if band == "auto":
        band = None
        if stat == "mean" and {"ci_low", "ci_high"} <= set(df.columns):
            band = "ci"
        elif {"min", "max"} <= set(df.columns):
            band = "minmax"
    if band is None or fraction:
        return band, None, None
    lo_col, hi_col = _BAND_COLUMNS.get(band, (None, None))
    if lo_col is None:
        raise ValueError(f"band must be 'auto', 'ci', 'minmax', 'iqr' or None, got {band!r}")
    if lo_col not in df.columns or hi_col not in df.columns:
        raise ValueError(f"band={band!r} needs columns {lo_col!r} and {hi_col!r}; have {list(df.columns)}")
    return band, lo_col, hi_col


def _activation_axes(ax, df: pd.DataFrame, stat: str, fraction: bool) -> None:
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("threshold t on |fake - real|")
    what = {"mean": "mean", "median": "median", "max": "max", "min": "min"}.get(stat, stat)
    n_pix = df.attrs.get("n_pixels")
    of = f" of {int(n_pix):,}" if n_pix else ""
    ax.set_ylabel("activated pixels (fraction)" if fraction else f"activated pixels{of}\n({what} per pair)")
    if not fraction:
        ax.yaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))


def activation_curve(
    df: pd.DataFrame,
    *,
    stat: str = "mean",
    band: str | None = "auto",
    group: str | None = None,
    fraction: bool = False,
    title: str | None = None,
    n: int | None = None,
    caption: str | None = None,
    ax=None,
):
    """Activated pixels versus threshold, on a reversed log x axis, one line per method / group.

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`defocus_xai.analysis.mask_activation`: columns ``threshold``, the
        statistic (``mean``, ``median``...), optionally ``min`` / ``max`` or ``q25`` / ``q75``
        and a group column (``method``, ``group`` or ``family``).
    stat : str
        Column drawn as the line.
    band : {"auto", "ci", "minmax", "iqr", None}
        Shaded band: the bootstrap CI of the mean (``ci_low`` / ``ci_high``), the range over pairs
        (``min`` / ``max``) or the inter-quartile range (``q25`` / ``q75``). A named band whose
        columns are missing raises; ``"auto"`` takes the CI when ``stat="mean"`` and the CI
        columns exist, else min-max when present, else no band. The legend says which band.
    group : str, optional
        Group column; default the first of ``method``, ``group``, ``family`` present.
    fraction : bool
        Plot ``mean_fraction`` (share of pixels) instead of counts; the band is then omitted.
    title : str, optional
    n : int, optional
        Number of fake/real pairs, stated in the caption (per-group counts come from an ``n_pairs``
        column and go into the legend).
    caption : str, optional
        Text under the figure (after the computed facts: n and what the band is).
    ax : Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        One axes: x log scale, inverted (largest threshold on the left, as in the paper).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"threshold": [0.1, 0.01, 0.001], "mean": [10, 50, 90],
    ...                    "min": [5, 40, 80], "max": [20, 60, 99], "method": "Deepfakes"})
    >>> fig = activation_curve(df)
    >>> fig.axes[0].get_xscale(), bool(fig.axes[0].xaxis_inverted())
    ('log', True)
    """
    if "threshold" not in df.columns:
        raise ValueError(f"DataFrame needs a 'threshold' column, has {list(df.columns)}")
    ycol = "mean_fraction" if fraction else stat
    if ycol not in df.columns:
        raise ValueError(f"column {ycol!r} not in DataFrame columns {list(df.columns)}")
    band, lo_col, hi_col = _band(df, band, stat, fraction)
    gcol = group_column(df, group)
    groups = [(None, df)] if gcol is None else list(df.groupby(gcol, sort=False))
    created = ax is None
    with S.house_style():
        fig, ax = single_ax(ax)
        for i, (name, g) in enumerate(groups):
            g = g.sort_values("threshold")
            c = S.PALETTE[i % len(S.PALETTE)]
            label = None if name is None else str(name)
            if "n_pairs" in g.columns and name is not None:
                label = f"{name} (n={int(g['n_pairs'].iloc[0]):,})"
            ax.plot(g["threshold"], g[ycol], "-o", color=c, label=label, zorder=3)
            if lo_col is not None:
                ax.fill_between(g["threshold"], g[lo_col], g[hi_col], color=c, alpha=0.18, lw=0, zorder=2)
        _activation_axes(ax, df, stat, fraction)
        leg_title = None
        if lo_col is not None:
            conf = float(df.attrs.get("confidence", 0.95))
            leg_title = {"ci": f"band: bootstrap {100 * conf:.0f}% CI of the mean", "minmax": "band: min-max over pairs",
                         "iqr": "band: IQR over pairs"}[band]
        if any(g is not None for g, _ in groups):
            S._legend(ax, created=created, title=leg_title, grow=len(groups) > 2)
        ax.grid(True, which="major", lw=0.3, alpha=0.5)
        if title:
            ax.set_title(title)
        legend_drawn = ax.get_legend() is not None or bool(fig.legends)
        add_caption(fig, caption_text(caption, n=n, n_label="pairs", bands=None if legend_drawn else leg_title))
    return fig


def _long_scores(x: np.ndarray, scores_by_method: Mapping[str, object]) -> tuple[pd.DataFrame, bool]:
    """Long table (method, sample, x, y) of every curve, and whether any method has per-sample rows."""
    frames, per_sample = [], False
    for name, ys in scores_by_method.items():
        y = np.atleast_2d(np.asarray(S.to_numpy(ys, name=f"scores[{name!r}]")))
        if y.ndim != 2 or y.shape[-1] != x.size:
            raise ValueError(f"scores[{name!r}] has shape {y.shape}; expected ({x.size},) or (N, {x.size})")
        per_sample |= y.shape[0] > 1
        frames.append(pd.DataFrame({"method": str(name), "sample": np.repeat(np.arange(y.shape[0]), x.size),
                                    "x": np.tile(x, y.shape[0]), "y": y.ravel()}))
    return pd.concat(frames, ignore_index=True), per_sample


def _curves(fractions, scores_by_method: Mapping[str, object], *, auc: Mapping[str, float] | None, xlabel: str,
            ylabel: str, title: str | None, ax, ylim=None, seed: int = 0, caption: str = ""):
    """Curves per method; with per-sample scores the line is the mean and the band its bootstrap 95% CI."""
    x = np.asarray(S.to_numpy(fractions, name="fractions")).ravel()
    long, per_sample = _long_scores(x, scores_by_method)
    labels = {}
    for name in scores_by_method:
        labels[str(name)] = str(name)
        if auc is not None and auc.get(name) is not None:
            labels[str(name)] += f" (AUC {float(auc[name]):.3f})"
    long["method"] = long["method"].map(labels)
    created = ax is None
    with S.house_style():
        fig, ax = single_ax(ax)
        sns.lineplot(data=long, x="x", y="y", hue="method", palette=S.PALETTE[: len(labels)], ax=ax,
                     errorbar=("ci", 95) if per_sample else None, n_boot=1000, seed=seed,
                     marker="o" if x.size <= 12 else None, markersize=3.5, markeredgewidth=0, err_kws={"lw": 0})
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(True, lw=0.3, alpha=0.5)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        S._legend(ax, created=created, ncols=1 if len(labels) > 2 else 2)
        if title:
            ax.set_title(title)
        add_caption(fig, caption)
    return fig


def _unpack_curve_result(result):
    """``(fractions, {method: scores}, {method: auc})`` from a result object or a dict of them."""
    if isinstance(result, Mapping):
        fr, scores, aucs = None, {}, {}
        for name, r in result.items():
            f = attr(r, "fractions")
            fr = f if fr is None else fr
            scores[name] = attr(r, "scores")
            aucs[name] = attr(r, "auc")
        return fr, scores, aucs
    return attr(result, "fractions"), {"": attr(result, "scores")}, {"": attr(result, "auc")}


def deletion_curves(
    fractions=None,
    scores_by_method: Mapping[str, object] | None = None,
    *,
    auc: Mapping[str, float] | None = None,
    kind: str = "deletion",
    result=None,
    ylabel: str = "detector score (fake probability)",
    title: str | None = None,
    ylim=None,
    baseline: str | None = None,
    n: int | None = None,
    caption: str | None = None,
    seed: int = 0,
    ax=None,
):
    """Deletion or insertion curves: model score as the most-attributed pixels are removed / added.

    Parameters
    ----------
    fractions : array-like, (K,)
        Fraction of pixels deleted (or inserted) at each step, in [0, 1].
    scores_by_method : dict of str to array-like
        Per method, scores (K,) or per sample (N, K); with (N, K) the line is the mean and the
        band its bootstrap 95% confidence interval over samples (seaborn, ``seed``).
    auc : dict of str to float, optional
        Area under each curve, shown in the legend.
    kind : {"deletion", "insertion"}
        Axis label; for deletion a faster drop (lower AUC) is better, for insertion a faster rise.
    result : object or dict of objects, optional
        Result object(s) with attributes ``fractions``, ``scores`` and ``auc`` (one per method
        when a dict) instead of the three arrays.
    ylabel, title : str
    ylim : (float, float), optional
        y range; give the same to the deletion and the insertion panel of one figure.
    baseline : str, optional
        What deleted pixels are replaced by (e.g. ``"blurred map"``), stated in the caption.
    n : int, optional
        Number of samples, stated in the caption (default: the rows of per-sample scores).
    caption : str, optional
        Text under the figure, after the computed facts (n, baseline, bands).
    seed : int
        Seed of the bootstrap of the bands.
    ax : Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(0, 1, 11)
    >>> fig = deletion_curves(x, {"shap": 1 - x, "random": 1 - 0.5 * x}, auc={"shap": 0.5}, baseline="zeros")
    >>> [t.get_text() for t in fig.legends[0].get_texts()]
    ['shap (AUC 0.500)', 'random']
    """
    if result is not None:
        fractions, scores_by_method, auc = _unpack_curve_result(result)
    if fractions is None or not scores_by_method:
        raise ValueError("deletion_curves needs fractions and scores_by_method (or result=)")
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    rows = [np.atleast_2d(np.asarray(S.to_numpy(v, name="scores"))).shape[0] for v in scores_by_method.values()]
    per_sample = max(rows) > 1
    n = max(rows) if n is None and per_sample else n
    better = "lower AUC is better" if kind == "deletion" else "higher AUC is better"
    text = caption_text(caption, n=n, n_label="samples", baseline=baseline,
                        bands="95% bootstrap CI of the mean over samples" if per_sample else None)
    return _curves(
        fractions,
        scores_by_method,
        auc=auc,
        xlabel=f"fraction of pixels {'deleted' if kind == 'deletion' else 'inserted'}",
        ylabel=ylabel,
        title=title if title is not None else f"{kind} curves ({better})",
        ax=ax,
        ylim=ylim,
        seed=seed,
        caption=text,
    )
