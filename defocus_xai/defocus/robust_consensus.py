"""Local consensus of the sparse edge values (``recipe="robust"``): window medians over the edge pixels.

:func:`edge_median` replaces each edge value by the median of the edge values around it (isolated wrong
values, e.g. a texture edge read at the floor inside a blurred region, do not reach the map);
:func:`side_medians` takes the medians on either side of the edge, along its normal: where they differ,
the edge separates two blurs (an occlusion boundary), and its own value belongs to one side only.
"""

from __future__ import annotations

import torch

__all__ = ["edge_median", "side_medians"]


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
        ``(K,)`` a value per edge pixel.
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
        Pixels within ``gap`` of the edge's line (along the normal) belong to neither side.

    Returns
    -------
    ahead, behind : torch.Tensor
        ``(K,)`` each: the median on the side the normal points to and on the other; NaN where a side
        holds no edge pixel (no gradient).

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
        vals, ox, oy = _windows(values.detach(), idx, shape, window)
        along = ox.to(values.dtype).view(1, -1) * normal[0].view(-1, 1) \
            + oy.to(values.dtype).view(1, -1) * normal[1].view(-1, 1)
        nan = torch.full_like(vals, float("nan"))
        ahead = torch.nanmedian(torch.where(along > gap, vals, nan), 1).values
        behind = torch.nanmedian(torch.where(along < -gap, vals, nan), 1).values
    return ahead, behind
