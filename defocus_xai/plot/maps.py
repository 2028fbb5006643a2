"""Image-like figures of defocus maps: the estimator's triptych and the binary-mask triptych."""

from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors

from ..analysis import binary_mask, normalize_maps
from . import style as S
from ._convert import as_image, as_map, attr, to_grid
from ._layout import caption_text, identify, panel_height, units_label

__all__ = ["defocus_triptych", "mask_triptych"]


def _triptych_inputs(image, sparse, dense, edges, result, index):
    """(image on the map grid, sparse, dense, edge mask) as numpy arrays."""
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
    return np.clip(to_grid(img, de.shape), 0.0, 1.0), sp, de, em


def _sigma_scale(sp, de, em, vmax, percentile) -> tuple[float, float]:
    """(upper end of the colour scale, largest value shown)."""
    data_max = float(max([np.nanmax(de)] + ([np.nanmax(np.where(em, sp, np.nan))] if em.any() else [])))
    if vmax is None:
        cand = [np.nanpercentile(de, percentile)]
        if em.any():
            cand.append(np.nanpercentile(sp[em], percentile))
        vmax = float(max(cand))
        if vmax <= 0:
            vmax = data_max if data_max > 0 else 1.0
    return vmax, data_max


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
    colorbar: bool = True,
    sample_id=None,
    family: str | None = None,
    source_id=None,
    score: float | None = None,
    caption: str | None = None,
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
    colorbar : bool
        Draw the colour bar; with several rows in one figure give every row the same ``vmax`` and
        draw the bar once.
    sample_id, family, source_id, score : optional
        The sample shown (index or id, family, source id, detector score), named in the title.
    caption : str, optional
        Text under the figure.
    axes, fig : sequence of 3 Axes, or Figure, optional
        Draw into these axes (``fig`` is then ignored), or into this (empty) figure.

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
    img, sp, de, em = _triptych_inputs(image, sparse, dense, edges, result, index)
    vmax, data_max = _sigma_scale(sp, de, em, vmax, percentile)
    with S.house_style():
        h, w = de.shape
        height = panel_height(h, w, 3, S.DOUBLE_COLUMN, suptitle=bool(title))
        fig, (a0, a1, a2) = S._fig_axes(3, axes=axes, fig=fig, width="double", height=height)
        a0.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        a0.set_title("image")
        cm = S.get_cmap(cmap).with_extremes(bad="0.85")
        a1.imshow(np.where(em, sp, np.nan), cmap=cm, vmin=0, vmax=vmax)
        a1.set_title(f"sparse sigma at edges\n(edges: {100.0 * int(em.sum()) / em.size:.1f}% of pixels)")
        im = a2.imshow(de, cmap=cm, vmin=0, vmax=vmax)
        a2.set_title(f"dense sigma (mean {np.nanmean(de):.2f})")
        for a in (a0, a1, a2):
            S._image_off(a)
        if colorbar:
            S.add_colorbar(im, [a1, a2], units_label(units),
                           extend="max" if data_max > vmax * (1 + 1e-6) else "neither")
        identify(fig, title, caption_text(caption), sample_id=sample_id, family=family, source_id=source_id, score=score)
    return fig


def _mask_inputs(real_map, fake_map, mask, threshold, normalize):
    """(fake, real, mask) as shown: maps normalized when asked, the mask given or computed."""
    r = as_map(real_map, name="real_map")
    f = as_map(fake_map, name="fake_map")
    if f.shape != r.shape:
        raise ValueError(f"real_map {r.shape} and fake_map {f.shape} differ in shape")
    if normalize:
        f, r = normalize_maps(f), normalize_maps(r)
    if mask is None:
        return f, r, binary_mask(real_map=r, fake_map=f, threshold=threshold, normalize=False)
    m = as_map(mask, name="mask") > 0
    if m.shape != f.shape:
        raise ValueError(f"mask {m.shape} and maps {f.shape} differ in shape")
    return f, r, m


def _draw_mask(ax, m: np.ndarray, threshold: float) -> None:
    n = int(m.sum())
    ax.imshow(m.astype(float), cmap=mcolors.ListedColormap(["white", "black"]), vmin=0, vmax=1)
    for s in ax.spines.values():  # frame the mask so a white (empty) mask is still a panel
        s.set_visible(True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"|fake - real| > {threshold:g}: {n:,} px ({100.0 * n / m.size:.1f}%)")
    ax.set_xlabel("black: pixel above threshold")


def mask_triptych(
    *,
    real_map,
    fake_map,
    mask=None,
    threshold: float = 0.1,
    normalize: bool = True,
    units: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    sample_id=None,
    family: str | None = None,
    source_id=None,
    score: float | None = None,
    caption: str | None = None,
    axes=None,
    fig=None,
):
    """Fake map, real map (shared colour scale) and the binary mask ``|fake - real| > threshold``.

    The mask is :func:`defocus_xai.analysis.binary_mask` of the maps.

    Parameters
    ----------
    real_map, fake_map : array-like or torch.Tensor
        Maps of a real and of the fake made from it, (H, W) (or (1, H, W)); usually normalized to
        [0, 1].
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
    sample_id, family, source_id, score : optional
        The fake shown (its real shares the source) (index or id, family, source id, detector score), named in the title.
    caption : str, optional
        Text under the figure.
    axes, fig : sequence of 3 Axes, or Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
        Three image axes and one colorbar (for the two maps). The mask title gives the number
        and fraction of activated pixels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = mask_triptych(real_map=rng.random((16, 16)), fake_map=rng.random((16, 16)), threshold=0.5)
    >>> "px" in fig.axes[2].get_title()
    True
    """
    f, r, m = _mask_inputs(real_map, fake_map, mask, threshold, normalize)
    if units is None:
        units = "normalized" if normalize else "sigma"
    if normalize:
        lo = 0.0 if vmin is None else vmin
        hi = 1.0 if vmax is None else vmax
    else:
        lo = float(min(np.nanmin(f), np.nanmin(r))) if vmin is None else vmin
        hi = float(max(np.nanmax(f), np.nanmax(r))) if vmax is None else vmax
    cmap = S.CMAP_NORMALIZED if units == "normalized" else S.CMAP_SIGMA
    with S.house_style():
        h, w = f.shape
        height = panel_height(h, w, 3, S.DOUBLE_COLUMN, suptitle=bool(title))
        fig, (a0, a1, a2) = S._fig_axes(3, axes=axes, fig=fig, width="double", height=height)
        a0.imshow(f, cmap=cmap, vmin=lo, vmax=hi)
        a0.set_title("fake")
        im = a1.imshow(r, cmap=cmap, vmin=lo, vmax=hi)
        a1.set_title("real")
        _draw_mask(a2, m, threshold)
        S._image_off(a0)
        S._image_off(a1)
        S.add_colorbar(im, [a0, a1], units_label(units))
        identify(fig, title, caption_text(caption), sample_id=sample_id, family=family, source_id=source_id, score=score)
    return fig
