"""Sigma at edge pixels from the dual re-blur ratio, corrected to the edge centre.

The formula and the centre correction are derived in ``docs/estimator.md`` ("The recipe", step 3).
"""

from __future__ import annotations

import torch

from .config import DEFAULT_SIGMA_MAX, EstimatorConfig

__all__ = ["sigma_from_ratio", "edge_sigma"]


def sigma_from_ratio(r2: torch.Tensor, std1: float, std2: float,
                     sigma_max: float = DEFAULT_SIGMA_MAX) -> torch.Tensor:
    """Blur sigma from the squared dual re-blur ratio ``R^2 = |grad_std1|^2 / |grad_std2|^2``.

    ``sigma = sqrt((R^2 std1^2 - std2^2) / (1 - R^2))``, the inverse of
    ``R^2 = (sigma^2 + std2^2) / (sigma^2 + std1^2)``. Outside the open interval
    ``1 < R^2 < (std2 / std1)^2`` the formula has no real solution: ``R^2 >= (std2/std1)^2`` (a
    sharper profile than a perfect step) gives 0, ``R^2 <= 1`` (the limit of infinite blur) gives
    ``sigma_max``; inside, the result is clamped to ``[0, sigma_max]``. Never NaN; the gradient is
    finite everywhere (zero in the clamped regions).

    Parameters
    ----------
    r2 : torch.Tensor
        Squared ratios, any shape.
    std1, std2 : float
        The re-blur pair, ``0 < std1 < std2``.
    sigma_max : float
        Upper clamp in pixels.

    Returns
    -------
    torch.Tensor
        Sigma in pixels, same shape as ``r2``.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus import sigma_from_ratio
    >>> r2 = torch.tensor([(4.0 + 4.0) / (4.0 + 2.25)])   # sigma = 2 with the pair 1.5 / 2.0
    >>> round(float(sigma_from_ratio(r2, 1.5, 2.0)), 5)
    2.0
    """
    k_hi = (std2 / std1) ** 2
    valid = (r2 > 1.0 + 1e-7) & (r2 < k_hi)
    mid = torch.full_like(r2, 0.5 * (1.0 + k_hi))
    r2s = torch.where(valid, r2, mid)
    s2 = (r2s * std1**2 - std2**2) / (1.0 - r2s)
    sig = torch.sqrt(s2.clamp_min(1e-12)).clamp_max(sigma_max)
    outside = torch.where(r2 >= k_hi, torch.zeros_like(r2), torch.full_like(r2, float(sigma_max)))
    return torch.where(valid, sig, outside)


def _cross_derivatives(d: torch.Tensor, scales: tuple, idx: torch.Tensor):
    """First derivatives and their 5-point central differences at the pixels ``idx``.

    ``d`` is ``(B, S, 2, H, W)`` (``Ix, Iy`` per scale), ``scales`` the indices of the re-blur
    scales in it, ``idx`` flat indices into ``(B, H, W)``. Returns ``c, dxs, dys``, each
    ``(2 n, K)`` over the channels ``Ix1, Iy1, Ix2, Iy2, ...`` of the ``n`` scales: the values, their
    x and their y derivatives (one gather of a 5-point cross per channel, indices clamped at the
    border).
    """
    B, S, _, H, W = d.shape
    n_pix = H * W
    b = idx // n_pix
    rem = idx - b * n_pix
    y, x = rem // W, rem % W
    # Channel planes (Ix, Iy at std1, then at std2, ...) in d's flat layout.
    chan = torch.tensor([(2 * k + j) * n_pix for k in scales for j in (0, 1)], device=d.device)
    # Cross offsets: centre, x -2, -1, +1, +2, y -2, -1, +1, +2 (clamped at the border).
    steps = torch.tensor([0, -2, -1, 1, 2], device=d.device)
    # Offsets first and pixels last, so that every slice below is contiguous.
    xx = (x.view(1, -1) + steps.view(-1, 1)).clamp_(0, W - 1)            # (5, K)
    yy = (y.view(1, -1) + steps[1:].view(-1, 1)).clamp_(0, H - 1)        # (4, K)
    sp = torch.cat([y.view(1, -1) * W + xx, yy * W + x.view(1, -1)], 0)  # (9, K)
    base = (b * (S * 2 * n_pix)).view(1, 1, -1) + chan.view(1, -1, 1)   # (1, 2n, K)
    v = d.reshape(-1).take(base + sp.view(9, 1, -1))                     # (9, 2n, K)
    dxs = (8.0 * (v[3] - v[2]) - (v[4] - v[1])) / 12.0
    dys = (8.0 * (v[7] - v[6]) - (v[8] - v[5])) / 12.0
    return v[0], dxs, dys


