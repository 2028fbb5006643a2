"""Alignment figures: per-sample histograms behind the score, and the comparison of several models."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from . import style as S
from ._convert import attr, given_or_field
from ._layout import add_caption, caption_text, join_title, sample_label, single_ax

__all__ = ["alignment_histogram", "alignment_comparison"]


def alignment_histogram(result=None, *, hist_diff=None, hist_attr=None, bin_edges=None, overlap=None,
                        kl=None, yscale: str = "linear", title: str | None = None, sample_id=None,
                        family: str | None = None, source_id=None, score: float | None = None,
                        background: str | None = None, caption: str | None = None, ax=None):
    """Difference-weighted vs attribution-weighted histograms over defocus bins, per sample.

    Histogram A (``hist_diff``) weights each pixel's defocus bin by ``|fake - real|``; histogram B
    (``hist_attr``) by ``|attribution|``. Both are L1-normalized. Their overlap
    ``sum(min(A, B))`` is 1 when the model attends to the defocus levels where the manipulation
    changed the map; ``KL(B || A)`` is 0 then.

    Parameters
    ----------
    result : AlignmentResult, optional
        Output of :func:`defocus_xai.analysis.alignment_score` (fields ``hist_diff``,
        ``hist_attr``, ``bin_edges``, ``overlap``, ``kl``).
    hist_diff, hist_attr, bin_edges, overlap, kl : optional
        The same fields given directly (override ``result``).
    yscale : {"linear", "log"}
        A log axis shows small bins next to a dominant one (instead of a broken axis).
    title : str, optional
    sample_id, family, source_id, score : optional
        The fake shown (index or id, fake family, source id, detector score), named in the title.
    background : str, optional
        The attribution reference, stated in the caption.
    caption : str, optional
        Text under the figure.
    ax : Axes, optional
        Axes to draw into. The x axis covers the bins that hold weight in either histogram (empty ranges
        are trimmed).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> a = np.full(20, 0.05); b = np.r_[np.full(10, 0.1), np.zeros(10)]
    >>> fig = alignment_histogram(hist_diff=a, hist_attr=b, bin_edges=np.linspace(0, 1, 21),
    ...                           overlap=0.5, kl=0.69)
    >>> "overlap 0.500" in fig.axes[0].get_title()
    True
    """
    hd = given_or_field(hist_diff, result, "hist_diff")
    ha = given_or_field(hist_attr, result, "hist_attr")
    be = given_or_field(bin_edges, result, "bin_edges")
    ov = overlap if overlap is not None else attr(result, "overlap")
    kl = kl if kl is not None else attr(result, "kl")
    if hd is None or ha is None:
        raise ValueError("alignment_histogram needs result= or hist_diff and hist_attr")
    if hd.shape != ha.shape:
        raise ValueError(f"hist_diff {hd.shape} and hist_attr {ha.shape} differ in length")
    be = np.linspace(0, 1, hd.size + 1) if be is None else be
    if be.size != hd.size + 1:
        raise ValueError(f"bin_edges needs {hd.size + 1} entries, got {be.size}")
    centers = 0.5 * (be[:-1] + be[1:])
    w = np.diff(be)
    with S.house_style():
        fig, ax = single_ax(ax, aspect=0.65)
        ax.bar(centers - w / 4, hd, width=w / 2, color=S.PALETTE[2], label="|fake - real| weighted")
        ax.bar(centers + w / 4, ha, width=w / 2, color=S.PALETTE[4], label="|attribution| weighted")
        used = np.flatnonzero((hd > 1e-4) | (ha > 1e-4))
        lo, hi = (be[used[0]], be[used[-1] + 1]) if used.size else (be[0], be[-1])
        pad = 0.5 * float(np.median(w))
        ax.set_xlim(max(be[0], lo - pad), min(be[-1], hi + pad))
        ax.set_xlabel("fake defocus value (normalized bin)")
        ax.set_ylabel("share of weight")
        if yscale == "log":
            ax.set_yscale("log")
        ax.legend(loc="best")
        ax.grid(True, axis="y", lw=0.3, alpha=0.5)
        parts = []
        if ov is not None:
            parts.append(f"overlap {float(ov):.3f}")
        if kl is not None:
            parts.append(f"KL {float(kl):.3f}")
        who = sample_label(sample_id=sample_id, family=family, source_id=source_id, score=score)
        ax.set_title(join_title(title, f"fake {who}" if who else None, ", ".join(parts)))
        add_caption(fig, caption_text(caption, background=background))
    return fig


def _summary_values(summary, metric: str) -> np.ndarray:
    if isinstance(summary, pd.DataFrame):
        df = summary
    else:
        df = attr(summary, "per_sample")
    if isinstance(df, pd.DataFrame):
        if metric not in df.columns:
            raise ValueError(f"per-sample table has no column {metric!r}: {list(df.columns)}")
        return df[metric].to_numpy(dtype=float)
    return np.asarray(S.to_numpy(summary, name=metric)).ravel()


def _mean_ci(s, v: np.ndarray, metric: str) -> tuple:
    """(mean, low, high, n, bootstrap?): the summary's bootstrap CI, else a normal 95% CI of ``v``."""
    is_obj = not isinstance(s, (pd.DataFrame, np.ndarray, list, tuple))
    mean = lo = hi = None
    if is_obj and metric == "overlap":
        mean, lo, hi = attr(s, "mean_overlap"), attr(s, "ci_low"), attr(s, "ci_high")
    elif is_obj and metric == "kl":
        mean, lo, hi = attr(s, "mean_kl"), attr(s, "kl_ci_low"), attr(s, "kl_ci_high")
    if mean is not None and lo is not None and hi is not None:
        return float(mean), float(lo), float(hi), v.size, True
    mean = float(v.mean()) if v.size else np.nan
    half = 1.96 * v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
    return float(mean), float(mean - half), float(mean + half), v.size, False


