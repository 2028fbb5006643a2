"""Image-like figures: defocus triptych, binary-mask triptych, local-variance pair, attribution overlay."""

from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable

from . import style as S
from ._convert import as_image, as_map, attr, gray, minmax, to_grid

__all__ = ["defocus_triptych", "mask_triptych", "variance_pair", "attribution_overlay"]


def _panel_height(h: int, w: int, ncols: int, width: float, extra: float = 0.3, cbar: float = 0.75,
                  suptitle: bool = False) -> float:
    """Figure height that fits ``ncols`` images of aspect h/w in ``width`` inches.

    ``cbar`` inches of the width go to a colorbar with its label; ``extra`` to the panel titles.
    """
    img_w = (width - cbar - 0.05 * ncols) / ncols
    return img_w * (h / w) + extra + (0.25 if suptitle else 0.0)


def _units_label(units: str) -> str:
    if units == "sigma":
        return S.LABEL_SIGMA
    if units == "normalized":
        return S.LABEL_NORMALIZED
    return units


def defocus_triptych(
    image=None,
    sparse=None,
    dense=None,
    *,
    edges=None,
    result=None,
    index: int = 0,
    title: str | None = None,
    vmax: float | None = None,
    percentile: float = 99.5,
    units: str = "sigma",
    cmap: str = S.CMAP_SIGMA,
    axes=None,
    fig=None,
):
    """Image, sparse sigma at edges, dense sigma map, on one shared sigma scale.

    Parameters
    ----------
    image : array-like or torch.Tensor
        The RGB or grey image: (H, W, 3), (3, H, W), (H, W) or a batch (``index`` picks one);
        ``uint8`` or float in [0, 1] (float in [-1, 1] is mapped to [0, 1] for display). When its
        size differs from the maps' (the estimator resizes to 299 x 299 by default), it is
        resampled (bilinear) to the map grid, i.e. shown as the estimator saw it.
    sparse, dense : array-like or torch.Tensor
        Sparse sigma at edges and dense sigma map, (H, W), (1, H, W) or (B, 1, H, W).
    edges : array-like, optional
        Edge mask (same shapes as the maps). Non-edge pixels of the sparse map are drawn light
        grey. Default: ``result.edges`` when ``result`` is given, else ``sparse > 0``.
    result : DefocusResult, optional
        Output of :func:`defocus_xai.estimate_defocus`; supplies ``sparse``, ``dense`` and
        ``edges`` (attributes of the same names).
    index : int
        Sample of a batch to show.
    title : str, optional
        Figure title.
    vmax : float, optional
        Upper end of the shared colour scale (lower end 0). Default: the larger of the
        ``percentile``-th percentiles of the sparse values at edges and of the dense map, so that a
        few clamped edge pixels (sigma = 5) do not flatten the rest; values above are saturated
        and the colorbar gets an arrow (``extend="max"``).
    percentile : float
        Percentile for the default ``vmax`` (99.5); 100 uses the maximum.
    units : {"sigma", "normalized"} or str
        Colorbar label: ``"sigma (px)"`` for raw maps, ``"normalized defocus"`` for [0, 1] maps,
        or any other string.
    cmap : str
        Sequential perceptual colormap (viridis).
    axes : sequence of 3 Axes, optional
        Draw into these axes; ``fig`` is then ignored.
    fig : Figure, optional
        Draw into this (empty) figure.

    Returns
    -------
    matplotlib.figure.Figure
        Three image axes plus one colorbar axes shared by the sparse and dense panels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = rng.random((32, 32, 3)); dense = rng.random((32, 32)) * 3
    >>> fig = defocus_triptych(img, np.where(dense > 2, dense, 0), dense)
    >>> len(fig.axes)
    4
    """
    if result is not None:
        sparse = attr(result, "sparse") if sparse is None else sparse
        dense = attr(result, "dense") if dense is None else dense
        edges = attr(result, "edges") if edges is None else edges
    if image is None or sparse is None or dense is None:
        raise ValueError("defocus_triptych needs image, sparse and dense (or result=DefocusResult)")
    img = as_image(image, index=index)
    sp = as_map(sparse, name="sparse", index=index)
    de = as_map(dense, name="dense", index=index)
    if sp.shape != de.shape:
        raise ValueError(f"sparse {sp.shape} and dense {de.shape} differ in shape")
    em = as_map(edges, name="edges", index=index) > 0 if edges is not None else sp > 0
    if em.shape != sp.shape:
        raise ValueError(f"edges {em.shape} and sparse {sp.shape} differ in shape")
    # the estimator works on a resized grid: show the image on that grid, as the estimator saw it
    img = np.clip(to_grid(img, de.shape), 0.0, 1.0)
    sp_shown = np.where(em, sp, np.nan)
    data_max = float(max([np.nanmax(de)] + ([np.nanmax(sp_shown)] if em.any() else [])))
    if vmax is None:
        cand = [np.nanpercentile(de, percentile)]
        if em.any():
            cand.append(np.nanpercentile(sp[em], percentile))
        vmax = float(max(cand))
        if vmax <= 0:
            vmax = data_max if data_max > 0 else 1.0
    with S.house_style():
        h, w = de.shape
        fig, (a0, a1, a2) = S._fig_axes(
            3, axes=axes, fig=fig, width="double", height=_panel_height(h, w, 3, S.DOUBLE_COLUMN, suptitle=bool(title))
        )
        a0.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        a0.set_title("image")
        cm = S.get_cmap(cmap).with_extremes(bad="0.85")
        a1.imshow(sp_shown, cmap=cm, vmin=0, vmax=vmax)
        n_edges = int(em.sum())
        a1.set_title(f"sparse sigma at edges ({100.0 * n_edges / em.size:.1f}% px)")
        im = a2.imshow(de, cmap=cm, vmin=0, vmax=vmax)
        a2.set_title(f"dense sigma (mean {np.nanmean(de):.2f})")
        for a in (a0, a1, a2):
            S._image_off(a)
        S.add_colorbar(im, [a1, a2], _units_label(units), extend="max" if data_max > vmax * (1 + 1e-6) else "neither")
        if title:
            fig.suptitle(title)
    return fig


