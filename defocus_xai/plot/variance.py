"""Local-variance figures: the heatmap pair of one real and one fake map, and the distributions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from scipy.stats import ks_2samp

from ..analysis import local_variance
from . import style as S
from ._convert import as_map, attr, given_or_field
from ._layout import add_caption, caption_text, identify, join_title, panel_height

__all__ = ["variance_pair", "variance_distributions"]


def variance_pair(
    *,
    real_map,
    fake_map,
    window: int = 15,
    precomputed: bool = False,
    normalize: bool = True,
    vmax: float | None = None,
    units: str | None = None,
    title: str | None = None,
    sample_id=None,
    family: str | None = None,
    source_id=None,
    score: float | None = None,
    caption: str | None = None,
    axes=None,
    fig=None,
):
    """Local-variance heatmaps of a real and a fake map on one shared scale.

    Parameters
    ----------
    real_map, fake_map : array-like or torch.Tensor
        Defocus maps (H, W), or their local variance when ``precomputed=True``.
    window : int
        Side of the square window (15 in the paper).
    precomputed : bool
        The inputs already are local-variance maps.
    normalize : bool
        Min-max normalize each map to [0, 1] before computing the variance (as the paper does);
        computed with :func:`defocus_xai.analysis.local_variance` (reflect border).
    vmax : float, optional
        Upper end of the shared scale (lower end 0); default the larger maximum of the two.
    units : str, optional
        Unit of the variance on the colour bar; default ``"normalized defocus$^2$"`` when the maps are
        normalized here, else ``"map units$^2$"`` (give the unit of precomputed maps).
    title : str, optional
    sample_id, family, source_id, score : optional
        The fake shown (its real shares the source) (index or id, family, source id, detector score), named in the title.
    caption : str, optional
        Text under the figure.
    axes : sequence of 2 Axes, optional
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        Two image axes (titles give each panel's mean local variance) and one shared colorbar.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = variance_pair(real_map=rng.random((32, 32)), fake_map=rng.random((32, 32)), window=5)
    >>> len(fig.axes)
    3
    """
    r = as_map(real_map, name="real_map")
    f = as_map(fake_map, name="fake_map")
    if not precomputed:
        r = local_variance(r, window=window, normalize=normalize)
        f = local_variance(f, window=window, normalize=normalize)
    hi = float(max(np.nanmax(r), np.nanmax(f))) if vmax is None else float(vmax)
    if hi <= 0:
        hi = 1e-12
    with S.house_style():
        h, w = r.shape
        fig, (a0, a1) = S._fig_axes(
            2, axes=axes, fig=fig, width="single",
            height=panel_height(h, w, 2, S.SINGLE_COLUMN, extra=0.8, cbar=0.0, suptitle=bool(title))
        )
        a0.imshow(r, cmap=S.CMAP_VARIANCE, vmin=0, vmax=hi)
        a0.set_title(f"real (mean {np.nanmean(r):.2g})")
        im = a1.imshow(f, cmap=S.CMAP_VARIANCE, vmin=0, vmax=hi)
        a1.set_title(f"fake (mean {np.nanmean(f):.2g})")
        S._image_off(a0)
        S._image_off(a1)
        if units is None:
            units = "normalized defocus$^2$" if (normalize and not precomputed) else "map units$^2$"
        what = f"local variance, {window}x{window} window" if not precomputed else "local variance"
        cb = S.add_colorbar(im, [a0, a1], f"{what} ({units})", location="bottom", shrink=0.8,
                            aspect=30)
        cb.formatter.set_powerlimits((-3, 3))
        cb.update_ticks()
        identify(fig, title, caption_text(caption), prefix="fake ", sample_id=sample_id, family=family,
                 source_id=source_id, score=score)
    return fig


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "p = n/a"
    if p == 0:
        return "p < 1e-300"
    return f"p = {p:.2g}" if p >= 1e-3 else f"p = {p:.1e}"


def _values(result, real_values, fake_values) -> tuple[np.ndarray, np.ndarray]:
    """Per-image values of both classes (NaN kept, so ``families`` stay aligned), from the arrays or the result."""
    rv = given_or_field(real_values, result, "values_real", name="real_values")
    fv = given_or_field(fake_values, result, "values_fake", name="fake_values")
    if rv is None or fv is None:
        raise ValueError("variance_distributions needs result= (with per-image values) or real_values and fake_values")
    if not np.isfinite(rv).any() or not np.isfinite(fv).any():
        raise ValueError(f"need at least one finite value per class, got {int(np.isfinite(rv).sum())} real and "
                         f"{int(np.isfinite(fv).sum())} fake")
    return rv, fv


def _long_values(rv, fv, families) -> pd.DataFrame:
    """Long table (value, group, D): reals, then the fakes pooled or one group per family, with KS D vs real."""
    fam = np.full(fv.shape, "fake", dtype=object) if families is None else np.asarray(families).astype(str).ravel()
    if fam.shape != fv.shape:
        raise ValueError(f"families has {fam.size} entries, fake values {fv.size}")
    r = rv[np.isfinite(rv)]
    rows = [pd.DataFrame({"value": r, "group": f"real (n={r.size:,})"})]
    for name in dict.fromkeys(fam):
        v = fv[(fam == name) & np.isfinite(fv)]
        if v.size:
            d = float(ks_2samp(r, v).statistic)
            rows.append(pd.DataFrame({"value": v, "group": f"{name} (n={v.size:,}, D = {d:.2f})"}))
    return pd.concat(rows, ignore_index=True)


def _test_text(result, rv, fv) -> str:
    """The headline KS test: the result's (at its unit, frames secondary), or one computed here on images."""
    if result is None:
        ks = ks_2samp(rv[np.isfinite(rv)], fv[np.isfinite(fv)])
        return f"KS D = {ks.statistic:.3f}, {_fmt_p(ks.pvalue)} (per image, real vs all fakes)"
    unit = attr(result, "unit", default="image")
    text = f"KS D = {float(result.ks_statistic):.3f}, {_fmt_p(result.p_value)} (per {unit}"
    if unit == "group":
        text += f", {int(result.n_units_real):,} vs {int(result.n_units_fake):,} units)"
        paired = attr(result, "paired_p_value")
        if paired is not None:
            text += f"; paired Wilcoxon per shared source: {_fmt_p(paired)}"
        return text + (f"\n(secondary: frames treated as independent, D = {float(result.ks_statistic_frames):.3f}, "
                       f"{_fmt_p(result.p_value_frames)})")
    return text + ")"


def _draw(kind: str, ax, long: pd.DataFrame, palette, bins) -> None:
    common = dict(data=long, hue="group", palette=palette, ax=ax, legend=False)
    if kind == "hist":
        sns.histplot(x="value", stat="density", common_norm=False, element="step", bins=bins, alpha=0.25, **common)
        ax.set_ylabel("density")
    elif kind == "kde":
        sns.kdeplot(x="value", common_norm=False, cut=0, fill=True, alpha=0.15, **common)
        ax.set_ylabel("density")
    elif kind == "ecdf":
        sns.ecdfplot(x="value", **common)
        ax.set_ylabel("cumulative fraction")
        ax.set_ylim(0, 1.02)
    elif kind == "hviolin":  # horizontal violins: the value axis is shared with an ECDF beside them
        sns.violinplot(x="value", y="group", cut=0, inner="quart", linewidth=0.6, orient="h", **common)
        ax.set_yticks(ax.get_yticks(), [t.get_text().split(" (")[0] for t in ax.get_yticklabels()])
        ax.set_ylabel("")
    else:  # violin: one per group, quartiles inside
        sns.violinplot(y="value", x="group", cut=0, inner="quart", linewidth=0.6, **common)
        ax.set_xticks(ax.get_xticks(), [t.get_text().split(" (")[0] for t in ax.get_xticklabels()])
        ax.set_xlabel("")
    ax.ticklabel_format(axis="x" if kind != "violin" else "y", style="sci", scilimits=(-3, 4))


def variance_distributions(
    result=None,
    *,
    real_values=None,
    fake_values=None,
    families=None,
    kind: str = "both",
    bins: int | str = "auto",
    units: str = "normalized defocus$^2$",
    title: str | None = None,
    caption: str | None = None,
    axes=None,
    fig=None,
):
    """Distributions of per-image mean local variance, real vs fake (or per fake family), with the KS test.

    Parameters
    ----------
    result : VarianceTestResult, optional
        Output of :func:`defocus_xai.analysis.variance_test`; its per-image values (``values_real`` /
        ``values_fake``) are drawn and its test is the headline (at its ``unit``: per group when groups
        were given, with the frame-level test as the secondary number).
    real_values, fake_values : array-like, optional
        Per-image values, instead of (or overriding) ``result``. Without ``result`` the KS test is
        computed here with :func:`scipy.stats.ks_2samp` (per image).
    families : array-like of str, optional
        Fake family per fake value: one distribution per family (families can pull in opposite
        directions; pooling hides that). Each family's KS D against the reals is in the legend.
    kind : {"both", "violin+ecdf", "hist", "kde", "ecdf", "violin"}
        Histograms (density, shared bins), kernel densities, empirical CDFs (KS D is their largest
        vertical gap), violins, or two panels side by side: histogram and ECDF (``"both"``), or violins and
        ECDF (``"violin+ecdf"``, readable with several families).
    bins : int or str
        Histogram bins (numpy rule or count), shared by all groups.
    units : str
        Unit of the values, shown on the value axis.
    title : str, optional
        Prefix of the title (the test is always stated).
    caption : str, optional
        Text under the figure.
    axes : Axes or sequence of Axes, optional
        One axes, or two for ``"both"``.
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        The test statistics are in the title and the legend, never on the data.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = variance_distributions(real_values=rng.normal(1, 0.1, 50), fake_values=rng.normal(1.1, 0.1, 50),
    ...                              families=["no_dof", "splice"] * 25, kind="ecdf")
    >>> "KS D" in fig.get_suptitle()
    True
    """
    kinds = {"both": ("hist", "ecdf"), "violin+ecdf": ("hviolin", "ecdf"), "hist": ("hist",), "kde": ("kde",),
             "ecdf": ("ecdf",), "violin": ("violin",)}
    if kind not in kinds:
        raise ValueError(f"kind must be one of {sorted(kinds)}, got {kind!r}")
    rv, fv = _values(result, real_values, fake_values)
    long = _long_values(rv, fv, families)
    groups = list(dict.fromkeys(long["group"]))
    palette = dict(zip(groups, [S.REAL_COLOR] + ([S.FAKE_COLOR] if len(groups) == 2 else S.PALETTE[1:])))
    test = _test_text(result if real_values is None and fake_values is None else None, rv, fv)
    with S.house_style():
        n_ax = len(kinds[kind])
        fig, axs = S._fig_axes(n_ax, axes=axes, fig=fig, width="double" if n_ax == 2 else "single",
                               height=2.6 if n_ax == 2 else 2.4)
        for ax, k in zip(axs, kinds[kind]):
            _draw(k, ax, long, palette, bins)
            label = f"per-image mean local variance\n({units})"
            ax.set_ylabel(label) if k == "violin" else ax.set_xlabel(label)
            ax.grid(True, lw=0.3, alpha=0.5)
        if kind != "violin":
            handles = [Line2D([], [], color=palette[g], label=g) for g in groups]
            if n_ax == 2 and axes is None:  # below the panels: clear of the data and of the title
                fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)))
            else:
                axs[-1].legend(handles=handles, loc="best")
        fig.suptitle(join_title(title, test, fig=fig))
        add_caption(fig, caption_text(caption))
    return fig
