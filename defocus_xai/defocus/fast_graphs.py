"""The three graphs of the compiled CPU path (:mod:`.fused`), written for ``torch.compile``'s C++ backend.

The eager code's formulas, arranged so that inductor vectorizes every loop with plain vector loads:

* :func:`derivatives`: from the RGB chunk, the gray image, each sample's extremes (the input range
  check) and the filter chains, each map with a frame of two replicated pixels;
* :func:`front`: gradient magnitude, non-maximum suppression (``uint8`` out) and the values the
  thresholds' percentile is taken of;
* :func:`at_edges`: the ratio's sigma and straight-edge weight at the edge pixels only (dynamic in
  their number), the eager gather of :func:`~.ratio._cross_derivatives` as indirect loads, and the
  sums of ``sigma * weight`` and of the weight over 2 x 2 blocks.

Between :func:`front` and :func:`at_edges`, the C library of :mod:`.native`: the thresholds'
percentile, then the double threshold, hysteresis and the list of edge pixels in one pass; after
:func:`at_edges`, the same library's guided propagation. Borders are concatenations (reflected
slices flipped, replicated slices repeated, zero frames): inductor compiles padded or clamped
indices to masked or scalar loads. Tolerance against the eager maps: ``docs/estimator.md``
("Compiled CPU path").
"""

from __future__ import annotations

import torch

from .config import EstimatorConfig
from .edges import _percentile_sample, _suppress
from .filters import _fma_chain
from .ratio import _sigma_and_weight

__all__ = ["derivatives", "front", "at_edges"]