def mask_triptych(
    fake_map,
    real_map,
    mask=None,
    threshold: float = 0.1,
    *,
    normalize: bool = True,
    units: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    axes=None,
    fig=None,
):
    """Fake map, real map (shared colour scale) and the binary mask ``|fake - real| > threshold``.

    Parameters
    ----------
    fake_map, real_map : array-like or torch.Tensor
        Two maps of the same scene, (H, W) (or (1, H, W)); usually normalized to [0, 1].
    mask : array-like, optional
        A precomputed mask (e.g. from :func:`defocus_xai.analysis.binary_mask`); computed from the
        maps and ``threshold`` otherwise.
    threshold : float
        Threshold on the absolute difference (0.1 in the paper); shown in the mask title.
    normalize : bool
        Min-max normalize each map to [0, 1] first (default, as
        :func:`defocus_xai.analysis.binary_mask` does), so the maps and the threshold are in
        normalized units. With ``False`` the maps are shown and differenced as given.
    units : {"normalized", "sigma"} or str, optional
        Colorbar label of the two maps; default ``"normalized"`` when ``normalize`` else
        ``"sigma"``.
    vmin, vmax : float, optional
        Shared colour scale; default [0, 1] when normalized, else the joint range of both maps.
    title : str, optional
        Figure title.
    axes : sequence of 3 Axes, optional
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        Three image axes and one colorbar (for the two maps). The mask title gives the number
        and fraction of activated pixels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = mask_triptych(rng.random((16, 16)), rng.random((16, 16)), threshold=0.5)
    >>> "px" in fig.axes[2].get_title()
    True
    """
    f = as_map(fake_map, name="fake_map")
    r = as_map(real_map, name="real_map")
    if f.shape != r.shape:
        raise ValueError(f"fake_map {f.shape} and real_map {r.shape} differ in shape")
    if normalize:
        f, r = minmax(f), minmax(r)
    if units is None:
        units = "normalized" if normalize else "sigma"
    if mask is None:
        m = np.abs(f - r) > threshold
    else:
        m = as_map(mask, name="mask") > 0
        if m.shape != f.shape:
            raise ValueError(f"mask {m.shape} and maps {f.shape} differ in shape")
    if normalize:
        lo = 0.0 if vmin is None else vmin
        hi = 1.0 if vmax is None else vmax
    else:
        lo = float(min(np.nanmin(f), np.nanmin(r))) if vmin is None else vmin
        hi = float(max(np.nanmax(f), np.nanmax(r))) if vmax is None else vmax
    n = int(m.sum())
    with S.house_style():
        h, w = f.shape
        fig, (a0, a1, a2) = S._fig_axes(
            3, axes=axes, fig=fig, width="double", height=_panel_height(h, w, 3, S.DOUBLE_COLUMN, suptitle=bool(title))
        )
        a0.imshow(f, cmap=S.CMAP_NORMALIZED if units == "normalized" else S.CMAP_SIGMA, vmin=lo, vmax=hi)
        a0.set_title("fake")
        im = a1.imshow(r, cmap=S.CMAP_NORMALIZED if units == "normalized" else S.CMAP_SIGMA, vmin=lo, vmax=hi)
        a1.set_title("real")
        mcm = mcolors.ListedColormap(["white", "black"])
        a2.imshow(m.astype(float), cmap=mcm, vmin=0, vmax=1)
        for s in a2.spines.values():  # frame the mask so a white (empty) mask is still a panel
            s.set_visible(True)
        a2.set_xticks([])
        a2.set_yticks([])
        a2.set_title(f"|fake - real| > {threshold:g}: {n:,} px ({100.0 * n / m.size:.1f}%)")
        a2.set_xlabel("black: pixel above threshold")
        S._image_off(a0)
        S._image_off(a1)
        S.add_colorbar(im, [a0, a1], _units_label(units))
        if title:
            fig.suptitle(title)
    return fig


