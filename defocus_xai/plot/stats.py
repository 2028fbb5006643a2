"""Statistical figures: local-variance distributions, embedding scatter, alignment histograms."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from . import style as S
from ._convert import attr

__all__ = ["variance_distributions", "embedding_scatter", "alignment_histogram", "alignment_comparison"]


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "p = n/a"
    if p == 0:
        return "p < 1e-300"
    return f"p = {p:.2g}" if p >= 1e-3 else f"p = {p:.1e}"


def _ecdf(v: np.ndarray):
    x = np.sort(v)
    return x, np.arange(1, x.size + 1) / x.size


def variance_distributions(
    result=None,
    *,
    real_values=None,
    fake_values=None,
    kind: str = "both",
    bins: int | str = "auto",
    title: str | None = None,
    axes=None,
    fig=None,
):
    """Distributions of per-image mean local variance, real vs fake, with the KS test in the title.

    Parameters
    ----------
    result : VarianceTestResult, optional
        Output of :func:`defocus_xai.analysis.variance_test`; its per-image values
        (``values_real`` / ``values_fake``), ``ks_statistic`` and ``p_value`` are shown, and the
        test on per-group means (``group_ks_statistic``, ``group_p_value``, ``n_units_*``) when
        groups were given: with dependent frames that is the p-value to read.
    real_values, fake_values : array-like, optional
        Per-image values, instead of (or overriding) ``result``. Without ``result`` the KS test is
        computed here with :func:`scipy.stats.ks_2samp`.
    kind : {"both", "hist", "ecdf"}
        Histograms (density, shared bins), empirical CDFs (the KS statistic is their largest
        vertical gap, marked), or both side by side.
    bins : int or str
        Histogram bins (numpy rule or count), shared by both classes.
    title : str, optional
        Prefix of the title (the KS numbers are always appended).
    axes : Axes or sequence of Axes, optional
        One (``"hist"``/``"ecdf"``) or two (``"both"``) axes.
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = variance_distributions(real_values=rng.normal(1, 0.1, 50),
    ...                              fake_values=rng.normal(1.1, 0.1, 50))
    >>> "KS D" in fig.get_suptitle()
    True
    """
    rv = real_values if real_values is not None else attr(result, "values_real", "real_values", "per_image_real")
    fv = fake_values if fake_values is not None else attr(result, "values_fake", "fake_values", "per_image_fake")
    if rv is None or fv is None:
        raise ValueError("variance_distributions needs result= (with per-image values) or real_values and fake_values")
    rv = np.asarray(S.to_numpy(rv, name="real_values")).ravel()
    fv = np.asarray(S.to_numpy(fv, name="fake_values")).ravel()
    rv, fv = rv[np.isfinite(rv)], fv[np.isfinite(fv)]
    if rv.size == 0 or fv.size == 0:
        raise ValueError(f"need at least one finite value per class, got {rv.size} real and {fv.size} fake")
    d = attr(result, "ks_statistic", "statistic") if (real_values is None and fake_values is None) else None
    p = attr(result, "p_value", "pvalue") if d is not None else None
    if d is None:
        from scipy.stats import ks_2samp

        ks = ks_2samp(rv, fv)
        d, p = float(ks.statistic), float(ks.pvalue)
    gd = attr(result, "group_ks_statistic") if d is not None and result is not None else None
    gp = attr(result, "group_p_value") if gd is not None else None
    nu_r = attr(result, "n_units_real") if gd is not None else None
    nu_f = attr(result, "n_units_fake") if gd is not None else None
    if kind not in ("both", "hist", "ecdf"):
        raise ValueError(f"kind must be 'both', 'hist' or 'ecdf', got {kind!r}")
    n_ax = 2 if kind == "both" else 1
    with S.house_style():
        fig, axs = S._fig_axes(n_ax, axes=axes, fig=fig, width="double" if n_ax == 2 else "single",
                               height=2.5 if n_ax == 2 else 2.6)
        i = 0
        lab_r = f"real (n={rv.size:,}, mean {rv.mean():.3g})"
        lab_f = f"fake (n={fv.size:,}, mean {fv.mean():.3g})"
        xlabel = "per-image mean local variance"
        if kind in ("both", "hist"):
            ax = axs[i]
            i += 1
            edges = np.histogram_bin_edges(np.concatenate([rv, fv]), bins=bins)
            ax.hist(rv, bins=edges, density=True, histtype="stepfilled", alpha=0.35, color=S.REAL_COLOR, lw=0)
            ax.hist(rv, bins=edges, density=True, histtype="step", color=S.REAL_COLOR, label=lab_r)
            ax.hist(fv, bins=edges, density=True, histtype="stepfilled", alpha=0.35, color=S.FAKE_COLOR, lw=0)
            ax.hist(fv, bins=edges, density=True, histtype="step", color=S.FAKE_COLOR, label=lab_f)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("density")
            ax.ticklabel_format(axis="both", style="sci", scilimits=(-3, 4))
        if kind in ("both", "ecdf"):
            ax = axs[i]
            xr, yr = _ecdf(rv)
            xf, yf = _ecdf(fv)
            ax.step(xr, yr, where="post", color=S.REAL_COLOR, label=lab_r)
            ax.step(xf, yf, where="post", color=S.FAKE_COLOR, label=lab_f)
            grid = np.sort(np.concatenate([rv, fv]))
            cr = np.searchsorted(np.sort(rv), grid, side="right") / rv.size
            cf = np.searchsorted(np.sort(fv), grid, side="right") / fv.size
            k = int(np.argmax(np.abs(cr - cf)))
            ax.vlines(grid[k], min(cr[k], cf[k]), max(cr[k], cf[k]), color="0.2", lw=1.2)
            ax.annotate(f"D = {d:.3f}", (grid[k], (cr[k] + cf[k]) / 2), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("cumulative fraction")
            ax.set_ylim(0, 1.02)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        for ax in axs:
            ax.grid(True, lw=0.3, alpha=0.5)
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=S.REAL_COLOR, label=lab_r), Line2D([], [], color=S.FAKE_COLOR, label=lab_f)]
        from matplotlib.layout_engine import ConstrainedLayoutEngine

        if axes is None and isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
            fig.legend(handles=handles, loc="outside lower center", ncols=2)
        else:
            axs[-1].legend(handles=handles, loc="best")
        ks_text = f"KS D = {d:.3f}, {_fmt_p(p)} (per image)"
        if gd is not None:
            units = f", {int(nu_r):,} vs {int(nu_f):,} units" if nu_r is not None and nu_f is not None else ""
            ks_text += f"; per group D = {float(gd):.3f}, {_fmt_p(gp)}{units}"
        fig.suptitle(f"{title}: {ks_text}" if title else ks_text)
    return fig


def embedding_scatter(
    embedding,
    labels,
    *,
    separability=None,
    families=None,
    method: str = "t-SNE",
    max_points: int | None = 5000,
    seed: int = 0,
    title: str | None = None,
    ax=None,
):
    """2-D embedding (t-SNE / PCA / UMAP) of features, real vs fake or per fake family.

    Parameters
    ----------
    embedding : array-like, (N, 2)
        Output of :func:`defocus_xai.analysis.embed`.
    labels : array-like, (N,)
        0 = real, 1 = fake.
    separability : Separability or dict, optional
        Output of :func:`defocus_xai.analysis.separability`; ``silhouette`` and ``knn_accuracy``
        are shown in the title (numbers computed on the features or the embedding, as the
        analysis states; this function only displays them).
    families : array-like of str, (N,), optional
        Fake family per sample: fakes are coloured per family, reals stay one colour.
    method : str
        Name of the embedding for the axis labels.
    max_points : int or None
        Draw at most this many points (a seeded random subset, for readable PDFs); ``None`` all.
    seed : int
        Seed of that subset.
    title : str, optional
    ax : Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = embedding_scatter(rng.normal(size=(40, 2)), np.repeat([0, 1], 20),
    ...                         separability={"silhouette": 0.12, "knn_accuracy": 0.7})
    >>> "silhouette 0.12" in fig.axes[0].get_title()
    True
    """
    e = np.asarray(S.to_numpy(embedding, name="embedding"))
    y = np.asarray(S.to_numpy(labels, name="labels", dtype=None)).ravel()
    if e.ndim != 2 or e.shape[1] != 2:
        raise ValueError(f"embedding must have shape (N, 2), got {e.shape}")
    if y.shape[0] != e.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} entries, embedding {e.shape[0]} rows")
    fam = None if families is None else np.asarray(families).astype(str).ravel()
    if fam is not None and fam.shape[0] != e.shape[0]:
        raise ValueError(f"families has {fam.shape[0]} entries, embedding {e.shape[0]} rows")
    idx = np.arange(e.shape[0])
    if max_points is not None and e.shape[0] > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(e.shape[0], max_points, replace=False))
    yb = y.astype(int) == 1
    groups = [("real", (~yb), S.REAL_COLOR)]
    if fam is None:
        groups.append(("fake", yb, S.FAKE_COLOR))
    else:
        fam_names = list(dict.fromkeys(fam[yb]))
        pal = [c for c in S.PALETTE if c != S.REAL_COLOR]
        for k, name in enumerate(fam_names):
            groups.append((name, yb & (fam == name), pal[k % len(pal)]))
    parts = [method]
    sil = attr(separability, "silhouette")
    knn = attr(separability, "knn_accuracy")
    if sil is not None:
        parts.append(f"silhouette {float(sil):.2f}")
    if knn is not None:
        chance = attr(separability, "chance_accuracy")
        parts.append(f"kNN accuracy {float(knn):.2f}" + (f" (chance {float(chance):.2f})" if chance is not None else ""))
    with S.house_style():
        fig, ax = (ax.figure, ax) if ax is not None else S.new_figure(width="single", aspect=0.9)
        ms = 6 if idx.size > 1000 else 10
        for name, m, c in groups:
            sel = idx[m[idx]]
            ax.scatter(e[sel, 0], e[sel, 1], s=ms, c=c, alpha=0.7, lw=0, label=f"{name} (n={int(m.sum()):,})",
                       rasterized=idx.size > 500)
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", markerscale=2, handletextpad=0.3)
        t = " | ".join(parts)
        ax.set_title(f"{title}\n{t}" if title else t)
    return fig


def alignment_histogram(result=None, *, hist_diff=None, hist_attr=None, bin_edges=None, overlap=None,
                        kl=None, yscale: str = "linear", title: str | None = None, ax=None):
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
    ax : Axes, optional

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
    hd = hist_diff if hist_diff is not None else attr(result, "hist_diff")
    ha = hist_attr if hist_attr is not None else attr(result, "hist_attr")
    be = bin_edges if bin_edges is not None else attr(result, "bin_edges")
    ov = overlap if overlap is not None else attr(result, "overlap")
    kl = kl if kl is not None else attr(result, "kl")
    if hd is None or ha is None:
        raise ValueError("alignment_histogram needs result= or hist_diff and hist_attr")
    hd = np.asarray(S.to_numpy(hd, name="hist_diff")).ravel()
    ha = np.asarray(S.to_numpy(ha, name="hist_attr")).ravel()
    if hd.shape != ha.shape:
        raise ValueError(f"hist_diff {hd.shape} and hist_attr {ha.shape} differ in length")
    be = np.linspace(0, 1, hd.size + 1) if be is None else np.asarray(S.to_numpy(be, name="bin_edges")).ravel()
    if be.size != hd.size + 1:
        raise ValueError(f"bin_edges needs {hd.size + 1} entries, got {be.size}")
    centers = 0.5 * (be[:-1] + be[1:])
    w = np.diff(be)
    with S.house_style():
        fig, ax = (ax.figure, ax) if ax is not None else S.new_figure(width="single", aspect=0.65)
        ax.bar(centers - w / 4, hd, width=w / 2, color=S.OKABE_ITO["bluishgreen"], label="|fake - real| weighted")
        ax.bar(centers + w / 4, ha, width=w / 2, color=S.OKABE_ITO["reddishpurple"], label="|attribution| weighted")
        ax.set_xlim(be[0], be[-1])
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
        t = ", ".join(parts)
        ax.set_title(f"{title}\n{t}" if title and t else (title or t))
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


def alignment_comparison(
    summaries: Mapping[str, object],
    *,
    metric: str = "overlap",
    kind: str = "strip",
    seed: int = 0,
    title: str | None = None,
    ax=None,
):
    """Per-sample alignment of several models' attributions (e.g. defocus vs RGB), mean +- CI.

    Parameters
    ----------
    summaries : dict of str to AlignmentSummary (or DataFrame, or array)
        Output of :func:`defocus_xai.analysis.alignment_scores` per model; its ``per_sample``
        DataFrame gives the points, ``mean_overlap`` / ``ci_low`` / ``ci_high`` (or
        ``mean_kl`` / ``kl_ci_low`` / ``kl_ci_high``) the mean and its bootstrap CI, and
        ``baseline_mean_overlap`` (when computed) a dotted "chance" line (strip plot). For plain arrays or
        DataFrames a normal-approximation 95% CI of the mean is drawn and the title says so.
    metric : str
        Per-sample column (``overlap`` or ``kl``).
    kind : {"strip", "bars"}
        ``"strip"``: jittered points per model with the mean and its CI; ``"bars"``: one bar per
        sample, grouped by model (readable up to ~50 samples, as in the paper).
    seed : int
        Seed of the jitter.
    title : str, optional
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
    names = list(summaries)
    vals = {n: _summary_values(summaries[n], metric) for n in names}
    stats, baselines = {}, {}
    for n in names:
        v = vals[n][np.isfinite(vals[n])]
        s = summaries[n]
        is_obj = not isinstance(s, (pd.DataFrame, np.ndarray, list, tuple))
        mean = lo = hi = None
        if is_obj and metric == "overlap":
            mean, lo, hi = attr(s, "mean_overlap"), attr(s, "ci_low"), attr(s, "ci_high")
        elif is_obj and metric == "kl":
            mean, lo, hi = attr(s, "mean_kl"), attr(s, "kl_ci_low"), attr(s, "kl_ci_high")
        boot = True
        if mean is None or lo is None or hi is None:
            mean = float(v.mean()) if v.size else np.nan
            half = 1.96 * v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
            lo, hi, boot = mean - half, mean + half, False
        stats[n] = (float(mean), float(lo), float(hi), v.size, boot)
        if is_obj and metric == "overlap" and attr(s, "baseline_mean_overlap") is not None:
            baselines[n] = (float(attr(s, "baseline_mean_overlap")), attr(s, "p_value"))
    rng = np.random.default_rng(seed)
    created = ax is None
    with S.house_style():
        fig, ax = (ax.figure, ax) if ax is not None else S.new_figure(
            width="single", aspect=0.7 if kind == "strip" else 0.95)
        if kind == "strip":
            for i, n in enumerate(names):
                c = S.PALETTE[i % len(S.PALETTE)]
                v = vals[n]
                x = i + rng.uniform(-0.18, 0.18, v.size)
                ax.scatter(x, v, s=8, color=c, alpha=0.5, lw=0)
                m, lo, hi, k, _ = stats[n]
                ax.errorbar([i + 0.32], [m], yerr=[[m - lo], [hi - m]], fmt="D", color="0.1", ms=3.5, capsize=2.5, lw=1)
                if n in baselines:
                    ax.hlines(baselines[n][0], i - 0.25, i + 0.25, color="0.3", ls=(0, (1, 1)), lw=1.0)
                    ax.annotate("chance", (i - 0.25, baselines[n][0]), xytext=(-2, 0), textcoords="offset points",
                                ha="right", va="center", fontsize=6, color="0.3")
            ax.set_xticks(range(len(names)), [f"{n}\n{stats[n][0]:.3f} [{stats[n][1]:.3f}, {stats[n][2]:.3f}]\n(n={stats[n][3]})" for n in names])
            ax.set_xlim(-0.6, len(names) - 0.3)
            ax.set_ylabel(metric)

        elif kind == "bars":
            nmax = max(v.size for v in vals.values())
            width = 0.8 / len(names)
            for i, n in enumerate(names):
                c = S.PALETTE[i % len(S.PALETTE)]
                v = vals[n]
                m, lo, hi, k, _ = stats[n]
                ax.bar(np.arange(v.size) - 0.4 + width * (i + 0.5), v, width=width, color=c,
                       label=f"{n}: {m:.3f} [{lo:.3f}, {hi:.3f}]")
                ax.axhline(m, color=c, lw=0.8, ls="--")
            ax.set_xlabel("sample")
            ax.set_ylabel(metric)
            ax.set_xlim(-0.6, nmax - 0.4)
            S._legend(ax, created=created, ncols=1, title="mean [95% CI]")
        else:
            raise ValueError(f"kind must be 'strip' or 'bars', got {kind!r}")
        if metric == "overlap":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(True, axis="y", lw=0.3, alpha=0.5)
        any_normal = any(not s[4] for s in stats.values())
        ci_note = "mean with 95% CI" + (" (normal approx.)" if any_normal else "")
        base = f"{metric} per sample\n{ci_note}"
        ax.set_title(f"{title}\n{base}" if title else base)
    return fig