def _replicate(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """``x`` padded by ``r`` copies of its first and last slices along ``dim`` (a concatenation:
    inductor copies it once, and the shifted views of it are plain vector loads)."""
    n = x.shape[dim]
    lo, hi = x.narrow(dim, 0, 1), x.narrow(dim, n - 1, 1)
    return torch.cat([lo] * r + [x] + [hi] * r, dim)


def _zero_frame(x: torch.Tensor) -> torch.Tensor:
    """``x`` with a one-pixel frame of zeros, as a concatenation (see :func:`_replicate`)."""
    col = torch.zeros_like(x[..., :1])
    x = torch.cat([col, x, col], -1)
    row = torch.zeros_like(x[..., :1, :])
    return torch.cat([row, x, row], -2)


def _derivatives(padded: torch.Tensor, taps: tuple, wanted, frame: int) -> dict:
    """``{(scale, horizontal order, vertical order): (B, 1, H + 2 f, W + 2 f)}``: the multiply-add
    chains of :func:`~.filters._chains` for the ``wanted`` triples, each map its own tensor, with a
    frame of ``f = frame`` replicated pixels (the row chains' border columns copied, the column
    chains evaluated at clamped rows: the same arithmetic as at the border pixels themselves)."""
    L = len(taps[0][0])
    H, W = padded.shape[-2] - L + 1, padded.shape[-1] - L + 1
    at = torch.arange(-frame, H + frame, device=padded.device).clamp(0, H - 1)
    rows, out = {}, {}
    for i, h, v in wanted:
        if (i, h) not in rows:
            row = _fma_chain(lambda j: padded[..., j:j + W], taps[i][h])
            rows[(i, h)] = _replicate(row, frame, -1)
        row = rows[(i, h)]
        out[(i, h, v)] = _fma_chain(lambda j: row.index_select(-2, at + j), taps[i][v])
    return out


def derivatives(x: torch.Tensor, taps: tuple, scales: tuple) -> tuple:
    """``(gray, checks, gx, gy, Ix1, Iy1, Ix2, Iy2)`` of an RGB batch ``x`` ``(B, 3, H, W)`` (one graph,
    compiled with contracted multiply-adds, as the eager filter chains compute them).

    ``gray``: the mean of the channels of ``x`` clamped to ``[0, 1]`` (the clamp of
    :func:`~defocus_xai._images.check_range`, a no-op on a checked batch); ``checks`` ``(B, 2)``:
    the minimum and maximum of each sample of ``x`` before the clamp, for the caller's range check
    (:func:`~defocus_xai._images.check_extremes`); then the first derivatives at the edge scale and
    at the re-blur pair (``scales``: their indices in ``taps``) of ``gray`` reflect-padded by the
    kernels' radius, each with a frame of two replicated pixels.
    """
    checks = torch.stack([x.amin((1, 2, 3)), x.amax((1, 2, 3))], 1)
    gray = x.clamp(0.0, 1.0).mean(1, keepdim=True)
    r = len(taps[0][0]) // 2
    padded = _reflect(_reflect(gray, r, -1), r, -2)
    ie, i1, i2 = scales
    d = _derivatives(padded, taps, [(i, h, v) for i in (ie, i1, i2) for h, v in ((1, 0), (0, 1))], 2)
    return (gray, checks) + tuple(d[(i, h, v)] for i in (ie, i1, i2) for h, v in ((1, 0), (0, 1)))


def front(gx: torch.Tensor, gy: torch.Tensor) -> tuple:
    """``(mag, peaks, sample)`` from the edge scale's framed derivatives of :func:`derivatives` (one
    graph, compiled without contracted multiply-adds, as the eager code rounds them: the
    suppression's ties stay ties): the gradient magnitude, its non-maximum suppression as ``uint8``
    0 / 1, and the values of ``mag`` that :func:`~.edges.edge_thresholds` takes its percentile of.
    Masks leave the graphs through float selects converted to ``uint8``: inductor vectorizes those,
    not ``bool`` arithmetic (element by element, several times slower).
    """
    H, W = gx.shape[-2] - 4, gx.shape[-1] - 4
    gx, gy = gx[..., 2:H + 2, 2:W + 2], gy[..., 2:H + 2, 2:W + 2]
    frame = _zero_frame(torch.sqrt(gx * gx + gy * gy))
    mag = frame[..., 1:H + 1, 1:W + 1]         # from the frame: the same values as its neighbours
    peaks = torch.where(_suppress(gx, gy, mag, frame), 1.0, 0.0).to(torch.uint8)
    return mag, peaks, _percentile_sample(mag)


def at_edges(ix1, iy1, ix2, iy2, centre: torch.Tensor, block: torch.Tensor,
             cfg: EstimatorConfig) -> tuple:
    """``(sigma, sums)`` from the re-blur pair's framed derivatives of :func:`derivatives` at the
    edge pixels (one graph, dynamic in their number ``K``): ``centre``, ``block`` ``(K,)`` are their
    flat indices into the framed maps and of their ``2 x 2`` blocks (:func:`~.native.edge_pixels`).
    Returns sigma ``(K,)`` and the sums of ``sigma * weight`` and of the straight-edge weight over
    the blocks ``(2, B, 1, ceil(H / 2), ceil(W / 2))``.

    The eager gather of :func:`~.ratio._cross_derivatives` (a 5-point cross per channel) as indirect
    loads fused with the eager code's own ``_sigma_and_weight``; no clamping: the frame's replicated
    pixels are the clamped ones.
    """
    B, _, Hp, Wp = ix1.shape
    h, w = (Hp - 3) // 2, (Wp - 3) // 2          # ceil of the unframed size / 2
    c, dxs, dys = [], [], []
    for p in (ix1, iy1, ix2, iy2):
        flat = p.reshape(-1)
        v = [flat[centre + o] for o in (0, -2, -1, 1, 2, -2 * Wp, -Wp, Wp, 2 * Wp)]
        c.append(v[0])
        dxs.append((8.0 * (v[3] - v[2]) - (v[4] - v[1])) / 12.0)
        dys.append((8.0 * (v[7] - v[6]) - (v[8] - v[5])) / 12.0)
    sigma, weight = _sigma_and_weight(c, dxs, dys, cfg)
    sums = ix1.new_zeros(2, B * h * w).index_add(1, block, torch.stack([sigma * weight, weight]))
    return sigma, sums.view(2, B, 1, h, w)


def _reflect(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Reflect padding by ``0 < r < size`` along ``dim`` (the edge value not repeated, as
    :func:`~.filters._pad`), from flipped slices."""
    n = x.shape[dim]
    return torch.cat([x.narrow(dim, 1, r).flip(dim), x, x.narrow(dim, n - 1 - r, r).flip(dim)], dim)
