"""Local-variance figures: the heatmap pair of one real and one fake map, and the distributions."""

from __future__ import annotations

import numpy as np
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from scipy.stats import ks_2samp

from ..analysis import local_variance
from . import style as S
from ._convert import as_map, attr
from ._layout import panel_height

__all__ = ["variance_pair", "variance_distributions"]


def variance_pair(
    *,
    real_map,
    fake_map,
    window: int = 15,
    precomputed: bool = False,
    normalize: bool = True,
    vmax: float | None = None,
    title: str | None = None,
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
    title : str, optional
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
        unit = "normalized defocus" if (normalize and not precomputed) else "map units"
        what = f"local variance, {window}x{window} window" if not precomputed else "local variance"
        cb = S.add_colorbar(im, [a0, a1], f"{what} ({unit}$^2$)", location="bottom", shrink=0.8,
                            aspect=30)
        cb.formatter.set_powerlimits((-3, 3))
        cb.update_ticks()
        if title:
            fig.suptitle(title)
    return fig


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "p = n/a"
    if p == 0:
        return "p < 1e-300"
    return f"p = {p:.2g}" if p >= 1e-3 else f"p = {p:.1e}"


def _ecdf(v: np.ndarray):
    x = np.sort(v)
    return x, np.arange(1, x.size + 1) / x.size


def _values(result, real_values, fake_values) -> tuple[np.ndarray, np.ndarray]:
    """Finite per-image values of both classes, from the arrays given or the result."""
    rv = real_values if real_values is not None else attr(result, "values_real", "real_values", "per_image_real")
    fv = fake_values if fake_values is not None else attr(result, "values_fake", "fake_values", "per_image_fake")
    if rv is None or fv is None:
        raise ValueError("variance_distributions needs result= (with per-image values) or real_values and fake_values")
    rv = np.asarray(S.to_numpy(rv, name="real_values")).ravel()
    fv = np.asarray(S.to_numpy(fv, name="fake_values")).ravel()
    rv, fv = rv[np.isfinite(rv)], fv[np.isfinite(fv)]
    if rv.size == 0 or fv.size == 0:
        raise ValueError(f"need at least one finite value per class, got {rv.size} real and {fv.size} fake")
    return rv, fv


def _ks_text(result, rv, fv, from_result: bool) -> tuple[float, str]:
    """(KS D per image, title text): the result's tests, or a KS test computed here."""
    d = attr(result, "ks_statistic", "statistic") if from_result else None
    p = attr(result, "p_value", "pvalue") if d is not None else None
    if d is None:
        ks = ks_2samp(rv, fv)
        d, p = float(ks.statistic), float(ks.pvalue)
    text = f"KS D = {d:.3f}, {_fmt_p(p)} (per image)"
    gd = attr(result, "group_ks_statistic") if result is not None else None
    if gd is not None:
        nu_r, nu_f = attr(result, "n_units_real"), attr(result, "n_units_fake")
        units = f", {int(nu_r):,} vs {int(nu_f):,} units" if nu_r is not None and nu_f is not None else ""
        text += f"; per group D = {float(gd):.3f}, {_fmt_p(attr(result, 'group_p_value'))}{units}"
    return d, text


def _draw_hist(ax, rv, fv, labels, bins) -> None:
    edges = np.histogram_bin_edges(np.concatenate([rv, fv]), bins=bins)
    for v, c, lab in ((rv, S.REAL_COLOR, labels[0]), (fv, S.FAKE_COLOR, labels[1])):
        ax.hist(v, bins=edges, density=True, histtype="stepfilled", alpha=0.35, color=c, lw=0)
        ax.hist(v, bins=edges, density=True, histtype="step", color=c, label=lab)
    ax.set_ylabel("density")
    ax.ticklabel_format(axis="both", style="sci", scilimits=(-3, 4))


def _draw_ecdf(ax, rv, fv, labels, d) -> None:
    """Both empirical CDFs, with their largest vertical gap (the KS statistic) marked."""
    for v, c, lab in ((rv, S.REAL_COLOR, labels[0]), (fv, S.FAKE_COLOR, labels[1])):
        ax.step(*_ecdf(v), where="post", color=c, label=lab)
    grid = np.sort(np.concatenate([rv, fv]))
    cr = np.searchsorted(np.sort(rv), grid, side="right") / rv.size
    cf = np.searchsorted(np.sort(fv), grid, side="right") / fv.size
    k = int(np.argmax(np.abs(cr - cf)))
    ax.vlines(grid[k], min(cr[k], cf[k]), max(cr[k], cf[k]), color="0.2", lw=1.2)
    ax.annotate(f"D = {d:.3f}", (grid[k], (cr[k] + cf[k]) / 2), xytext=(4, 0),
                textcoords="offset points", va="center", fontsize=7)
    ax.set_ylabel("cumulative fraction")
    ax.set_ylim(0, 1.02)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))


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
    if kind not in ("both", "hist", "ecdf"):
        raise ValueError(f"kind must be 'both', 'hist' or 'ecdf', got {kind!r}")
    rv, fv = _values(result, real_values, fake_values)
    d, ks_text = _ks_text(result, rv, fv, from_result=real_values is None and fake_values is None)
    n_ax = 2 if kind == "both" else 1
    with S.house_style():
        fig, axs = S._fig_axes(n_ax, axes=axes, fig=fig, width="double" if n_ax == 2 else "single",
                               height=2.5 if n_ax == 2 else 2.6)
        labels = (f"real (n={rv.size:,}, mean {rv.mean():.3g})", f"fake (n={fv.size:,}, mean {fv.mean():.3g})")
        draw = ([lambda ax: _draw_hist(ax, rv, fv, labels, bins)] if kind in ("both", "hist") else []) + (
            [lambda ax: _draw_ecdf(ax, rv, fv, labels, d)] if kind in ("both", "ecdf") else [])
        for ax, fn in zip(axs, draw):
            fn(ax)
            ax.set_xlabel("per-image mean local variance")
            ax.grid(True, lw=0.3, alpha=0.5)
        handles = [Line2D([], [], color=S.REAL_COLOR, label=labels[0]),
                   Line2D([], [], color=S.FAKE_COLOR, label=labels[1])]
        if axes is None and isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
            fig.legend(handles=handles, loc="outside lower center", ncols=2)
        else:
            axs[-1].legend(handles=handles, loc="best")
        fig.suptitle(f"{title}: {ks_text}" if title else ks_text)
    return fig
