"""Localization figures: attribution against ground-truth manipulation masks, with chance levels."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from . import style as S
from ._layout import add_caption, caption_text, group_column, single_ax
from .curves import _curves

__all__ = ["localization_curves"]

_LOC_LABELS = {
    "pointing_game": "pointing\ngame",
    "relevance_mass_accuracy": "mass\naccuracy",
    "relevance_rank_accuracy": "rank\naccuracy",
    "auroc": "AUROC",
}


def _is_summary(obj) -> bool:
    return isinstance(getattr(obj, "summary", None), pd.DataFrame) and isinstance(
        getattr(obj, "per_sample", None), pd.DataFrame
    )


def _xy_curves(ax, groups, data, x, y, xlabel, ylabel) -> None:
    """``y`` against ``x`` per group: mean per ``x`` value with a normal 95% CI band."""
    if y is None or x not in data.columns or y not in data.columns:
        raise ValueError(f"x={x!r}, y={y!r} must be columns of {list(data.columns)}")
    for i, (name, g) in enumerate(groups):
        c = S.PALETTE[i % len(S.PALETTE)]
        st = g.groupby(x)[y].agg(["mean", "std", "count"]).sort_index()
        half = 1.96 * st["std"].fillna(0) / np.sqrt(st["count"].clip(lower=1))
        ax.plot(st.index, st["mean"], "-o", color=c, label=None if name is None else str(name))
        ax.fill_between(st.index, st["mean"] - half, st["mean"] + half, color=c, alpha=0.18, lw=0)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)


def _metric_points(ax, groups, data, gcol, metrics, y, ylabel) -> None:
    """Each numeric metric column per group as mean +- normal 95% CI."""
    skip = {gcol, "index", "sample", "group", "label", "labels", "path", "paths", "source_id",
            "family", "mask_fraction"}
    if metrics is None:
        metrics = [c for c in data.columns if c not in skip and pd.api.types.is_numeric_dtype(data[c])]
    metrics = list(metrics) if y is None else [y]
    if not metrics:
        raise ValueError(f"no numeric metric columns in {list(data.columns)}")
    rows = []
    for name, g in groups:
        vals = g[metrics].astype(float)
        n = vals.count().to_numpy().clip(min=1)
        half = 1.96 * vals.std(ddof=1).fillna(0).to_numpy() / np.sqrt(n)
        mu = vals.mean().to_numpy()
        for k, m in enumerate(metrics):
            rows.append((name, m, mu[k], mu[k] - half[k], mu[k] + half[k], int(n[k])))
    _point_plot(ax, rows, metrics, [n for n, _ in groups])
    ax.set_ylabel(ylabel or "score (mean, 95% CI)")


def localization_curves(
    data,
    *,
    x: str | None = None,
    y: str | None = None,
    group: str | None = None,
    fractions=None,
    metrics=None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    background: str | None = None,
    caption: str | None = None,
    ax=None,
):
    """Localization of attributions against ground-truth manipulation masks.

    Input forms:

    * a :class:`~defocus_xai.analysis.LocalizationSummary` (from
      :func:`defocus_xai.analysis.localization_scores`) or a dict ``{method: summary}``: each
      metric's mean with its bootstrap CI (from ``summary``), one colour per method, with chance
      levels marked (0.5 for AUROC; the mean mask fraction for the mass and rank accuracies and
      the pointing game);
    * a DataFrame with one row per sample and metric columns: with ``x`` given, ``y`` is drawn
      against ``x`` (mean per ``x`` value, normal 95% CI band), one line per ``group``; without
      ``x``, each numeric metric column is summarised per group as mean +- normal 95% CI;
    * a dict ``{method: scores}`` with ``fractions=`` (e.g. IoU of the top-k% pixels vs k),
      drawn like :func:`deletion_curves`.

    Parameters
    ----------
    data : LocalizationSummary, dict, or pandas.DataFrame
    x, y : str, optional
        Columns for the curve form of a DataFrame.
    group : str, optional
        Group column (default ``method``, ``group`` or ``family`` when present).
    fractions : array-like, optional
        x values for the dict-of-arrays form.
    metrics : sequence of str, optional
        Metrics to show (default all in the input).
    xlabel, ylabel, title : str, optional
    background : str, optional
        The attribution reference, stated in the caption.
    caption : str, optional
        Text under the figure, after the computed facts.
    ax : Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> k = np.array([0.01, 0.05, 0.1, 0.2])
    >>> fig = localization_curves({"shap": [0.1, 0.3, 0.4, 0.45]}, fractions=k)
    >>> fig.axes[0].get_xlabel()
    'fraction of top-attributed pixels'
    """
    if _is_summary(data):
        data = {"": data}
    text = caption_text(caption, background=background)
    if isinstance(data, Mapping) and data and all(_is_summary(v) for v in data.values()):
        fig = _localization_summaries(data, metrics=metrics, ylabel=ylabel, title=title, ax=ax)
        add_caption(fig, text)
        return fig
    if isinstance(data, Mapping):
        if fractions is None:
            raise ValueError("localization_curves with a dict of arrays needs fractions=")
        return _curves(fractions, data, auc=None, xlabel=xlabel or "fraction of top-attributed pixels",
                       ylabel=ylabel or "overlap with ground truth (IoU)", title=title, ax=ax, ylim=(0, 1.02),
                       caption=text)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a LocalizationSummary, a DataFrame or a dict, got {type(data).__name__}")
    gcol = group_column(data, group)
    groups = [(None, data)] if gcol is None else list(data.groupby(gcol, sort=False))
    created = ax is None
    with S.house_style():
        fig, ax = single_ax(ax)
        if x is not None:
            _xy_curves(ax, groups, data, x, y, xlabel, ylabel)
        else:
            _metric_points(ax, groups, data, gcol, metrics, y, ylabel)
        ax.grid(True, axis="y", lw=0.3, alpha=0.5)
        if gcol is not None:
            S._legend(ax, created=created)
        if title:
            ax.set_title(title)
        add_caption(fig, text)
    return fig


def _point_plot(ax, rows, metrics, names):
    """rows: (group, metric, mean, low, high, n); one colour per group, dodged per metric."""
    width = 0.7 / max(len(names), 1)
    for i, name in enumerate(names):
        c = S.PALETTE[i % len(S.PALETTE)]
        sel = [r for r in rows if r[0] == name]
        pos = np.array([metrics.index(r[1]) for r in sel]) - 0.35 + width * (i + 0.5)
        mu = np.array([r[2] for r in sel])
        err = np.array([[r[2] - r[3] for r in sel], [r[4] - r[2] for r in sel]])
        n = max(r[5] for r in sel) if sel else 0
        label = None if name in (None, "") else f"{name} (n={n})"
        ax.errorbar(pos, mu, yerr=err, fmt="o", color=c, capsize=2, lw=1, ms=3.5, label=label)
    ax.set_xticks(np.arange(len(metrics)), [_LOC_LABELS.get(m, m) for m in metrics])
    ax.set_xlim(-0.6, len(metrics) - 0.4)


def _localization_summaries(data, *, metrics, ylabel, title, ax):
    names = list(data)
    first = data[names[0]].summary
    if metrics is None:
        metrics = list(dict.fromkeys(first["metric"]))
    metrics = list(metrics)
    rows, chance = [], {}
    for name, summ in data.items():
        tab = summ.summary.set_index("metric")
        for m in metrics:
            if m not in tab.index:
                raise ValueError(f"metric {m!r} not in summary of {name!r}: {list(tab.index)}")
            r = tab.loc[m]
            rows.append((name, m, float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]),
                         int(r.get("n", summ.n))))
        mf = summ.per_sample["mask_fraction"].mean() if "mask_fraction" in summ.per_sample else None
        if mf is not None:
            for m in ("relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game"):
                chance.setdefault(m, float(mf))
    chance.setdefault("auroc", 0.5)
    conf = float(getattr(data[names[0]], "confidence", 0.95))
    created = ax is None
    with S.house_style():
        fig, ax = single_ax(ax)
        for k, m in enumerate(metrics):
            if m in chance:
                ax.hlines(chance[m], k - 0.42, k + 0.42, color="0.45", ls=(0, (1, 1)), lw=1.0, zorder=1)
        _point_plot(ax, rows, metrics, names)
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel(ylabel or f"score (mean, {100 * conf:.0f}% CI)")
        ax.grid(True, axis="y", lw=0.3, alpha=0.5)
        if len(names) > 1 or names[0] != "":
            S._legend(ax, created=created)
        base = "localization (dotted: chance level)"
        ax.set_title(f"{title}\n{base}" if title else base)
    return fig
