"""Batched linear filters in torch: Gaussian derivatives, box filter, guided filter.

All functions take and return ``(B, C, H, W)`` floating point tensors, work on any device and are
differentiable. Borders are handled by reflection (``reflect`` padding, the edge pixel not repeated);
where an image is too small for that, by replication.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_kernels_1d",
    "gaussian_derivatives",
    "gaussian_blur",
    "box_filter",
    "guided_filter",
]

#: Default kernel half-width in multiples of the standard deviation. The ratio formula of the
#: estimator needs the kernels to hold the whole edge response: at 4 std the truncated tail of a
#: derivative-of-Gaussian kernel biases the ratio by ~1e-3 (0.05 px of sigma at 4 px blur), at 5 std
#: by ~1e-5.
DEFAULT_TRUNCATE = 5.0


def _pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    if ph == 0 and pw == 0:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (pw, pw, ph, ph), mode=mode)


# Separable filtering with 1-D convolutions. On the CPU, ``conv1d`` over image rows (channels
# folded into the batch) is several times faster than ``conv2d`` with ``1 x L`` / ``L x 1`` or
# grouped kernels, and computes the same dot products (bitwise identical results); the vertical
# pass runs on the transposed image.
def _rows(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Correlate every row of every channel of ``x`` ``(B, C, H, W + L - 1)`` with the 1-D kernel
    ``k`` ``(L,)``: ``(B, C, H, W)``."""
    B, C, H, Wp = x.shape
    L = k.shape[-1]
    return F.conv1d(x.reshape(B * C * H, 1, Wp), k.view(1, 1, L)).view(B, C, H, Wp - L + 1)