def _local_variance(m: np.ndarray, window: int, normalize: bool) -> np.ndarray:
    try:  # the analysis module's definition is the one the numbers use
        from ..analysis import local_variance as _lv
    except ImportError:  # pragma: no cover - analysis not installed
        _lv = None
    if _lv is not None:
        return np.asarray(_lv(m, window=window, normalize=normalize), dtype=np.float64)
    if normalize:  # pragma: no cover
        m = minmax(m)
    from scipy.ndimage import uniform_filter

    mu = uniform_filter(m, size=window, mode="reflect")
    mu2 = uniform_filter(m * m, size=window, mode="reflect")
    return np.clip(mu2 - mu * mu, 0.0, None)


def variance_pair(
    real_map,
    fake_map,
    window: int = 15,
    *,
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
    >>> fig = variance_pair(rng.random((32, 32)), rng.random((32, 32)), window=5)
    >>> len(fig.axes)
    3
    """
    r = as_map(real_map, name="real_map")
    f = as_map(fake_map, name="fake_map")
    if not precomputed:
        r = _local_variance(r, window, normalize)
        f = _local_variance(f, window, normalize)
    hi = float(max(np.nanmax(r), np.nanmax(f))) if vmax is None else float(vmax)
    if hi <= 0:
        hi = 1e-12
    with S.house_style():
        h, w = r.shape
        fig, (a0, a1) = S._fig_axes(
            2, axes=axes, fig=fig, width="single",
            height=_panel_height(h, w, 2, S.SINGLE_COLUMN, extra=0.8, cbar=0.0, suptitle=bool(title))
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
        attribution, resampled (bilinear) to the attribution's grid when its size differs.
    dmap : array-like, optional
        The defocus map (H, W); drawn in grey (light = more blur) under the attribution,
        resampled like ``image``.
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
    axes : sequence of Axes, optional
        One per panel (backgrounds x channels).
    fig : Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        One panel per background (image, map; or the bare attribution when neither is given),
        times one row per channel with ``channels="separate"``, plus one colorbar.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = attribution_overlay(rng.normal(size=(16, 16)), dmap=rng.random((16, 16)))
    >>> lo, hi = fig.axes[0].images[-1].get_clim()
    >>> bool(np.isclose(lo, -hi))
    True
    """
    a = np.asarray(S.to_numpy(attribution, name="attribution"))
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        if a.shape[0] != 3:
            raise ValueError(f"attribution: expected (H, W) or (3, H, W), got shape {a.shape}")
        if channels == "sum":
            maps, row_names = [a.sum(axis=0)], [""]
        elif channels == "separate":
            maps, row_names = [a[0], a[1], a[2]], ["R", "G", "B"]
        else:
            raise ValueError(f"channels must be 'sum' or 'separate', got {channels!r}")
    elif a.ndim == 2:
        maps, row_names = [a], [""]
    else:
        raise ValueError(f"attribution: expected (H, W) or (3, H, W), got shape {a.shape}")
    lim = S.symmetric_limit(np.stack(maps), percentile)
    norm = mcolors.Normalize(vmin=-lim, vmax=lim)
    cmap = S.get_cmap(S.CMAP_ATTRIBUTION)
    bgs = []
    if image is not None:
        bgs.append(("image", gray(as_image(image))))
    if dmap is not None:
        bgs.append(("defocus map", as_map(dmap, name="dmap")))
    if not bgs:
        bgs.append(("attribution", None))
    h, w = maps[0].shape
    bgs = [(name, None if bg is None else to_grid(bg, (h, w))) for name, bg in bgs]
    nr, nc = len(maps), len(bgs)
    with S.house_style():
        width = S.SINGLE_COLUMN if nc * (1 if nr == 1 else 1) <= 2 else S.DOUBLE_COLUMN
        height = nr * _panel_height(h, w, nc, width, extra=0.25, cbar=0.8 if nc > 1 else 1.0) + (0.25 if title else 0.0)
        fig, axs = S._fig_axes(nr * nc, axes=axes, fig=fig, width=width, height=height, ncols=nc)
        suffix = " (sum over RGB)" if (a.ndim == 3 and channels == "sum") else ""
        for i, m in enumerate(maps):
            strength = np.clip(np.abs(m) / lim, 0.0, 1.0)
            for j, (name, bg) in enumerate(bgs):
                ax = axs[i * nc + j]
                if bg is not None:
                    b_lo, b_hi = float(np.nanmin(bg)), float(np.nanmax(bg))
                    ax.imshow(bg, cmap="gray", vmin=b_lo, vmax=b_hi if b_hi > b_lo else b_lo + 1.0, alpha=0.75)
                    ax.imshow(m, cmap=cmap, norm=norm, alpha=alpha * strength)
                    t = f"on {name}"
                else:
                    ax.imshow(m, cmap=cmap, norm=norm)
                    t = "attribution"
                if row_names[i]:
                    t = f"{row_names[i]} channel, {t}"
                ax.set_title(t + (suffix if i == 0 and j == 0 else ""))
                S._image_off(ax)
        sm = ScalarMappable(norm=norm, cmap=cmap)
        cb = S.add_colorbar(sm, axs, label)
        cb.formatter.set_powerlimits((-3, 4))
        cb.update_ticks()
        if title:
            fig.suptitle(title)
    return fig