def _local_frame(c, dxs, dys, k: int):
    """Squared gradient magnitude and second derivatives ``I_nn, I_tt, I_nt`` of scale ``k``."""
    ix, iy = c[2 * k], c[2 * k + 1]
    ixx, iyy = dxs[2 * k], dys[2 * k + 1]
    ixy = 0.5 * (dys[2 * k] + dxs[2 * k + 1])
    m2 = (ix * ix + iy * iy).clamp_min(1e-30)
    inn = (ix * ix * ixx + 2 * ix * iy * ixy + iy * iy * iyy) / m2
    itt = (iy * iy * ixx - 2 * ix * iy * ixy + ix * ix * iyy) / m2
    int_ = (ix * iy * (iyy - ixx) + (ix * ix - iy * iy) * ixy) / m2
    return m2, inn, itt, int_


def _sigma_and_weight(c, dxs, dys, config: EstimatorConfig):
    """Sigma (differentiable) and the straight-edge weight (no gradient) from the first derivatives
    ``c`` and their x / y derivatives ``dxs``, ``dys`` (channels ``Ix1, Iy1, Ix2, Iy2`` first)."""
    s1, s2 = config.std1, config.std2
    m2_1, inn1, _, _ = _local_frame(c, dxs, dys, 0)
    m2_2, inn2, itt2, int2 = _local_frame(c, dxs, dys, 1)
    log_r2 = _log_r2((m2_1, inn1), (m2_2, inn2), s1, s2)
    r2 = torch.exp(log_r2.clamp(-20.0, 20.0))
    sig = sigma_from_ratio(r2, s1, s2, config.sigma_max)
    return sig, _structure_weight(itt2, int2, m2_2, s2 * s2, config.structure_scale)


def _log_r2(fa, fb, sa: float, sb: float) -> torch.Tensor:
    """Centre-corrected log of the squared ratio between scales ``sa < sb`` from their ``(m2, I_nn)``.

    ``q = I_nn / |grad I| = -d / S^2`` at each scale; the product of both gives the centre correction.
    """
    (m2a, inna), (m2b, innb) = fa, fb
    delta = sb * sb - sa * sa
    q = inna * innb / torch.sqrt(m2a * m2b)
    corr = (delta * q).clamp(0.0, delta / (sa * sa * sb * sb))
    return torch.log(m2a) - torch.log(m2b) + corr


def _structure_weight(itt, int_, m2, s_sq: float, structure_scale: float) -> torch.Tensor:
    """Straight-edge weight ``exp(-(rho / structure_scale)^2)`` at the scale of variance ``s_sq`` (no gradient).

    ``rho = s |(I_tt, sqrt2 I_nt)| / |grad I|`` is zero on any straight edge, large at corners and
    junctions; ``structure_scale = 0`` weights every edge pixel 1.
    """
    with torch.no_grad():
        if structure_scale > 0:
            rho2 = (itt * itt + 2 * int_ * int_) * s_sq / m2
            return torch.exp(-rho2 / (structure_scale ** 2))
        return torch.ones_like(m2)


def _scatter_at_edges(d: torch.Tensor, edges: torch.Tensor, sigma_and_weight):
    """``(sparse, confidence)`` maps ``(B, 1, H, W)``, zero off the edges.

    ``sigma_and_weight(idx)`` gives the sigma (differentiable) and the weight (detached here) at the
    flat edge-pixel indices ``idx`` into ``(B, H, W)``; it is not called when there is no edge pixel.
    """
    B, _, _, H, W = d.shape
    idx = edges.reshape(-1).nonzero().squeeze(1)
    sparse = torch.zeros(B * H * W, dtype=d.dtype, device=d.device)
    conf = torch.zeros(B * H * W, dtype=d.dtype, device=d.device)
    if idx.numel() > 0:
        sig, w = sigma_and_weight(idx)
        sparse = sparse.index_put((idx,), sig)
        conf = conf.index_put((idx,), w.detach())
    return sparse.view(B, 1, H, W), conf.view(B, 1, H, W)


def edge_sigma(d: torch.Tensor, scales: tuple, edges: torch.Tensor, config: EstimatorConfig):
    """Sparse sigma and propagation confidence at the edge pixels.

    Parameters
    ----------
    d : torch.Tensor
        ``(B, S, 2, H, W)`` first derivatives (``Ix, Iy`` per scale) of
        :func:`~defocus_xai.defocus.filters.gaussian_derivatives`.
    scales : (int, int)
        Indices of ``std1`` and ``std2`` in ``d``.
    edges : torch.Tensor
        ``(B, 1, H, W)`` bool edge mask.
    config : EstimatorConfig
        Supplies ``std1``, ``std2``, ``sigma_max`` and ``structure_scale``.

    Returns
    -------
    sparse, confidence : torch.Tensor
        ``(B, 1, H, W)`` each: sigma at edge pixels (zero elsewhere, differentiable) and the
        straight-edge weight ``exp(-(rho / structure_scale)^2)`` (no gradient).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus import EstimatorConfig
    >>> d = torch.zeros(1, 2, 2, 8, 8)
    >>> edge_sigma(d, (0, 1), torch.zeros(1, 1, 8, 8, dtype=torch.bool), EstimatorConfig())[0].sum()
    tensor(0.)
    """
    return _scatter_at_edges(d, edges, lambda idx: _sigma_and_weight(*_cross_derivatives(d, scales, idx), config))