_CONTROLS = {"permutation": ("permutation baseline", (0, (1, 1)), "0.1", "o"),
             "map_value": ("map-value control", (0, (4, 2)), S.PALETTE[4], "s"),
             "uniform": ("uniform control", (0, (4, 1, 1, 1)), "0.55", "^")}
_CLOSE = 0.01  # controls nearer than this would draw as one line: they go side by side, each with its marker


def _crowded(baselines: dict) -> bool:
    """Whether any model's controls lie within :data:`_CLOSE` of each other."""
    return any(len(b) > 1 and max(b.values()) - min(b.values()) < _CLOSE for b in baselines.values())


def _baseline(s, metric: str) -> dict:
    """The summary's controls of the mean overlap: permutation baseline, map value, uniform (those computed)."""
    if isinstance(s, (pd.DataFrame, np.ndarray, list, tuple)) or metric != "overlap":
        return {}
    controls = dict(attr(s, "controls", default=None) or {})
    if controls.get("permutation") is None and attr(s, "baseline_mean_overlap") is not None:
        controls["permutation"] = attr(s, "baseline_mean_overlap")
    return {k: float(controls[k]) for k in _CONTROLS if controls.get(k) is not None}


def _draw_strip(ax, names, vals, stats, baselines, seed) -> None:
    long = pd.DataFrame({"model": np.repeat(names, [vals[n].size for n in names]),
                         "value": np.concatenate([vals[n] for n in names])})
    state = np.random.get_state()  # seaborn jitters with numpy's global RNG: seed it here, give it back after
    np.random.seed(seed)
    try:
        sns.stripplot(data=long, x="model", y="value", hue="model", palette=S.PALETTE[: len(names)], order=names,
                      size=2.8, alpha=0.5, jitter=0.18, linewidth=0, legend=False, ax=ax)
    finally:
        np.random.set_state(state)
    for i, n in enumerate(names):
        m, lo, hi, _, _ = stats[n]
        ax.errorbar([i + 0.32], [m], yerr=[[m - lo], [hi - m]], fmt="D", color="0.1", ms=3.5, capsize=2.5, lw=1)
        lines = baselines.get(n, {})
        close = len(lines) > 1 and max(lines.values()) - min(lines.values()) < _CLOSE
        step = 0.72 / len(lines) if close else 0.72
        for k, (c, v) in enumerate(lines.items()):
            _, style, colour, marker = _CONTROLS[c]
            x0 = i - 0.3 + (k * step if close else 0.0)
            ax.hlines(v, x0, x0 + step, color=colour, ls=style, lw=1.2)
            if close:
                ax.plot([x0 + step / 2], [v], marker=marker, color=colour, ms=3.5, ls="")
    ax.set_xticks(range(len(names)), [f"{n}\n{stats[n][0]:.3f} [{stats[n][1]:.3f}, {stats[n][2]:.3f}]\n"
                                      f"(n={stats[n][3]})" for n in names])
    ax.set_xlim(-0.6, len(names) - 0.3)


def _draw_bars(ax, names, vals, stats, created: bool) -> None:
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        c = S.PALETTE[i % len(S.PALETTE)]
        v = vals[n]
        m, lo, hi, _, _ = stats[n]
        ax.bar(np.arange(v.size) - 0.4 + width * (i + 0.5), v, width=width, color=c,
               label=f"{n}: {m:.3f} [{lo:.3f}, {hi:.3f}]")
        ax.axhline(m, color=c, lw=0.8, ls="--")
    ax.set_xlabel("sample")
    ax.set_xlim(-0.6, max(v.size for v in vals.values()) - 0.4)
    S._legend(ax, created=created, ncols=1, title="mean [95% CI]")