def _cols(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Correlate every column of every channel of ``x`` ``(B, C, H + L - 1, W)`` with ``k``:
    ``(B, C, H, W)`` (contiguous)."""
    B, C, Hp, W = x.shape
    L = k.shape[-1]
    xt = x.transpose(-1, -2).reshape(B * C * W, 1, Hp)
    y = F.conv1d(xt, k.view(1, 1, L)).view(B, C, W, Hp - L + 1)
    return y.transpose(-1, -2).contiguous()


def _fma_chain(view, w: list) -> torch.Tensor:
    """``sum_j w[j] view(j)`` accumulated in order ``j = 0, 1, ...``, one fused multiply-add per
    tap (``Tensor.add_(v, alpha=w)``)."""
    out = view(0) * w[0]
    for j in range(1, len(w)):
        out.add_(view(j), alpha=w[j])
    return out


def _separable(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Same symmetric 1-D kernel ``k`` along the width then the height, reflect padding."""
    r = (k.shape[-1] - 1) // 2
    y = _rows(_pad(x, 0, r), k)
    return _cols(_pad(y, r, 0), k)


#: Up to this many taps, short symmetric kernels are applied as sums of shifted views (a few
#: elementwise passes), which beats any convolution call for them by an order of magnitude.
_SHIFT_TAPS = 15


def _window_sum(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sums over ``k`` consecutive elements along ``dim`` (valid part only)."""
    n = x.shape[dim] - k + 1
    out = x.narrow(dim, 0, n) + x.narrow(dim, 1, n) if k > 1 else x.narrow(dim, 0, n).clone()
    for j in range(2, k):
        out += x.narrow(dim, j, n)
    return out


def _symmetric_1d(x: torch.Tensor, w: list, dim: int) -> torch.Tensor:
    """Correlation with the symmetric kernel ``w`` (odd length) along ``dim`` (valid part)."""
    r = len(w) // 2
    n = x.shape[dim] - 2 * r
    out = x.narrow(dim, r, n) * w[r]
    for j in range(1, r + 1):
        out += (x.narrow(dim, r - j, n) + x.narrow(dim, r + j, n)) * w[r + j]
    return out



def _chains(x: torch.Tensor, taps, pairs) -> torch.Tensor:
    """Separable filtering of the padded ``x`` ``(B, 1, H + 2r, W + 2r)`` as multiply-add chains:
    ``(B, S, K, H, W)`` for the ``S`` scales of ``taps`` and the ``K`` (horizontal, vertical) derivative
    orders of ``pairs``."""
    B, L = x.shape[0], len(taps[0][0])
    H, W = x.shape[-2] - L + 1, x.shape[-1] - L + 1
    rows, out = {}, []
    for i, kern in enumerate(taps):
        for h, v in pairs:
            if (i, h) not in rows:
                rows[(i, h)] = _fma_chain(lambda j: x[..., j:j + W], kern[h])
            row = rows[(i, h)]
            out.append(_fma_chain(lambda j: row[..., j:j + H, :], kern[v]))
    return torch.cat(out, 1).view(B, len(taps), len(pairs), H, W)


@lru_cache(maxsize=64)
def _kernels_cpu(std: float, radius: int) -> torch.Tensor:
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (k / std) ** 2)
    g0 = g / g.sum()
    # Correlation kernels (F.conv2d correlates): out(x) = sum_k w(k) f(x + k).
    g1 = k * g0
    g1 = g1 / (k * g1).sum()                     # exact on ramps: sum_k k w1(k) = 1
    g2 = (k**2 / std**2 - 1.0) * g0
    g2 = g2 - g0 * (g2.sum() / g0.sum())         # zero response to constants
    g2 = g2 / (0.5 * (k**2 * g2).sum())          # exact on x^2 / 2: second derivative 1
    return torch.stack([g0, g1, g2])


@lru_cache(maxsize=64)
@torch.compiler.assume_constant_result
def _taps(std: float, radius: int, dtype: torch.dtype | None) -> tuple:
    """The three kernels of :func:`_kernels_cpu` as Python floats, rounded to ``dtype`` first (as a
    kernel tensor of that dtype holds them; ``None``: not rounded); a constant for ``torch.compile``."""
    k = _kernels_cpu(std, radius)
    k = k if dtype is None else k.to(dtype).to(torch.float64)
    return tuple(tuple(row) for row in k.tolist())


def gaussian_kernels_1d(std: float, radius: int | None = None, *, truncate: float = DEFAULT_TRUNCATE,
                        dtype=torch.float32, device=None) -> torch.Tensor:
    """Sampled 1-D Gaussian and its first two derivatives, as correlation kernels.

    Parameters
    ----------
    std : float
        Standard deviation in pixels (> 0).
    radius : int, optional
        Half-width; default ``ceil(truncate * std)``.
    truncate : float
        Half-width in standard deviations when ``radius`` is not given.
    dtype, device
        Of the returned tensor.

    Returns
    -------
    torch.Tensor
        ``(3, 2 * radius + 1)``: smoothing kernel (sums to 1), first derivative (exact on ramps) and
        second derivative (exact on parabolas), oriented for ``torch.nn.functional.conv2d``
        (cross-correlation), so that filtering ``f`` gives ``G * f``, ``(G * f)'`` and ``(G * f)''``.

    Examples
    --------
    >>> from defocus_xai.defocus.filters import gaussian_kernels_1d
    >>> gaussian_kernels_1d(1.5).shape
    torch.Size([3, 17])
    """
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    if radius is None:
        radius = int(math.ceil(truncate * std))
    return _kernels_cpu(float(std), int(radius)).to(dtype=dtype, device=device)


def gaussian_derivatives(gray: torch.Tensor, stds, *, second_order: bool = False,
                         truncate: float = DEFAULT_TRUNCATE) -> torch.Tensor:
    """Derivative-of-Gaussian responses of a gray batch at several scales, in two conv calls.

    The filtering is separable: one horizontal 1-D convolution produces the smoothed, first- and
    second-derivative rows of every scale at once (stacked kernels); one depthwise vertical 1-D
    convolution of the transposed rows completes them. On the CPU the same sums are accumulated
    as fused multiply-add chains over shifted views, tap by tap (same results, much faster).

    Parameters
    ----------
    gray : torch.Tensor
        ``(B, 1, H, W)``.
    stds : sequence of float
        Gaussian standard deviations in pixels.
    second_order : bool
        Also return the second derivatives (default: only ``Ix, Iy``).
    truncate : float
        Kernel half-width in multiples of the largest std (all kernels share it).

    Returns
    -------
    torch.Tensor
        ``(B, S, K, H, W)`` with ``K = 5`` channels ``(Ix, Iy, Ixx, Ixy, Iyy)`` per scale, or
        ``K = 2`` ``(Ix, Iy)`` without second order; x runs along the width (columns), y along the
        height (rows).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.filters import gaussian_derivatives
    >>> ramp = torch.arange(32.0).repeat(32, 1)[None, None]
    >>> d = gaussian_derivatives(ramp, [1.5, 2.0], second_order=True)
    >>> round(float(d[0, 0, 0, 16, 16]), 4)   # d/dx of the ramp
    1.0
    """
    if gray.ndim != 4 or gray.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, H, W) tensor, got {tuple(gray.shape)}")
    stds = [float(s) for s in stds]
    radius = int(math.ceil(truncate * max(stds)))
    n = len(stds)
    L = 2 * radius + 1
    if second_order:
        # (horizontal order, vertical order) for Ix, Iy, Ixx, Ixy, Iyy
        pairs = [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    else:
        pairs = [(1, 0), (0, 1)]
    B, _, H, W = gray.shape
    x = _pad(gray, radius, radius)
    if gray.device.type == "cpu":
        # Multiply-add chains over shifted views, tap by tap in kernel order (each step one fused
        # multiply-add): the same arithmetic as the 1-D convolution below, bitwise, in a fraction
        # of the time for these single-channel, 21-tap filters; no layout copies.
        taps = [_taps(s, radius, gray.dtype) for s in stds]     # [scale][order][tap]
        return _chains(x, taps, pairs)
    kern = torch.stack([gaussian_kernels_1d(s, radius, dtype=gray.dtype, device=gray.device)
                        for s in stds])                       # (S, 3, L)
    kh = torch.stack([kern[i, h] for i in range(n) for h, _ in pairs])    # (S*K, L)
    kv = torch.stack([kern[i, v] for i in range(n) for _, v in pairs])    # (S*K, L)
    nk = kh.shape[0]
    Hp, Wp = x.shape[-2:]
    # Rows: one input channel, every kernel at once -> (B, Hp, S*K, W).
    rows = F.conv1d(x.reshape(B * Hp, 1, Wp), kh.view(nk, 1, L))
    # Columns: each channel with its own kernel, on the transposed rows -> (B, W, S*K, H).
    cols = rows.view(B, Hp, nk, W).permute(0, 3, 2, 1).reshape(B * W, nk, Hp)
    out = F.conv1d(cols, kv.view(nk, 1, L), groups=nk)
    out = out.view(B, W, nk, H).permute(0, 2, 3, 1).contiguous()         # (B, S*K, H, W)
    return out.view(B, n, len(pairs), H, W)


def gaussian_blur(x: torch.Tensor, std: float, *, truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian blur of every channel (reflect padding).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)``.
    std : float
        Standard deviation in pixels; ``0`` returns ``x`` unchanged.
    truncate : float
        Kernel half-width in standard deviations.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.filters import gaussian_blur
    >>> round(gaussian_blur(torch.ones(1, 2, 16, 16), 2.0).mean().item(), 6)
    1.0
    """
    if std <= 0:
        return x
    radius = max(1, int(math.ceil(truncate * std)))
    if 2 * radius + 1 <= _SHIFT_TAPS:
        w = _taps(float(std), int(radius), None)[0]
        return _symmetric_1d(_pad(_symmetric_1d(_pad(x, 0, radius), w, -1), radius, 0), w, -2)
    g0 = gaussian_kernels_1d(std, radius, dtype=x.dtype, device=x.device)[0]
    return _separable(x, g0)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a ``(2 radius + 1)`` square window, with reflect padding (separable).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)``.
    radius : int
        Window half-width in pixels.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.filters import box_filter
    >>> box_filter(torch.ones(1, 1, 8, 8), 2).allclose(torch.ones(1, 1, 8, 8))
    True
    """
    if radius <= 0:
        return x
    k = 2 * radius + 1
    if k <= _SHIFT_TAPS:
        y = _window_sum(_pad(x, 0, radius), k, -1)
        return _window_sum(_pad(y, radius, 0), k, -2).mul_(1.0 / (k * k))
    return _separable(x, torch.full((k,), 1.0 / k, dtype=x.dtype, device=x.device))


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float, *,
                  full_guide: torch.Tensor | None = None) -> torch.Tensor:
    """Guided filter (He et al., 2013) with a gray guide: edge-aware smoothing of ``src``.

    ``q = mean(a) * guide + mean(b)`` with ``a = cov(guide, src) / (var(guide) + eps)`` and
    ``b = mean(src) - a * mean(guide)`` over ``(2 radius + 1)`` square windows.

    Parameters
    ----------
    guide : torch.Tensor
        ``(B, 1, H, W)``, e.g. the gray image in ``[0, 1]``.
    src : torch.Tensor
        ``(B, C, H, W)``, the map to smooth.
    radius : int
        Window half-width in pixels.
    eps : float
        Regularization; edges of the guide with a variance well above ``eps`` are kept.
    full_guide : torch.Tensor, optional
        "Fast guided filter" (He & Sun 2015): ``guide`` and ``src`` are a subsampled version of
        ``full_guide``; the linear coefficients are computed on the small grid, upsampled
        bilinearly and applied to ``full_guide``. The output then has ``full_guide``'s size.

    Returns
    -------
    torch.Tensor
        Same shape as ``src``; may under- or overshoot ``src``'s range slightly near guide edges.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.filters import guided_filter
    >>> g = torch.rand(1, 1, 32, 32)
    >>> guided_filter(g, torch.full((1, 1, 32, 32), 2.0), 4, 1e-3).allclose(torch.tensor(2.0))
    True
    """
    c = src.shape[1]
    stack = torch.cat([guide, src, guide * src, guide * guide], 1)
    m = box_filter(stack, radius)
    mean_i, mean_p = m[:, :1], m[:, 1:1 + c]
    corr_ip, corr_ii = m[:, 1 + c:1 + 2 * c], m[:, 1 + 2 * c:]
    var_i = (corr_ii - mean_i * mean_i).clamp_min(0.0)
    a = (corr_ip - mean_i * mean_p) / (var_i + eps)
    b = mean_p - a * mean_i
    mab = box_filter(torch.cat([a, b], 1), radius)
    if full_guide is not None:
        if full_guide.shape[-2:] != mab.shape[-2:]:
            mab = F.interpolate(mab, size=full_guide.shape[-2:], mode="bilinear",
                                align_corners=False)
        guide = full_guide
    return mab[:, :c] * guide + mab[:, c:]
