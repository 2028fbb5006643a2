"""House style for every ``defocus_xai`` figure.

One place defines what all figures share: seaborn's "ticks" style and "paper" context (scaled to 8 pt
text for a two-column paper), seaborn's colorblind palette, figure widths, perceptual colormaps and
colorbar labels with units. The style is applied with :func:`house_style` (a
:func:`matplotlib.pyplot.rc_context`), so global ``rcParams`` are never changed.

Examples
--------
>>> from defocus_xai.plot import style
>>> with style.house_style():
...     fig, ax = style.new_figure(width="single")
>>> style.close(fig)
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

__all__ = [
    "STYLE",
    "PALETTE",
    "REAL_COLOR",
    "FAKE_COLOR",
    "SINGLE_COLUMN",
    "DOUBLE_COLUMN",
    "CMAP_SIGMA",
    "CMAP_NORMALIZED",
    "CMAP_VARIANCE",
    "CMAP_ATTRIBUTION",
    "CMAP_MASK",
    "MASK_COLOR",
    "LABEL_SIGMA",
    "LABEL_NORMALIZED",
    "house_style",
    "new_figure",
    "add_colorbar",
    "to_numpy",
    "symmetric_limit",
    "get_cmap",
    "save",
    "close",
]

#: Figure widths in inches for a two-column paper (e.g. ACM / IEEE templates).
SINGLE_COLUMN = 3.4
DOUBLE_COLUMN = 7.0

#: seaborn's colorblind palette, reordered so that real (blue) and fake (vermillion) come first and the
#: weak yellow last; lines and groups cycle through it.
PALETTE = [sns.color_palette("colorblind").as_hex()[i] for i in (0, 3, 2, 1, 4, 9, 5, 6, 7, 8)]
REAL_COLOR = PALETTE[0]
FAKE_COLOR = PALETTE[1]
#: One colour for ground-truth / manipulation masks in every panel (contours and legends).
MASK_COLOR = "#000000"

#: Colormaps: perceptual sequential for sigma and [0, 1] maps, inferno for local variance,
#: diverging (used with symmetric limits) for attributions.
CMAP_SIGMA = "viridis"
CMAP_NORMALIZED = "cividis"
CMAP_VARIANCE = "inferno"
CMAP_ATTRIBUTION = "RdBu_r"
CMAP_MASK = "Greys"

#: Colorbar labels with units.
LABEL_SIGMA = "sigma (px)"
LABEL_NORMALIZED = "normalized defocus"

#: ``rcParams`` applied inside :func:`house_style` on top of seaborn's "ticks" style and "paper" context:
#: 8-9 pt text, thin lines, no top/right spines, the palette above.
STYLE = {
    **sns.axes_style("ticks"),
    **sns.plotting_context("paper", font_scale=0.85),
    "figure.titlesize": 9,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "axes.titlepad": 3.0,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "legend.frameon": True,
    "legend.framealpha": 0.9,
    "legend.edgecolor": "0.8",
    "legend.fancybox": False,
    "patch.force_edgecolor": False,
    "legend.handlelength": 1.5,
    "image.interpolation": "nearest",
    "image.origin": "upper",
    "figure.dpi": 150,
    "savefig.dpi": 300,
    "savefig.bbox": None,  # constrained layout already keeps every label inside the figure
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}


@contextlib.contextmanager
def house_style(**overrides) -> Iterator[None]:
    """Apply the house style temporarily (seaborn theme included), restoring every ``rcParams`` on exit.

    Parameters
    ----------
    **overrides
        Extra ``rcParams`` (dots written as underscores are not translated; pass a dict with
        ``**{"font.size": 9}``).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> with house_style():
    ...     fig = plt.figure()
    >>> plt.close(fig)
    """
    params = dict(STYLE)
    params.update(overrides)
    with plt.rc_context(params):
        yield


def _width(width: float | str) -> float:
    if isinstance(width, str):
        if width in ("single", "one", "1"):
            return SINGLE_COLUMN
        if width in ("double", "two", "2"):
            return DOUBLE_COLUMN
        raise ValueError(f"width must be 'single', 'double' or inches, got {width!r}")
    return float(width)


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float | str = "single",
    height: float | None = None,
    aspect: float = 0.75,
    **subplot_kw,
):
    """Create a figure with constrained layout in the house size.

    Call inside :func:`house_style`. Returns ``(fig, axes)`` like :func:`matplotlib.pyplot.subplots`.

    Parameters
    ----------
    nrows, ncols : int
        Grid of axes.
    width : {"single", "double"} or float
        3.4 in (one column), 7.0 in (two columns) or a width in inches.
    height : float, optional
        Height in inches; default ``width * aspect``.
    aspect : float
        Height / width when ``height`` is not given.
    **subplot_kw
        Passed to :func:`matplotlib.pyplot.subplots` (e.g. ``squeeze=False``).
    """
    w = _width(width)
    h = float(height) if height is not None else w * aspect
    return plt.subplots(nrows, ncols, figsize=(w, h), layout="constrained", **subplot_kw)


def add_colorbar(mappable, ax, label: str, **kwargs):
    """Attach a slim colorbar with a label (units) to one axes or a list of axes.

    Parameters
    ----------
    mappable : matplotlib.cm.ScalarMappable
        E.g. the return value of ``ax.imshow``.
    ax : Axes or sequence of Axes
        The colorbar takes space from these axes (a shared colorbar spans them all).
    label : str
        Quantity and unit, e.g. :data:`LABEL_SIGMA`.
    """
    fig = np.atleast_1d(ax).ravel()[0].figure
    kwargs.setdefault("shrink", 0.9)
    kwargs.setdefault("fraction", 0.05)
    kwargs.setdefault("pad", 0.02)
    cb = fig.colorbar(mappable, ax=ax, **kwargs)
    cb.set_label(label)
    cb.outline.set_linewidth(0.5)
    cb.ax.tick_params(width=0.5, length=2)
    return cb


def to_numpy(x, *, name: str = "array", dtype=np.float64) -> np.ndarray:
    """Convert a torch tensor, numpy array or sequence to a numpy array.

    Torch is never imported: a tensor is recognised by its ``detach`` method.

    Parameters
    ----------
    x : array-like or torch.Tensor
    name : str
        Used in error messages.
    dtype : numpy dtype or None
        Output dtype; ``None`` keeps the input dtype.
    """
    if x is None:
        raise ValueError(f"{name} is None")
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def symmetric_limit(values, percentile: float | None = 99.0) -> float:
    """Symmetric colour limit ``L`` for a diverging map shown on ``[-L, L]``.

    Parameters
    ----------
    values : array-like
        Attribution values (any shape; NaNs ignored).
    percentile : float or None
        ``L`` is this percentile of ``|values|`` (99 by default: robust to a few extreme
        pixels, which then saturate); ``None`` uses ``max |values|`` (nothing saturates).

    Returns
    -------
    float
        A positive limit (a tiny positive number when all values are zero).

    Examples
    --------
    >>> symmetric_limit([-2.0, 1.0], percentile=None)
    2.0
    """
    a = np.abs(to_numpy(values, name="values"))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 1e-12
    lim = float(np.max(a)) if percentile is None else float(np.percentile(a, percentile))
    if lim <= 0:
        lim = float(np.max(a))
    return lim if lim > 0 else 1e-12


def get_cmap(name):
    """A colormap object from its name (or the colormap itself)."""
    return mpl.colormaps[name] if isinstance(name, str) else name


def save(fig, path, *, formats: Sequence[str] | None = None, dpi: int = 300, close: bool = False) -> list:
    """Save a figure in the house style (TrueType fonts in PDF/PS, as ACM/IEEE require).

    Parameters
    ----------
    fig : Figure
    path : path-like
        File name; with ``formats`` its suffix is replaced by each format.
    formats : sequence of str, optional
        E.g. ``("png", "pdf")``; default the suffix of ``path``.
    dpi : int
        Resolution of raster formats.
    close : bool
        Close the figure afterwards.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig = plt.figure()
    >>> save(fig, "/tmp/x.png", formats=("png", "pdf"), close=True)  # doctest: +SKIP
    """
    from pathlib import Path

    path = Path(path)
    targets = [path] if not formats else [path.with_suffix("." + f.lstrip(".")) for f in formats]
    try:
        with house_style():
            for t in targets:
                fig.savefig(t, dpi=dpi)
    finally:
        if close:
            plt.close(fig)
    return targets


def close(*figs) -> None:
    """Close figures (all given ones); convenience for scripts and tests."""
    for fig in figs:
        plt.close(fig)


def _fig_axes(n: int, *, axes=None, fig=None, width="double", height=None, aspect=None, ncols=None):
    """Return ``(fig, list_of_axes)``: the caller's axes, new axes in ``fig``, or a new figure."""
    if axes is not None:
        axs = list(np.atleast_1d(axes).ravel())
        if len(axs) < n:
            raise ValueError(f"need {n} axes, got {len(axs)}")
        return axs[0].figure, axs[:n]
    ncols = n if ncols is None else ncols
    nrows = int(np.ceil(n / ncols))
    if fig is not None:
        axs = list(np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel())
        for extra in axs[n:]:
            extra.remove()
        return fig, axs[:n]
    w = _width(width)
    if height is None:
        height = w * (aspect if aspect is not None else 0.75)
    fig, axs = plt.subplots(nrows, ncols, figsize=(w, height), layout="constrained", squeeze=False)
    axs = list(axs.ravel())
    for extra in axs[n:]:
        extra.remove()
    return fig, axs[:n]