def alignment_comparison(
    summaries: Mapping[str, object],
    *,
    metric: str = "overlap",
    kind: str = "strip",
    seed: int = 0,
    title: str | None = None,
    background: str | None = None,
    caption: str | None = None,
    ax=None,
):
    """Per-sample alignment of several models' attributions (e.g. defocus vs RGB), mean +- CI.

    Parameters
    ----------
    summaries : dict of str to AlignmentSummary (or DataFrame, or array)
        Output of :func:`defocus_xai.analysis.alignment_scores` per model; its ``per_sample``
        DataFrame gives the points, ``mean_overlap`` / ``ci_low`` / ``ci_high`` (or
        ``mean_kl`` / ``kl_ci_low`` / ``kl_ci_high``) the mean and its bootstrap CI, and
        ``controls`` (or ``baseline_mean_overlap``) one line per control: dotted "permutation baseline",
        dashed "map-value control", dash-dot "uniform control" (strip plot; the caption says where each CI
        lies relative to each control). For plain arrays or DataFrames a
        normal-approximation 95% CI of the mean is drawn and the title says so.
    metric : str
        Per-sample column (``overlap`` or ``kl``).
    kind : {"strip", "bars"}
        ``"strip"``: jittered points per model with the mean and its CI; ``"bars"``: one bar per
        sample, grouped by model (readable up to ~50 samples, as in the paper).
    seed : int
        Seed of the jitter.
    title : str, optional
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
    >>> rng = np.random.default_rng(0)
    >>> fig = alignment_comparison({"defocus": rng.random(20), "rgb": rng.random(20)})
    >>> len(fig.axes)
    1
    """
    if not summaries:
        raise ValueError("summaries is empty")
    if kind not in ("strip", "bars"):
        raise ValueError(f"kind must be 'strip' or 'bars', got {kind!r}")
    names = list(summaries)
    vals = {n: _summary_values(summaries[n], metric) for n in names}
    stats = {n: _mean_ci(summaries[n], vals[n][np.isfinite(vals[n])], metric) for n in names}
    baselines = {n: _baseline(summaries[n], metric) for n in names}
    created = ax is None
    with S.house_style():
        fig, ax = single_ax(ax, aspect=1.0 if kind == "strip" else 0.95)
        if kind == "strip":
            _draw_strip(ax, names, vals, stats, baselines, seed)
        else:
            _draw_bars(ax, names, vals, stats, created)
        ax.set_ylabel(metric)
        ax.set_xlabel("")
        if metric == "overlap":  # the range the data, CIs and controls use (overlap lies in [0, 1])
            used = np.concatenate([v[np.isfinite(v)] for v in vals.values()] + [np.ravel(stats[n][1:3]) for n in names]
                                  + [np.asarray(list(b.values()), dtype=float) for b in baselines.values()])
            ax.set_ylim(max(-0.02, float(np.nanmin(used)) - 0.05), min(1.02, float(np.nanmax(used)) + 0.05))
        ax.grid(True, axis="y", lw=0.3, alpha=0.5)
        any_normal = any(not s[4] for s in stats.values())
        ci_note = "mean, " + ("95% CI (normal approx.)" if any_normal else "bootstrap 95% CI")
        ax.set_title(join_title(title, f"{metric} per sample, {ci_note}"))
        if kind == "strip":
            handles = [Line2D([], [], marker="D", color="0.1", ls="", ms=3.5, label=ci_note)]
            drawn = {c for b in baselines.values() for c in b}
            mark = _crowded(baselines)
            handles += [Line2D([], [], color=colour, ls=style, lw=1.2, label=word, marker=marker if mark else None,
                               ms=3.5) for c, (word, style, colour, marker) in _CONTROLS.items() if c in drawn]
            S._legend(ax, created=created, handles=handles)
        add_caption(fig, caption_text(_reading(names, stats, baselines, caption), background=background))
    return fig


def _reading(names, stats, baselines, caption) -> str:
    """Where each model's CI lies relative to its controls (grouped: above / overlapping / below), then the caption."""
    notes = []
    for n in names:
        _, lo, hi, _, _ = stats[n]
        where: dict = {}
        for c, b in baselines.get(n, {}).items():
            w = "lies below" if hi < b else "lies above" if lo > b else "overlaps"
            where.setdefault(w, []).append(f"{_CONTROLS[c][0].split()[0]} ({b:.3f})")
        if where:
            notes.append(f"{n} CI " + " and ".join(
                f"{w} the {_series(v)} control{'s' if len(v) > 1 else ''}" for w, v in where.items()))
    text = "; ".join(notes) + ("." if notes else "")
    return f"{text} {caption}".strip() if caption else text


def _series(words: list) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
