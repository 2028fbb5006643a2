"""Local consensus of the sparse edge values (``recipe="robust"``): window medians over the edge pixels.

:func:`edge_median` replaces each edge value by the median of the edge values around it (isolated wrong
values, e.g. a texture edge read at the floor inside a blurred region, do not reach the map);
:func:`side_medians` takes the medians on either side of the edge, along its normal: where they differ,
the edge separates two blurs (an occlusion boundary), and its own value belongs to one side only. The side
medians only set a weight, so they are taken over pooled cells (the mean log value of the edge pixels in
each ``SIDE_CELL`` square): 9 x 9 cells instead of 21 x 21 pixels. NaN values (pixels without a value)
are skipped by both.
"""

from __future__ import annotations

import torch

__all__ = ["edge_median", "side_medians", "SIDE_CELL"]

#: Side (px) of the square cells pooled (mean log value of their edge pixels) for the side medians.
SIDE_CELL = 3


def _windows(values, idx, shape, window):
    """``(K, window^2)`` values of the edge pixels in each window (NaN off the edges) and the
    ``(window^2,)`` x and y offsets of the window's pixels."""
    B, H, W = shape
    r = window // 2
    Hp, Wp = H + 2 * r, W + 2 * r
    b = idx // (H * W)
    y, x = (idx % (H * W)) // W, idx % W
    padded = torch.full((B * Hp * Wp,), float("nan"), dtype=values.dtype, device=values.device)
    centre = b * (Hp * Wp) + (y + r) * Wp + (x + r)
    padded = padded.index_put((centre,), values)
    o = torch.arange(-r, r + 1, device=idx.device)
    oy, ox = o.view(-1, 1).expand(window, window).reshape(-1), o.repeat(window)
    return padded.take(centre.view(-1, 1) + (oy * Wp + ox).view(1, -1)), ox, oy


def edge_median(values: torch.Tensor, idx: torch.Tensor, shape: tuple, window: int) -> torch.Tensor:
    """Median of the values of the edge pixels in the ``window x window`` square around each edge pixel.

    Parameters
    ----------
    values : torch.Tensor
        ``(K,)`` a value per edge pixel (NaN: none, skipped; the median is NaN where the window holds
        no value).
    idx : torch.Tensor
        ``(K,)`` flat indices of the edge pixels into ``(B, H, W)``.
    shape : (int, int, int)
        ``(B, H, W)``.
    window : int
        Odd side of the square (px).

    Returns
    -------
    torch.Tensor
        ``(K,)`` (differentiable: each median is one of the values; the lower middle one for an even
        count).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.robust_consensus import edge_median
    >>> idx = torch.tensor([0, 1, 2, 40])               # three neighbours and a far pixel, 8 x 8 grid
    >>> edge_median(torch.tensor([1.0, 5.0, 2.0, 9.0]), idx, (1, 8, 8), window=3).tolist()
    [1.0, 2.0, 2.0, 9.0]
    """
    vals, _, _ = _windows(values, idx, shape, window)
    return torch.nanmedian(vals, 1).values


def side_medians(values: torch.Tensor, idx: torch.Tensor, shape: tuple, normal: torch.Tensor,
                 window: int, gap: float = 1.0):
    """Medians of the edge values in the window on each side of each edge pixel's line.

    Parameters
    ----------
    values, idx, shape, window
        As in :func:`edge_median`.
    normal : torch.Tensor
        ``(2, K)`` unit normal ``(nx, ny)`` of each edge pixel.
    gap : float
        Cells whose centre lies within ``gap`` of the edge's line (along the normal) belong to neither
        side.

    Returns
    -------
    ahead, behind : torch.Tensor
        ``(K,)`` each: the median of the cell values (the exp of the median of their mean log values) on
        the side the normal points to and on the other, over the cells whose centre lies within
        ``(window + SIDE_CELL) / 2`` px along x and y; NaN where a side holds no value (no gradient).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.robust_consensus import side_medians
    >>> idx = torch.tensor([3 * 8 + 1, 3 * 8 + 3, 3 * 8 + 6])   # one row: x = 1, 3, 6
    >>> n = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    >>> a, b = side_medians(torch.tensor([1.0, 2.0, 4.0]), idx, (1, 8, 8), n, window=7)
    >>> a.tolist()[1], b.tolist()[1]
    (4.0, 1.0)
    """
    with torch.no_grad():
        cells, along = _cell_windows(torch.log(values.detach()), idx, shape, normal, window)
        nan = torch.full_like(cells, float("nan"))
        ahead = torch.nanmedian(torch.where(along > gap, cells, nan), 1).values
        behind = torch.nanmedian(torch.where(along < -gap, cells, nan), 1).values
    return torch.exp(ahead), torch.exp(behind)


def _cell_windows(log_values, idx, shape, normal, window):
    """Mean log value of the edge pixels in each ``SIDE_CELL`` square cell (NaN where none) for the
    cells around each edge pixel whose centre lies within ``(window + SIDE_CELL) / 2`` px of it along x
    and y (NaN for the others), and the offset of each cell's centre from the pixel along its normal
    (``(K, n^2)`` each, ``n = 2 ceil((window // 2) / SIDE_CELL) + 1``)."""
    B, H, W = shape
    c = SIDE_CELL
    r = -(-(window // 2) // c)
    Hc, Wc = -(-H // c) + 2 * r, -(-W // c) + 2 * r
    b = idx // (H * W)
    y, x = (idx % (H * W)) // W, idx % W
    cell = b * (Hc * Wc) + (y // c + r) * Wc + (x // c + r)
    known = ~torch.isnan(log_values)
    total = torch.zeros(B * Hc * Wc, dtype=log_values.dtype, device=idx.device)
    total = total.index_add(0, cell, torch.where(known, log_values, 0.0))
    count = torch.zeros_like(total).index_add(0, cell, known.to(total.dtype))
    mean = total / count                                    # NaN (0 / 0) in empty cells
    o = torch.arange(-r, r + 1, device=idx.device)
    oy, ox = o.view(-1, 1).expand(2 * r + 1, 2 * r + 1).reshape(-1), o.repeat(2 * r + 1)
    cells = mean.take(cell.view(-1, 1) + (oy * Wc + ox).view(1, -1))
    # Centre of cell j: pixel c j + (c - 1) / 2; its offsets from the pixel.
    dt = log_values.dtype
    cx = ((x // c) * c + 0.5 * (c - 1) - x).to(dt).view(-1, 1) + c * ox.to(dt).view(1, -1)
    cy = ((y // c) * c + 0.5 * (c - 1) - y).to(dt).view(-1, 1) + c * oy.to(dt).view(1, -1)
    reach = 0.5 * (window + c)
    cells = torch.where((cx.abs() <= reach) & (cy.abs() <= reach), cells, float("nan"))
    return cells, cx * normal[0].view(-1, 1) + cy * normal[1].view(-1, 1)
