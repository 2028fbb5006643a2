"""Line figures: activated pixels versus threshold, deletion / insertion curves."""

from __future__ import annotations

from typing import Mapping

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd

from . import style as S
from ._convert import attr
from ._layout import group_column, single_ax

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
        if any(n is not None for n, _ in groups):
            leg_title = None
            if lo_col is not None:
                conf = float(df.attrs.get("confidence", 0.95))
                leg_title = {"ci": f"band: {100 * conf:.0f}% CI of the mean", "minmax": "band: min-max over pairs",
                             "iqr": "band: IQR over pairs"}[band]
            ax.legend(title=leg_title, loc="best")
        ax.grid(True, which="major", lw=0.3, alpha=0.5)
        if title:
            ax.set_title(title)
    return fig


def _curves(
    fractions,
    scores_by_method: Mapping[str, object],
    *,
    auc: Mapping[str, float] | None,
    xlabel: str,
    ylabel: str,
    title: str | None,
    ax,
    ylim=None,
):
    x = np.asarray(S.to_numpy(fractions, name="fractions")).ravel()
    with S.house_style():
        fig, ax = single_ax(ax)
        for i, (name, ys) in enumerate(scores_by_method.items()):
            y = np.asarray(S.to_numpy(ys, name=f"scores[{name!r}]"))
            c = S.PALETTE[i % len(S.PALETTE)]
            if y.ndim == 2:  # (n_samples, n_fractions): mean +- standard error
                n = y.shape[0]
                mu = np.nanmean(y, axis=0)
                se = np.nanstd(y, axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mu)
                ax.fill_between(x, mu - 1.96 * se, mu + 1.96 * se, color=c, alpha=0.18, lw=0)
                y = mu
            if y.shape != x.shape:
                raise ValueError(f"scores[{name!r}] has {y.shape[-1]} points, fractions has {x.size}")
            label = str(name)
            if auc is not None and name in auc and auc[name] is not None:
                label += f" (AUC {float(auc[name]):.3f})"
            ax.plot(x, y, "-", color=c, label=label, marker="o" if x.size <= 12 else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(True, lw=0.3, alpha=0.5)
        ax.legend(loc="best")
        if title:
            ax.set_title(title)
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
    ax=None,
):
    """Deletion or insertion curves: model score as the most-attributed pixels are removed / added.

    Parameters
    ----------
    fractions : array-like, (K,)
        Fraction of pixels deleted (or inserted) at each step, in [0, 1].
    scores_by_method : dict of str to array-like
        Per method, scores (K,) or per sample (N, K); with (N, K) the line is the mean and the
        band its 95% confidence interval (normal approximation, +-1.96 standard errors).
    auc : dict of str to float, optional
        Area under each curve, shown in the legend.
    kind : {"deletion", "insertion"}
        Axis label; for deletion a faster drop (lower AUC) is better, for insertion a faster rise.
    result : object or dict of objects, optional
        Result object(s) with attributes ``fractions``, ``scores`` and ``auc`` (one per method
        when a dict) instead of the three arrays.
    ylabel, title : str
    ax : Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(0, 1, 11)
    >>> fig = deletion_curves(x, {"shap": 1 - x, "random": 1 - 0.5 * x}, auc={"shap": 0.5})
    >>> len(fig.axes[0].lines)
    2
    """
    if result is not None:
        fractions, scores_by_method, auc = _unpack_curve_result(result)
    if fractions is None or not scores_by_method:
        raise ValueError("deletion_curves needs fractions and scores_by_method (or result=)")
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    better = "lower AUC is better" if kind == "deletion" else "higher AUC is better"
    return _curves(
        fractions,
        scores_by_method,
        auc=auc,
        xlabel=f"fraction of pixels {'deleted' if kind == 'deletion' else 'inserted'}",
        ylabel=ylabel,
        title=title if title is not None else f"{kind} curves ({better})",
        ax=ax,
    )