def _legend(ax, *, created: bool, ncols: int = 2, handles=None, side: str = "upper center", grow: bool = False,
            **kwargs):
    """Framed legend outside the data (above the plot, or ``side="right upper"``) when we created the figure
    (constrained layout makes room); inside the caller's axes at the place with least overlap otherwise.

    An outside legend wider than the figure drops columns until it fits; with ``grow`` the figure grows by
    the legend's height so the axes (and their labels) keep their size."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fig = ax.figure
    if handles is None:
        handles, _ = ax.get_legend_handles_labels()
    if created and isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        ncols = ncols if side == "upper center" else 1
        renderer = fig.canvas.get_renderer()
        while True:  # fewer columns until the legend is no wider than the figure (no clipped labels)
            leg = fig.legend(handles=handles, loc=f"outside {side}", ncols=ncols, **kwargs)
            if ncols == 1 or leg.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
                break
            leg.remove()
            ncols -= 1
        if grow and side == "upper center":  # the axes keep their height: the figure grows by the legend's
            fig.set_figheight(fig.get_figheight() + leg.get_window_extent(renderer).height / fig.dpi)
        return leg
    return ax.legend(handles=handles, loc="best", **kwargs)


def _warn(msg: str) -> None:
    warnings.warn(msg, UserWarning, stacklevel=3)


def _image_off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _as_list(x) -> Sequence:
    return list(x) if isinstance(x, (list, tuple)) else [x]
