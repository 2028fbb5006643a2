"""Sparse sigma with a model-consistency confidence (``recipe="robust"``).

The isolated blurred step predicts the squared gradient ratio of *every* pair of re-blur scales from one
sigma. Sigma comes from the pair ``(std1, std2)`` exactly as in ``recipe="ours"`` (noise-corrected; under
strong noise, blended with the pair ``(std2, std3)``), and a third scale ``std3 = STD3_FACTOR * std2``
checks it: edges whose measured ratios depart from the step model (neighbouring edges within the
re-blur support, junctions, profiles "sharper than a step") get a low confidence, which the propagation
uses as the weight of their value. Sigma is floored at the pixel aperture's ``SIGMA_FLOOR`` (a sampled
image holds no sharper edge). Details: ``docs/estimator.md``.
"""

from __future__ import annotations

import math

import torch

from .config import EstimatorConfig
from .noise import noise_gradient_energy
from .ratio import _cross_derivatives, _local_frame, _log_r2, _scatter_at_edges, _structure_weight, sigma_from_ratio

__all__ = ["robust_edge_sigma", "STD3_FACTOR", "RESIDUAL_TOL", "MIN_CONFIDENCE", "SIGMA_FLOOR",
           "NOISE_VAR"]

#: The consistency scale, as a multiple of ``std2`` (3 px with the recipe's pair 1.0 / 1.5: far
#: enough out that a neighbouring edge 3-4 px away moves the residual).
STD3_FACTOR = 2.0
#: Tolerance (in log R^2) of the model residuals: a disc-shaped lens blur departs from the Gaussian
#: step model by 0.05-0.16 (isolated disc steps of sigma 1-3 px); 0.2 would let 4 px bars through.
RESIDUAL_TOL = 0.15
#: Log-ratio noise variance of the (std1, std2) pair above which sigma leans on the (std2, std3) pair.
NOISE_VAR = 0.03
#: Smallest sigma (px) reported at an edge: the second moment of the unit pixel aperture, sqrt(1 / 12).
#: Point sampling reads edges sharper than this as "sharper than a step" (sigma 0).
SIGMA_FLOOR = math.sqrt(1.0 / 12.0)
#: Floor of the confidence (relative to the straight-edge weight), so that an image whose every
#: edge fails the test still gets a map from its best edges.
MIN_CONFIDENCE = 1e-4


def _model_log_r2(sigma: torch.Tensor, sa: float, sb: float) -> torch.Tensor:
    s2 = sigma * sigma
    return torch.log((s2 + sb * sb) / (s2 + sa * sa))


def _consistency(lr12, lr23, sig12, stds, rel_noise):
    """``exp(-(r12^2 + r23^2) / tol^2)`` of the step model (see :func:`robust_edge_sigma`)."""
    beyond_step = (lr12 - _model_log_r2(torch.zeros_like(sig12), stds[0], stds[1])).clamp_min(0.0)
    r23 = lr23 - _model_log_r2(sig12.detach(), stds[1], stds[2])
    tol2 = RESIDUAL_TOL ** 2 + rel_noise
    return torch.exp(-(beyond_step ** 2 + r23 ** 2) / tol2)


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
        its expected gradient energy is removed at each scale, widens the residual tolerance, and
        moves sigma from the ``(std1, std2)`` pair towards the ``(std2, std3)`` pair where the
        former's log-ratio noise variance exceeds ``NOISE_VAR``.

    Returns
    -------
    sparse, confidence : torch.Tensor
        ``(B, 1, H, W)`` each: sigma at edge pixels, at least ``SIGMA_FLOOR`` (zero elsewhere,
        differentiable) and the weight ``w_struct * exp(-(r12^2 + r23^2) / tol^2)`` (no gradient),
        where ``r12`` is how far the ``(std1, std2)`` ratio lies beyond a perfect step and ``r23``
        the departure of the ``(std2, std3)`` ratio from the one the ``(std1, std2)`` sigma predicts.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus import EstimatorConfig
    >>> d = torch.zeros(1, 3, 2, 8, 8)
    >>> no_edges = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    >>> robust_edge_sigma(d, (0, 1, 2), no_edges, EstimatorConfig(), torch.zeros(1))[1].sum()
    tensor(0.)
    """
    return _scatter_at_edges(d, edges, lambda idx: _robust_sigma_and_weight(d, scales, idx, config, noise))


def _robust_sigma_and_weight(d, scales, idx, config: EstimatorConfig, noise):
    """Sigma (floored, differentiable) and confidence (no gradient) at the edge pixels ``idx``."""
    H, W = d.shape[-2:]
    stds = (config.std1, config.std2, STD3_FACTOR * config.std2)
    c, dxs, dys = _cross_derivatives(d, scales, idx)
    nz = noise.to(d.dtype)[idx // (H * W)]
    frames, rel_noise = [], []
    for k, s in enumerate(stds):
        m2, inn, itt, int_ = _local_frame(c, dxs, dys, k)
        e_n = noise_gradient_energy(nz, s)
        m2c = (m2 - e_n).clamp_min(0.01 * m2)
        rel_noise.append((2.0 * e_n / m2c).detach())
        frames.append((m2c, inn, itt, int_))
    lr12 = _log_r2(frames[0][:2], frames[1][:2], stds[0], stds[1])
    lr23 = _log_r2(frames[1][:2], frames[2][:2], stds[1], stds[2])
    sig12 = sigma_from_ratio(torch.exp(lr12.clamp(-20.0, 20.0)), stds[0], stds[1], config.sigma_max)
    sig23 = sigma_from_ratio(torch.exp(lr23.clamp(-20.0, 20.0)), stds[1], stds[2], config.sigma_max)
    # Noise: the (std1, std2) ratio's log variance is about rel_noise[0] + rel_noise[1]; where it
    # exceeds NOISE_VAR the value leans on the (std2, std3) pair, whose noise is far smaller.
    alpha = NOISE_VAR / (NOISE_VAR + rel_noise[0] + rel_noise[1])
    sig = alpha * sig12 + (1.0 - alpha) * sig23
    with torch.no_grad():
        w = _consistency(lr12, lr23, sig12, stds, sum(rel_noise))
        m2c, _, itt2, int2 = frames[1]
        w_struct = _structure_weight(itt2, int2, m2c, stds[1] ** 2, config.structure_scale)
        conf = w_struct * w.clamp_min(MIN_CONFIDENCE)
    return sig.clamp_min(SIGMA_FLOOR), conf
