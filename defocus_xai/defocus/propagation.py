"""Propagation of sparse edge sigma to a dense map (``propagation="guided"``): fast, batched, differentiable.

Normalized convolution with push-pull filling (the zeros between edges never dilute sigma), then a
guided filter with the gray image as guide. Details: ``docs/estimator.md`` ("Propagation modes").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .filters import gaussian_blur, guided_filter

__all__ = ["normalized_fill", "guided_propagation"]


def normalized_fill(sparse: torch.Tensor, confidence: torch.Tensor, *, std: float = 2.0
                    ) -> torch.Tensor:
    """Fill a sparse map everywhere by normalized convolution and push-pull.

    Parameters
    ----------
    sparse : torch.Tensor
        ``(B, 1, H, W)`` values at confident pixels (anything elsewhere: they are weighted by zero).
    confidence : torch.Tensor
        ``(B, 1, H, W)`` non-negative weights (1 at edge pixels, 0 elsewhere).
    std : float
        Standard deviation in pixels of the Gaussian at full resolution.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)``: confidence-weighted local means of ``sparse``; all zeros for a sample with
        no confident pixel. Differentiable with respect to ``sparse``.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.propagation import normalized_fill
    >>> s = torch.zeros(1, 1, 32, 32); c = torch.zeros_like(s)
    >>> s[..., 5, 5] = 3.0; c[..., 5, 5] = 1.0
    >>> normalized_fill(s, c).allclose(torch.tensor(3.0))
    True
    """
    conf = confidence.to(sparse.dtype)
    stack = torch.cat([sparse * conf, conf], 1)
    levels = [gaussian_blur(stack, std)]
    while min(levels[-1].shape[-2:]) > 1:
        # Sum pooling by 2 (partial windows at odd sizes are averaged over what they hold and
        # rescaled to sums over four pixels).
        levels.append(4.0 * F.avg_pool2d(levels[-1], 2, ceil_mode=True))
    top = levels[-1]
    num, den = top[:, :1], top[:, 1:]
    val = torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))
    # Collapse to one value per image if the coarsest level is not 1x1 (non-square inputs).
    if val.shape[-2:] != (1, 1):
        tot = den.sum((-2, -1), keepdim=True)
        val = torch.where(tot > 0, (num).sum((-2, -1), keepdim=True) / tot.clamp_min(1e-12),
                          torch.zeros_like(tot))
    for lvl in reversed(levels[:-1]):
        up = F.interpolate(val, size=lvl.shape[-2:], mode="bilinear", align_corners=False) \
            if val.shape[-2:] != (1, 1) else val.expand(-1, -1, *lvl.shape[-2:])
        num, den = lvl[:, :1], lvl[:, 1:]
        w = den.clamp(0.0, 1.0)
        own = num / den.clamp_min(1e-12)
        val = torch.where(den > 0, w * own + (1 - w) * up, up)
    return val


def _block_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Means over ``k x k`` blocks, partial blocks at the bottom and right averaged over what they
    hold: ``F.avg_pool2d(x, k, ceil_mode=True)``, as a sum of strided views (faster on the CPU)."""
    H, W = x.shape[-2:]
    if k > 4:
        return F.avg_pool2d(x, k, ceil_mode=True)
    ph, pw = -H % k, -W % k
    xp = F.pad(x, (0, pw, 0, ph)) if ph or pw else x
    total = None
    for dy in range(k):
        for dx in range(k):
            v = xp[..., dy::k, dx::k]
            total = v.clone() if total is None else total.add_(v)
    h, w = total.shape[-2:]
    cy = torch.full((h, 1), float(k), dtype=x.dtype, device=x.device)
    cx = torch.full((1, w), float(k), dtype=x.dtype, device=x.device)
    if ph:
        cy[-1] = k - ph
    if pw:
        cx[0, -1] = k - pw
    return total.div_(cy * cx)


def guided_propagation(sparse: torch.Tensor, edges: torch.Tensor, gray: torch.Tensor, *,
                       fill_std: float = 2.0, radius: int = 4, eps: float = 1e-3,
                       subsample: int = 2) -> torch.Tensor:
    """Dense sigma from sparse edge sigma: normalized fill, then a guided filter.

    Parameters
    ----------
    sparse : torch.Tensor
        ``(B, 1, H, W)`` sigma at edge pixels.
    edges : torch.Tensor
        ``(B, 1, H, W)`` bool or float edge mask (the confidence of each sparse value).
    gray : torch.Tensor
        ``(B, 1, H, W)`` guide in ``[0, 1]``.
    fill_std : float
        Gaussian std (px) of the normalized convolution.
    radius : int
        Guided filter window half-width (px).
    eps : float
        Guided filter regularization (guide variance units).
    subsample : int
        Both steps run on a grid subsampled by this factor (sums of ``s c`` and ``c`` pooled over
        ``subsample x subsample`` blocks, ``fill_std`` and ``radius`` scaled down with it); the
        guided filter's linear coefficients are upsampled and applied to the full-resolution
        guide ("fast guided filter", He & Sun 2015), so the output keeps the guide's edges at
        full resolution. ``1`` computes everything at full resolution.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)``, not yet clamped.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.propagation import guided_propagation
    >>> e = torch.zeros(1, 1, 32, 32, dtype=torch.bool); e[..., 16] = True
    >>> d = guided_propagation(e * 2.0, e, torch.rand(1, 1, 32, 32))
    >>> d.allclose(torch.tensor(2.0), atol=1e-4)
    True
    """
    conf = edges.to(sparse.dtype)
    if subsample <= 1:
        filled = normalized_fill(sparse, conf, std=fill_std)
        return guided_filter(gray, filled, radius, eps)
    k = int(subsample)
    num = _block_mean(sparse * conf, k)
    den = _block_mean(conf, k)
    # num / den is the confidence-weighted block mean; den (block mean of the confidence) keeps
    # the support scale per full-resolution pixel.
    filled = normalized_fill(num / den.clamp_min(1e-12), den * (k * k), std=fill_std / k)
    small_gray = _block_mean(gray, k)
    return guided_filter(small_gray, filled, max(1, round(radius / k)), eps, full_guide=gray)
