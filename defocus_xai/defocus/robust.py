"""Sparse sigma of ``recipe="robust"``: ratio and profile fit, local consensus, boundary weight.

Per edge pixel, two readings of sigma are mixed: the dual re-blur ratio of the pair ``(std1, std2)``
exactly as in ``recipe="ours"`` (noise-corrected; under strong noise, blended with the pair ``(std2,
std3)``, ``std3 = STD3_FACTOR * std2``) and the multi-edge fit of the gradient profile across the edge
(:mod:`.robust_profile`, free of the interference of neighbouring edges that biases the ratio); the
three-scale step test of the ratio sets the mix (the mean on step-like edges, the fit alone elsewhere).
The fit runs at 3 of every 5 edge pixels (``FIT_RESIDUES``). Each value then becomes the median of the
fitted values in a ``CONSENSUS_WINDOW`` square of edge pixels (:mod:`.robust_consensus`), and its
confidence in the propagation drops where the medians on the two sides of the edge differ (an occlusion
boundary, whose sharp value belongs to one side only) and where the edge's gradient maximum does not
persist at the coarsest scale (a noise maximum on a smooth shading ramp, not an edge). Sigma is floored at
the pixel aperture's ``SIGMA_FLOOR`` (a sampled image holds no sharper edge). Details:
``docs/estimator.md``.
"""

from __future__ import annotations

import math

import torch

from .config import EstimatorConfig
from .noise import noise_gradient_energy
from .ratio import _cross_derivatives, _local_frame, _log_r2, _scatter_at_edges, sigma_from_ratio
from .robust_consensus import edge_median, side_medians
from .robust_profile import _sample_profiles, profile_sigma

__all__ = ["robust_edge_sigma", "STD3_FACTOR", "SIGMA_FLOOR", "NOISE_VAR", "CONSENSUS_WINDOW",
           "SIDE_WINDOW", "BOUNDARY_TOL", "FIT_RESIDUES", "PERSIST_OFFSET", "PERSIST_TOL"]

#: The third scale, as a multiple of ``std2`` (3 px with the recipe's pair 1.0 / 1.5): its pair
#: ``(std2, std3)`` carries sigma where noise swamps the ``(std1, std2)`` pair.
STD3_FACTOR = 2.0
#: Log-ratio noise variance of the (std1, std2) pair above which sigma leans on the (std2, std3) pair.
NOISE_VAR = 0.03
#: Smallest sigma (px) reported at an edge: the second moment of the unit pixel aperture, sqrt(1 / 12).
#: Point sampling reads edges sharper than this as "sharper than a step" (sigma 0).
SIGMA_FLOOR = math.sqrt(1.0 / 12.0)
#: Tolerance (in log R^2) of the isolated-step test of the three scales, which moves sigma from the mean
#: of ratio and fit to the fit alone: the edges of a bar of width 3-4 px depart by 0.37-0.88; a disc lens blur
#: by 0.05-0.16 (isolated disc steps of sigma 1-3 px) keeps the mean.
RESIDUAL_TOL = 0.5
#: The profile is fitted at the edge pixels with ``(x + 2 y) mod 5`` in these residues: 3 of every 5
#: pixels along any row, column or diagonal (neighbouring pixels of one edge share their profile; the
#: consensus window takes the median over the fitted ones).
FIT_RESIDUES = (0, 1, 3)
#: Offset (px) along the normal at which the persistence test compares the gradient at the coarsest
#: scale (std3) with the edge's own: a real edge's gradient maximum persists there (at sigma_max = 5 px
#: the centre exceeds both sides by 12 %), a noise maximum on a smooth shading ramp does not (the std3
#: gradient is flat or rises through it; its noise is 16 x weaker in energy than at std2).
PERSIST_OFFSET = 3.0
#: Relative excess of the centre over the larger side at which the persistence weight reaches 1.
PERSIST_TOL = 0.05
#: Side (px) of the square window of the local consensus (each value: the median of the edge values in it).
CONSENSUS_WINDOW = 11
#: Side (px) of the square window whose two halves, split by the edge's line, give the side medians.
SIDE_WINDOW = 21
#: Scale of the boundary weight ``exp(-(log(ahead / behind) / BOUNDARY_TOL)^2)`` of the side medians.
BOUNDARY_TOL = 0.5


def _model_log_r2(sigma: torch.Tensor, sa: float, sb: float) -> torch.Tensor:
    s2 = sigma * sigma
    return torch.log((s2 + sb * sb) / (s2 + sa * sa))


def _consistency(lr12, lr23, sig12, stds, rel_noise):
    """``exp(-(r12^2 + r23^2) / tol^2)``: how well the three scales agree with one isolated step."""
    beyond_step = (lr12 - _model_log_r2(torch.zeros_like(sig12), stds[0], stds[1])).clamp_min(0.0)
    r23 = lr23 - _model_log_r2(sig12.detach(), stds[1], stds[2])
    tol2 = RESIDUAL_TOL ** 2 + rel_noise
    return torch.exp(-(beyond_step ** 2 + r23 ** 2) / tol2)


