"""Sparse sigma with a model-consistency confidence (``recipe="robust"``).

The isolated blurred step predicts the squared gradient ratio of *every* pair of re-blur scales from one
sigma. Sigma comes from the pair ``(std1, std2)`` exactly as in ``recipe="ours"`` (noise-corrected), and a
third scale ``std3 = STD3_FACTOR * std2`` checks it: edges whose measured ratios depart from the step
model (neighbouring edges within the re-blur support, junctions, profiles "sharper than a step") get a
low confidence, which the propagation uses as the weight of their value. Details: ``docs/estimator.md``.
"""

from __future__ import annotations

import torch

from .config import EstimatorConfig
from .noise import noise_gradient_energy
from .ratio import _cross_derivatives, _local_frame, sigma_from_ratio

__all__ = ["robust_edge_sigma", "STD3_FACTOR", "RESIDUAL_TOL", "MIN_CONFIDENCE"]

#: The consistency scale, as a multiple of ``std2``.
STD3_FACTOR = 1.5
#: Tolerance (in log R^2) of the model residuals (a sharp edge read as 0.5 px moves the (std2, std3)
#: residual by 0.03).
RESIDUAL_TOL = 0.1
#: Floor of the confidence (relative to the straight-edge weight), so that an image whose every
#: edge fails the test still gets a map from its best edges.
MIN_CONFIDENCE = 1e-4


def _log_r2(fa, fb, sa: float, sb: float) -> torch.Tensor:
    """Centre-corrected log of the squared ratio between scales ``sa < sb`` (see ``ratio.py``)."""
    (m2a, inna), (m2b, innb) = fa, fb
    delta = sb * sb - sa * sa
    q = inna * innb / torch.sqrt(m2a * m2b)
    corr = (delta * q).clamp(0.0, delta / (sa * sa * sb * sb))
    return torch.log(m2a) - torch.log(m2b) + corr


def _model_log_r2(sigma: torch.Tensor, sa: float, sb: float) -> torch.Tensor:
    s2 = sigma * sigma
    return torch.log((s2 + sb * sb) / (s2 + sa * sa))


def robust_edge_sigma(d: torch.Tensor, scales: tuple, edges: torch.Tensor, config: EstimatorConfig,
                      noise: torch.Tensor):
    """Sparse sigma and its confidence at the edge pixels, with the three-scale consistency test.

    Parameters
    ----------
    d : torch.Tensor
        ``(B, S, 2, H, W)`` first derivatives (``Ix, Iy`` per scale).
    scales : (int, int, int)
        Indices of ``std1``, ``std2`` and ``STD3_FACTOR * std2`` in ``d``.
    edges : torch.Tensor
        ``(B, 1, H, W)`` bool edge mask.
    config : EstimatorConfig
        Supplies ``std1``, ``std2``, ``sigma_max`` and ``structure_scale``.
    noise : torch.Tensor
        ``(B,)`` white-noise std of each image (:func:`~defocus_xai.defocus.noise.noise_level`):
        its expected gradient energy is removed at each scale and widens the residual tolerance.

    Returns
    -------
    sparse, confidence : torch.Tensor
        ``(B, 1, H, W)`` each: sigma at edge pixels (zero elsewhere, differentiable) and the
        weight ``w_struct * exp(-(r12^2 + r23^2) / tol^2)`` (no gradient), where ``r12`` is how far
        the ``(std1, std2)`` ratio lies beyond a perfect step and ``r23`` the departure of the
        ``(std2, std3)`` ratio from the one the estimated sigma predicts.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus import EstimatorConfig
    >>> d = torch.zeros(1, 3, 2, 8, 8)
    >>> no_edges = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    >>> robust_edge_sigma(d, (0, 1, 2), no_edges, EstimatorConfig(), torch.zeros(1))[1].sum()
    tensor(0.)
    """
    B, _, _, H, W = d.shape
    idx = edges.reshape(-1).nonzero().squeeze(1)
    sparse = torch.zeros(B * H * W, dtype=d.dtype, device=d.device)
    conf = torch.zeros(B * H * W, dtype=d.dtype, device=d.device)
    if idx.numel() == 0:
        return sparse.view(B, 1, H, W), conf.view(B, 1, H, W)
    stds = (config.std1, config.std2, STD3_FACTOR * config.std2)
    c, dxs, dys = _cross_derivatives(d, scales, idx)
    nz = noise.to(d.dtype)[idx // (H * W)]
    frames, rel_noise = [], 0.0
    for k, s in enumerate(stds):
        m2, inn, itt, int_ = _local_frame(c, dxs, dys, k)
        e_n = noise_gradient_energy(nz, s)
        m2c = (m2 - e_n).clamp_min(0.01 * m2)
        rel_noise = rel_noise + 2.0 * e_n / m2c
        frames.append((m2c, inn, itt, int_))
    lr12 = _log_r2(frames[0][:2], frames[1][:2], stds[0], stds[1])
    sig = sigma_from_ratio(torch.exp(lr12.clamp(-20.0, 20.0)), stds[0], stds[1], config.sigma_max)
    sparse = sparse.index_put((idx,), sig)
    with torch.no_grad():
        beyond_step = (lr12 - _model_log_r2(torch.zeros_like(sig), stds[0], stds[1])).clamp_min(0.0)
        lr23 = _log_r2(frames[1][:2], frames[2][:2], stds[1], stds[2])
        r23 = lr23 - _model_log_r2(sig.detach(), stds[1], stds[2])
        tol2 = RESIDUAL_TOL ** 2 + rel_noise.detach()
        w = torch.exp(-(beyond_step ** 2 + r23 ** 2) / tol2)
        if config.structure_scale > 0:
            _, _, itt2, int2 = frames[1]
            rho2 = (itt2 * itt2 + 2 * int2 * int2) * (stds[1] ** 2) / frames[1][0]
            w_struct = torch.exp(-rho2 / (config.structure_scale ** 2))
        else:
            w_struct = torch.ones_like(w)
        conf = conf.index_put((idx,), (w_struct * w.clamp_min(MIN_CONFIDENCE)).detach())
    return sparse.view(B, 1, H, W), conf.view(B, 1, H, W)
