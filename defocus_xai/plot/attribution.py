"""Attribution maps over the image and / or the defocus map, on a symmetric diverging scale."""

from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable

from . import style as S
from ._convert import as_image, as_map, gray, to_grid
from ._layout import caption_text, identify, panel_height

__all__ = ["attribution_overlay"]


def _panels(attribution, channels: str) -> tuple[list, list, bool]:
    """(maps to draw, row names, whether the input was RGB (3, H, W))."""
    a = np.asarray(S.to_numpy(attribution, name="attribution"))
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        return [a], [""], False
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"attribution: expected (H, W) or (3, H, W), got shape {a.shape}")
    if channels == "sum":
        return [a.sum(axis=0)], [""], True
    if channels == "separate":
        return [a[0], a[1], a[2]], ["R", "G", "B"], True
    raise ValueError(f"channels must be 'sum' or 'separate', got {channels!r}")


def _backgrounds(image, dmap, shape) -> list:
    """(name, grey background on the attribution grid or None): the image when given, else the map."""
    if image is not None:
        return [("image", to_grid(gray(as_image(image)), shape))]
    if dmap is not None:
        return [("defocus map", to_grid(as_map(dmap, name="dmap"), shape))]
    return [("attribution", None)]


def _draw_mask(ax, mask, shape) -> None:
    """Outline of a ground-truth / manipulation mask, in the one mask colour of every figure."""
    if mask is None:
        return
    m = to_grid(as_map(mask, name="mask").astype(float), shape) > 0.5
    if m.any() and not m.all():
        ax.contour(m.astype(float), levels=[0.5], colors=[S.MASK_COLOR], linewidths=0.8)


def _draw_panel(ax, m, name, bg, *, cmap, norm, lim, alpha) -> str:
    """One attribution panel; returns its title."""
    if bg is None:
        ax.imshow(m, cmap=cmap, norm=norm)
        return "attribution"
    b_lo, b_hi = float(np.nanmin(bg)), float(np.nanmax(bg))
    ax.imshow(bg, cmap="gray", vmin=b_lo, vmax=b_hi if b_hi > b_lo else b_lo + 1.0, alpha=0.75)
    ax.imshow(m, cmap=cmap, norm=norm, alpha=alpha * np.clip(np.abs(m) / lim, 0.0, 1.0))
    return f"on {name}"


def attribution_overlay(
    attribution,
    *,
    image=None,
    dmap=None,
    percentile: float | None = 99.0,
    channels: str = "sum",
    alpha: float = 0.85,
    label: str = "attribution",
    title: str | None = None,
    limit: float | None = None,
    colorbar: bool = True,
    mask=None,
    sample_id=None,
    family: str | None = None,
    source_id=None,
    score: float | None = None,
    background: str | None = None,
    caption: str | None = None,
    axes=None,
    fig=None,
):
    """Attribution map on a diverging colour scale with symmetric limits, over the image and/or map.

    Parameters
    ----------
    attribution : array-like or torch.Tensor
        (H, W) for a defocus-map model, or (3, H, W) for an RGB model.
    image : array-like, optional
        The input image (any layout accepted by :func:`defocus_triptych`); drawn in grey under the
        attribution, resampled (bilinear) to the attribution's grid when its size differs. When it
        is given the attribution is drawn over it (and ``dmap`` is not used).
    dmap : array-like, optional
        The defocus map (H, W); drawn in grey (light = more blur) under the attribution when no
        image is given, resampled like ``image``.
    percentile : float or None
        Colour limits are ``[-L, L]`` with ``L`` the 99th percentile of ``|attribution|`` (the
        default: a few extreme pixels saturate instead of washing out the rest), or
        ``max |attribution|`` when ``None``. The limits are shared by every panel.
    channels : {"sum", "separate"}
        For (3, H, W) attributions: sum over channels (the total contribution of each pixel; the
        default) or one row of panels per channel (R, G, B).
    alpha : float
        Maximum opacity of the overlay. Opacity grows with ``|attribution| / L``, so pixels with
        no attribution leave the background visible.
    label : str
        Colorbar label (e.g. ``"SHAP value"``).
    title : str, optional
    limit : float, optional
        Colour limit ``L`` given by the caller: pass the same one to every panel of a figure that
        compares attributions (e.g. ``symmetric_limit`` of all of them), and ``colorbar=False`` to
        all but one, so the figure has one scale and one colour bar.
    colorbar : bool
        Draw the colour bar.
    mask : array-like, optional
        Ground-truth / manipulation mask (H, W), outlined in the one mask colour of all figures.
    sample_id, family, source_id, score : optional
        The sample shown (index or id, family, source id, detector score), named in the title.
    background : str, optional
        The attribution reference (e.g. ``"10 real training maps"``), stated in the caption.
    caption : str, optional
        Text under the figure.
    axes, fig : sequence of Axes (one per panel: one per channel), or Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        One panel (over the image, else over the map, else bare), one per channel with
        ``channels="separate"``, plus one colorbar unless ``colorbar=False``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = attribution_overlay(rng.normal(size=(16, 16)), dmap=rng.random((16, 16)), sample_id=3, family="splice")
    >>> lo, hi = fig.axes[0].images[-1].get_clim()
    >>> bool(np.isclose(lo, -hi))
    True
    """
    maps, row_names, rgb = _panels(attribution, channels)
    lim = S.symmetric_limit(np.stack(maps), percentile) if limit is None else float(limit)
    if not lim > 0:
        raise ValueError(f"limit must be positive, got {limit!r}")
    norm = mcolors.Normalize(vmin=-lim, vmax=lim)
    cmap = S.get_cmap(S.CMAP_ATTRIBUTION)
    h, w = maps[0].shape
    bgs = _backgrounds(image, dmap, (h, w))
    nr, nc = len(maps), len(bgs)
    with S.house_style():
        width = S.SINGLE_COLUMN if nc <= 2 else S.DOUBLE_COLUMN
        height = nr * panel_height(h, w, nc, width, extra=0.25, cbar=0.8 if nc > 1 else 1.0) + (0.25 if title else 0.0)
        fig, axs = S._fig_axes(nr * nc, axes=axes, fig=fig, width=width, height=height, ncols=nc)
        suffix = " (sum over RGB)" if (rgb and channels == "sum") else ""
        for i, m in enumerate(maps):
            for j, (name, bg) in enumerate(bgs):
                ax = axs[i * nc + j]
                t = _draw_panel(ax, m, name, bg, cmap=cmap, norm=norm, lim=lim, alpha=alpha)
                if row_names[i]:
                    t = f"{row_names[i]} channel, {t}"
                ax.set_title(t + (suffix if i == 0 and j == 0 else ""))
                _draw_mask(ax, mask, (h, w))
                S._image_off(ax)
        if colorbar:
            cb = S.add_colorbar(ScalarMappable(norm=norm, cmap=cmap), axs, label)
            cb.formatter.set_powerlimits((-3, 4))
            cb.update_ticks()
        identify(fig, title, caption_text(caption, background=background)
                 + (" Black outline: the mask." if mask is not None else ""),
                 sample_id=sample_id, family=family, source_id=source_id, score=score)
    return fig
