"""Line figures: activated pixels vs threshold, deletion / insertion and localization curves,
model-randomization sanity check."""

from __future__ import annotations

from typing import Mapping

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd

from . import style as S
from ._convert import attr

__all__ = ["activation_curve", "deletion_curves", "localization_curves", "randomization_plot"]

_GROUP_COLUMNS = ("method", "group", "family")


def _group_column(df: pd.DataFrame, group: str | None) -> str | None:
    if group is not None:
        if group not in df.columns:
            raise ValueError(f"group column {group!r} not in DataFrame columns {list(df.columns)}")
        return group
    for c in _GROUP_COLUMNS:
        if c in df.columns:
            return c
    return None


def _single_ax(ax, *, width="single", aspect=0.72):
    if ax is not None:
        return ax.figure, ax
    fig, ax = S.new_figure(width=width, aspect=aspect)
    return fig, ax


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
    lo_col = hi_col = None
    band_cols = {"ci": ("ci_low", "ci_high"), "minmax": ("min", "max"), "iqr": ("q25", "q75")}
    if band == "auto":
        band = None
        if stat == "mean" and {"ci_low", "ci_high"} <= set(df.columns):
            band = "ci"
        elif {"min", "max"} <= set(df.columns):
            band = "minmax"
    if band is not None and not fraction:
        lo_col, hi_col = band_cols.get(band, (None, None))
        if lo_col is None:
            raise ValueError(f"band must be 'auto', 'ci', 'minmax', 'iqr' or None, got {band!r}")
        if lo_col not in df.columns or hi_col not in df.columns:
            raise ValueError(f"band={band!r} needs columns {lo_col!r} and {hi_col!r}; have {list(df.columns)}")
    gcol = _group_column(df, group)
    groups = [(None, df)] if gcol is None else list(df.groupby(gcol, sort=False))
    with S.house_style():
        fig, ax = _single_ax(ax)
        for i, (name, g) in enumerate(groups):
            g = g.sort_values("threshold")
            c = S.PALETTE[i % len(S.PALETTE)]
            label = None if name is None else str(name)
            if "n_pairs" in g.columns and name is not None:
                label = f"{name} (n={int(g['n_pairs'].iloc[0]):,})"
            ax.plot(g["threshold"], g[ycol], "-o", color=c, label=label, zorder=3)
            if lo_col is not None:
                ax.fill_between(g["threshold"], g[lo_col], g[hi_col], color=c, alpha=0.18, lw=0, zorder=2)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("threshold t on |fake - real|")
        what = {"mean": "mean", "median": "median", "max": "max", "min": "min"}.get(stat, stat)
        n_pix = df.attrs.get("n_pixels")
        of = f" of {int(n_pix):,}" if n_pix else ""
        ax.set_ylabel("activated pixels (fraction)" if fraction else f"activated pixels{of}\n({what} per pair)")
        if not fraction:
            ax.yaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
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
        fig, ax = _single_ax(ax)
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
    if isinstance(data, Mapping) and data and all(_is_summary(v) for v in data.values()):
        return _localization_summaries(data, metrics=metrics, ylabel=ylabel, title=title, ax=ax)
    if isinstance(data, Mapping):
        if fractions is None:
            raise ValueError("localization_curves with a dict of arrays needs fractions=")
        return _curves(
            fractions,
            data,
            auc=None,
            xlabel=xlabel or "fraction of top-attributed pixels",
            ylabel=ylabel or "overlap with ground truth (IoU)",
            title=title,
            ax=ax,
            ylim=(0, 1.02),
        )
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a LocalizationSummary, a DataFrame or a dict, got {type(data).__name__}")
    gcol = _group_column(data, group)
    groups = [(None, data)] if gcol is None else list(data.groupby(gcol, sort=False))
    created = ax is None
    with S.house_style():
        fig, ax = _single_ax(ax)
        if x is not None:
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
        else:
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
        ax.grid(True, axis="y", lw=0.3, alpha=0.5)
        if gcol is not None:
            S._legend(ax, created=created)
        if title:
            ax.set_title(title)
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
                         int(r.get("n_samples", summ.n_samples))))
        mf = summ.per_sample["mask_fraction"].mean() if "mask_fraction" in summ.per_sample else None
        if mf is not None:
            for m in ("relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game"):
                chance.setdefault(m, float(mf))
    chance.setdefault("auroc", 0.5)
    conf = float(getattr(data[names[0]], "confidence", 0.95))
    created = ax is None
    with S.house_style():
        fig, ax = _single_ax(ax)
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
    gcol = _group_column(df, group)
    groups = [(None, df)] if gcol is None else list(df.groupby(gcol, sort=False))
    # long module paths ("backbone.features.22") crowd the axis: drop the prefix every layer shares
    named = [n for n in order if n != "original"]
    prefix = ""
    if len(named) > 1:
        parts = [n.split(".") for n in named]
        k = 0
        while all(len(p) > k + 1 for p in parts) and len({p[k] for p in parts}) == 1:
            k += 1
        prefix = ".".join(parts[0][:k]) + "." if k else ""
    ticks = [n[len(prefix):] if prefix and n.startswith(prefix) else n for n in order]
    with S.house_style():
        fig, ax = _single_ax(ax, width="double" if len(order) > 8 else "single",
                             aspect=0.42 if len(order) > 8 else 0.72)
        ax.axhline(0.0, color="0.4", lw=0.6, ls="--", zorder=1)
        band_note = ""
        for i, (name, g) in enumerate(groups):
            c = S.PALETTE[i % len(S.PALETTE)]
            g = g.assign(_x=g["layer"].astype(str).map(pos)).dropna(subset=["_x"])
            st = g.groupby("_x")[metric].agg(["mean", "std", "count"]).sort_index()
            ax.plot(st.index, st["mean"], "-o", color=c, label=None if name is None else str(name), zorder=3)
            if (st["count"] > 1).any():
                half = 1.96 * st["std"].fillna(0) / np.sqrt(st["count"])
                ax.fill_between(st.index, st["mean"] - half, st["mean"] + half, color=c, alpha=0.18, lw=0)
            elif f"{metric}_std" in g.columns:  # summary rows (randomization_test): +- 1 sd over samples
                sd = g.groupby("_x")[f"{metric}_std"].mean().reindex(st.index).fillna(0)
                ax.fill_between(st.index, st["mean"] - sd, st["mean"] + sd, color=c, alpha=0.18, lw=0)
                band_note = " (band: +-1 sd over samples)"
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
            ax.legend(loc="best", title=band_note.strip(" ()") or None)
        if title:
            ax.set_title(title)
    return fig