def robust_edge_sigma(d: torch.Tensor, scales: tuple, edges: torch.Tensor, config: EstimatorConfig,
                      noise: torch.Tensor):
    """Sparse sigma and its propagation confidence at the edge pixels.

    Parameters
    ----------
    d : torch.Tensor
        ``(B, S, 2, H, W)`` first derivatives (``Ix, Iy`` per scale).
    scales : (int, int, int)
        Indices of ``std1``, ``std2`` and ``STD3_FACTOR * std2`` in ``d``.
    edges : torch.Tensor
        ``(B, 1, H, W)`` bool edge mask.
    config : EstimatorConfig
        Supplies ``std1``, ``std2`` and ``sigma_max``.
    noise : torch.Tensor
        ``(B,)`` white-noise std of each image (:func:`~defocus_xai.defocus.noise.noise_level`):
        its expected gradient energy is removed at each scale, and sigma moves from the ``(std1,
        std2)`` pair towards the ``(std2, std3)`` pair where the former's log-ratio noise variance
        exceeds ``NOISE_VAR``.

    Returns
    -------
    sparse, confidence : torch.Tensor
        ``(B, 1, H, W)`` each: at edge pixels, the window median of ``(w / 2) ratio + (1 - w / 2)
        profile fit`` over the fitted pixels (``w``: the three-scale step test; the ratio alone where
        the window holds no fitted pixel), each at least ``SIGMA_FLOOR`` (zero
        elsewhere, differentiable), and the boundary weight
        ``exp(-(log(ahead / behind) / BOUNDARY_TOL)^2)`` of the side medians (1 where a side has no
        edge pixel) times the persistence weight ``clamp((g(0) - max(g(-o), g(o))) / (PERSIST_TOL
        g(0)), 0, 1)``, ``g(t)`` the std3 gradient along the normal, ``o = PERSIST_OFFSET`` (no
        gradient).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus import EstimatorConfig
    >>> d = torch.zeros(1, 3, 2, 8, 8)
    >>> no_edges = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    >>> robust_edge_sigma(d, (0, 1, 2), no_edges, EstimatorConfig(), torch.zeros(1))[1].sum()
    tensor(0.)
    """
    return _scatter_at_edges(d, edges, lambda idx: _consensus(d, scales, idx, config, noise))


def _consensus(d, scales, idx, config: EstimatorConfig, noise):
    """Window median of the ratio's and the fit's sigma, mixed by the step test; the boundary weight
    times the persistence weight."""
    B, _, _, H, W = d.shape
    sig_ratio, step_like, normal = _robust_sigma(d, scales, idx, config, noise)
    sub = _fit_subset(idx, H, W)
    sig_fit = profile_sigma(d, scales[0], idx[sub], normal[:, sub], sig_ratio[sub], config.std1,
                            config.sigma_max)
    share = 0.5 * step_like[sub]
    mixed = share * sig_ratio[sub] + (1.0 - share) * sig_fit.clamp_min(SIGMA_FLOOR)
    sig = torch.full_like(sig_ratio, float("nan")).index_put((sub.nonzero().squeeze(1),), mixed)
    ahead, behind = side_medians(sig, idx, (B, H, W), normal, SIDE_WINDOW)
    step = torch.nan_to_num(torch.log(ahead / behind), nan=0.0)
    med = edge_median(sig, idx, (B, H, W), CONSENSUS_WINDOW)
    weight = torch.exp(-(step / BOUNDARY_TOL) ** 2) * _persistence(d, scales[2], idx, normal)
    # A window without a fitted pixel (a short edge off the fitted residues) keeps the ratio's value.
    return torch.where(torch.isnan(med), sig_ratio, med), weight


def _persistence(d, chan, idx, normal):
    """``clamp((g(0) - max(g(-o), g(o))) / (PERSIST_TOL g(0)), 0, 1)``, ``g(t)`` the gradient of scale
    ``chan`` along the normal at ``t`` px, ``o = PERSIST_OFFSET`` (no gradient)."""
    with torch.no_grad():
        t = torch.tensor([-PERSIST_OFFSET, 0.0, PERSIST_OFFSET], dtype=d.dtype, device=d.device)
        g = _sample_profiles(d, chan, idx, normal, t)[0]
        excess = g[:, 1] - torch.maximum(g[:, 0], g[:, 2])
        return (excess / (PERSIST_TOL * g[:, 1].abs().clamp_min(1e-12))).clamp(0.0, 1.0)


def _fit_subset(idx, H, W):
    """``(K,)`` bool: the edge pixels whose profile is fitted, ``(x + 2 y) mod 5`` in ``FIT_RESIDUES``."""
    r = (idx % W + 2 * ((idx % (H * W)) // W)) % 5
    return (r.view(-1, 1) == torch.tensor(FIT_RESIDUES, device=idx.device).view(1, -1)).any(1)


def _robust_sigma(d, scales, idx, config: EstimatorConfig, noise):
    """Sigma of the ratio (floored, differentiable) and the unit normal (``(2, K)``, no gradient)
    at the edge pixels ``idx``."""
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
        step_like = _consistency(lr12, lr23, sig12, stds, sum(rel_noise))
        normal = c[2:4] / c[2:4].norm(dim=0).clamp_min(1e-30)
    return sig.clamp_min(SIGMA_FLOOR), step_like, normal
