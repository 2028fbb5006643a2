"""Sigma at edge pixels from a multi-edge fit of the gradient profile across the edge (``recipe="robust"``).

The isolated-step ratio reads an edge with a neighbour within the re-blur support wrongly (sharper for an
opposite-signed neighbour, blurrier for a same-signed one). Here the gradient at the smallest re-blur scale
``s`` is sampled along the edge normal, ``g(t)`` for ``|t| <= PROFILE_HALF_WIDTH``, and fitted with a sum of
blurred steps sharing ONE blur: ``g(t) = sum_k a_k N(t; tau_k, v)``, ``v = sigma^2 + s^2``, one step at
the edge and one at each of the nearest other extrema of ``g`` on both sides. The amplitudes ``a_k``,
positions ``tau_k`` and ``v`` are found by damped Gauss-Newton (Levenberg-Marquardt), batched over the
edge pixels. Details: ``docs/estimator.md`` ('recipe="robust"').
"""

from __future__ import annotations

import math

import torch

__all__ = ["profile_sigma", "PROFILE_HALF_WIDTH", "PROFILE_STEP", "NEIGHBOURS_PER_SIDE", "ITERATIONS",
           "CONVERGED"]

#: Half-width (px) of the sampled normal profile.
PROFILE_HALF_WIDTH = 8.0
#: Spacing (px) of the profile samples.
PROFILE_STEP = 1.0
#: Extrema of the profile modelled as steps on each side of the edge.
NEIGHBOURS_PER_SIDE = 1
#: An extremum is a step when its |g| is at least this fraction of the edge's own peak.
MIN_RELATIVE_PEAK = 0.1
#: Levenberg-Marquardt iterations (at most; the DefocusSynth v2 accuracy is the same with 6).
ITERATIONS = 6
#: An edge pixel's fit has converged when an accepted step changes its variance by less than this
#: fraction (a sigma change below 0.002 px at the floor).
CONVERGED = 1e-2
#: Relative ridge of the normal equations of the gradient step (keeps it finite where two modelled steps
#: meet).
GN_RIDGE = 1e-4


def _sample_profiles(d, chan, idx, normal, t):
    """Bilinear samples of ``d[b, chan]`` (``(B, S, 2, H, W)``) projected on ``normal`` at ``p + t n``,
    and the variance the interpolation adds to each sample (``(K, T)`` each)."""
    B, S, _, H, W = d.shape
    b = idx // (H * W)
    rem = idx - b * (H * W)
    y0, x0 = (rem // W).to(d.dtype), (rem % W).to(d.dtype)
    ys = (y0.view(-1, 1) + t.view(1, -1) * normal[1].view(-1, 1)).clamp(0, H - 1)
    xs = (x0.view(-1, 1) + t.view(1, -1) * normal[0].view(-1, 1)).clamp(0, W - 1)
    yf, xf = ys.floor().clamp(max=H - 2), xs.floor().clamp(max=W - 2)
    fy, fx = ys - yf, xs - xf
    base = (b * (S * 2 * H * W) + chan * 2 * H * W).view(-1, 1) + yf.long() * W + xf.long()
    flat = d.reshape(-1)
    # Bilinear interpolation at fractional offset f averages two samples: it adds f (1 - f) to the
    # variance along each axis, hence nx^2 fx (1 - fx) + ny^2 fy (1 - fy) along the normal.
    extra = (normal[0] ** 2).view(-1, 1) * fx * (1 - fx) + (normal[1] ** 2).view(-1, 1) * fy * (1 - fy)
    out = 0.0
    for j, nj in ((0, normal[0]), (1, normal[1])):
        off = base + j * H * W
        v = ((1 - fy) * ((1 - fx) * flat.take(off) + fx * flat.take(off + 1))
             + fy * ((1 - fx) * flat.take(off + W) + fx * flat.take(off + W + 1)))
        out = out + v * nj.view(-1, 1)
    return out, extra.detach()


def _initial_steps(g, t):
    """Positions ``(K, M)`` of the modelled steps and their mask (the edge's own step first)."""
    K, T = g.shape
    a = g.abs()
    ext = torch.zeros_like(a, dtype=torch.bool)
    ext[:, 1:-1] = (a[:, 1:-1] >= a[:, :-2]) & (a[:, 1:-1] > a[:, 2:])
    c = T // 2
    # The edge's own step: the positive extremum nearest t = 0 (within 1.5 px), else t = 0.
    near = ext & (g > 0) & (t.abs() <= 1.5).view(1, -1)
    score = torch.where(near, -t.abs().view(1, -1), torch.full_like(g, -1e9))
    best = score.argmax(1)
    own = torch.where(near.any(1), best, torch.full_like(best, c))
    peak = g.gather(1, own.view(-1, 1)).clamp_min(1e-12)
    strong = ext & (a >= MIN_RELATIVE_PEAK * peak)
    pos, mask = [t[own]], [torch.ones(K, dtype=torch.bool, device=g.device)]
    ar = torch.arange(T, device=g.device).view(1, -1)
    for side in (1, -1):
        cand = strong & ((ar - own.view(-1, 1)) * side >= 2)
        for _ in range(NEIGHBOURS_PER_SIDE):
            dist = torch.where(cand, (ar - own.view(-1, 1)).abs(), torch.full_like(ar, 10 ** 6))
            j = dist.argmin(1)
            ok = cand.any(1)
            pos.append(t[j])
            mask.append(ok)
            cand = cand & (ar != j.view(-1, 1))
    return torch.stack(pos, 1), torch.stack(mask, 1)


def _gauss_terms(u, v, e):
    """Gaussian family: ``phi = N(u; 0, v + e)``, ``d phi / d u`` and ``d phi / d v`` (``(K, M, T)``)."""
    inv = 1.0 / (v.view(-1, 1, 1) + e.unsqueeze(1))                   # (K, 1, T)
    q = u * u * inv
    phi = torch.exp(-0.5 * q) * torch.sqrt(inv * (0.5 / math.pi))
    phi_inv = phi * inv
    return phi, -phi_inv * u, 0.5 * (q - 1.0) * phi_inv


def _model(t, a, tau, p, e):
    """``sum_k a_k phi(t - tau_k; p)`` (``(K, T)``) and its transposed Jacobian (``(K, 2 M + 1, T)``)
    over ``(a, tau, p)``, ``p`` the variance ``sigma^2 + std^2`` shared by all steps."""
    u = t.view(1, 1, -1) - tau.unsqueeze(-1)
    phi, dphi_du, dphi_dp = _gauss_terms(u, p, e)
    au = a.unsqueeze(-1)
    Jt = torch.cat([phi, -au * dphi_du, (au * dphi_dp).sum(1, keepdim=True)], 1)
    return (au * phi).sum(1), Jt


def _unused_parameters(mask, dtype):
    """``(off, keep)``: 1 on the diagonal of the absent steps' parameters (``(K, 2 M + 1)``) and the
    row mask that zeroes their transposed Jacobian (``(K, 2 M + 1, 1)``)."""
    off = torch.cat([~mask, ~mask, torch.zeros_like(mask[:, :1])], 1).to(dtype)
    return off, (1.0 - off).unsqueeze(-1)


def _solve_spd(A, b):
    """``A x = b`` for a batch ``(K, P, P)`` of symmetric positive definite ``A`` (Gaussian elimination
    without pivoting, vectorized over the batch, which is laid out last so that each step runs on
    contiguous rows: far faster than a LAPACK call per small matrix)."""
    A = A.permute(1, 2, 0).contiguous()
    b = b.t().contiguous()
    P = A.shape[0]
    for j in range(P):
        f = A[j + 1:, j] / A[j, j]
        A[j + 1:, j:] -= f.unsqueeze(1) * A[j, j:].unsqueeze(0)
        b[j + 1:] -= f * b[j]
    x = torch.empty_like(b)
    for j in range(P - 1, -1, -1):
        x[j] = (b[j] - (A[j, j + 1:] * x[j + 1:]).sum(0)) / A[j, j]
    return x.t()


def _model_value(t, a, tau, p, e):
    """``sum_k a_k phi(t - tau_k; p)`` alone (``(K, T)``), for the trial steps."""
    inv = 1.0 / (p.view(-1, 1, 1) + e.unsqueeze(1))
    u = t.view(1, 1, -1) - tau.unsqueeze(-1)
    phi = torch.exp(-0.5 * u * u * inv) * torch.sqrt(inv * (0.5 / math.pi))
    return (a.unsqueeze(-1) * phi).sum(1)


def _fit(t, g, e, a, tau, p, mask, bounds):
    """Levenberg-Marquardt over ``(a, tau, p)`` from the given start; an edge pixel leaves the
    iterations once an accepted step moves its ``p`` by less than ``CONVERGED`` of itself."""
    M = a.shape[1]
    off_all, keep_all = _unused_parameters(mask, g.dtype)
    lam = torch.full_like(p, 1e-2)
    cost = ((g - _model_value(t, a, tau, p, e)) ** 2).sum(1)
    act = torch.arange(p.numel(), device=p.device)
    for _ in range(ITERATIONS):
        if act.numel() == 0:
            break
        gs, es, as_, ts, ps, ls = g[act], e[act], a[act], tau[act], p[act], lam[act]
        m, Jt = _model(t, as_, ts, ps, es)
        Jt = Jt * keep_all[act]
        A = Jt @ Jt.transpose(1, 2)
        rhs = (Jt @ (gs - m).unsqueeze(-1)).squeeze(-1)
        diag = torch.diagonal(A, dim1=1, dim2=2)
        A = A + torch.diag_embed(ls.view(-1, 1) * diag + 1e-12 * diag.amax(1, keepdim=True) + off_all[act])
        step = _solve_spd(A, rhs)
        na = as_ + step[:, :M]
        nt = (ts + step[:, M:2 * M]).clamp(-PROFILE_HALF_WIDTH, PROFILE_HALF_WIDTH)
        np_ = (ps + step[:, -1]).clamp(*bounds)
        nc = ((gs - _model_value(t, na, nt, np_, es)) ** 2).sum(1)
        ok = nc < cost[act]
        a[act] = torch.where(ok.view(-1, 1), na, as_)
        tau[act] = torch.where(ok.view(-1, 1), nt, ts)
        p[act] = torch.where(ok, np_, ps)
        cost[act] = torch.where(ok, nc, cost[act])
        lam[act] = torch.where(ok, ls * 0.3, ls * 10.0).clamp(1e-6, 1e6)
        act = act[~(ok & ((np_ - ps).abs() <= CONVERGED * ps))]
    return a, tau, p


def profile_sigma(d: torch.Tensor, chan: int, idx: torch.Tensor, normal: torch.Tensor,
                  sigma0: torch.Tensor, std: float, sigma_max: float):
    """Sigma of the multi-edge profile fit at the edge pixels ``idx``.

    Parameters
    ----------
    d : torch.Tensor
        ``(B, S, 2, H, W)`` first derivatives (``Ix, Iy`` per scale).
    chan : int
        Index in ``d`` of the scale ``std`` whose gradient is fitted.
    idx : torch.Tensor
        ``(K,)`` flat indices into ``(B, H, W)`` of the edge pixels.
    normal : torch.Tensor
        ``(2, K)`` unit gradient direction ``(nx, ny)`` at each edge pixel.
    sigma0 : torch.Tensor
        ``(K,)`` initial sigma (e.g. the ratio's).
    std : float
        The scale of ``chan`` (px).
    sigma_max : float
        Upper clamp of sigma (px).

    Returns
    -------
    torch.Tensor
        ``(K,)`` the fitted sigma in ``[0, sigma_max]``, differentiable through one Gauss-Newton
        step from the converged fit (the gradient of the least-squares solution to first order); NaN
        where the fit degenerates (no gradient).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.filters import gaussian_derivatives
    >>> from defocus_xai.defocus.robust_profile import profile_sigma
    >>> x = torch.arange(64.0) - 31.5
    >>> img = (0.5 * (1 + torch.erf(x / (2.0 * 2 ** 0.5)))).expand(1, 1, 64, 64)   # sigma 2
    >>> d = gaussian_derivatives(img, [1.0])
    >>> idx = torch.tensor([32 * 64 + 31])
    >>> s = profile_sigma(d, 0, idx, torch.tensor([[1.0], [0.0]]), torch.tensor([1.0]), 1.0, 5.0)
    >>> round(float(s), 2)
    2.0
    """
    t = torch.arange(-PROFILE_HALF_WIDTH, PROFILE_HALF_WIDTH + 1e-6, PROFILE_STEP,
                     dtype=d.dtype, device=d.device)
    g, e = _sample_profiles(d, chan, idx, normal, t)
    v_bounds = (std * std, sigma_max * sigma_max + std * std)
    with torch.no_grad():
        gd = g.detach()
        tau, mask = _initial_steps(gd, t)
        v = sigma0.detach().clamp(0.3, sigma_max) ** 2 + std * std
        phi = _gauss_terms(t.view(1, 1, -1) - tau.unsqueeze(-1), v, e)[0] * mask.unsqueeze(-1)
        A = phi @ phi.transpose(1, 2) + torch.diag_embed((~mask).to(g.dtype) + 1e-9)
        a = _solve_spd(A, (phi @ gd.unsqueeze(-1)).squeeze(-1))
        a, tau, v = _fit(t, gd, e, a, tau, v, mask, v_bounds)
        # A degenerate profile (e.g. no gradient along the normal) leaves a non-finite fit: no value
        # (NaN, skipped by the window medians), and finite stand-ins so the gradient step stays finite.
        ok = torch.isfinite(v) & torch.isfinite(a).all(1) & torch.isfinite(tau).all(1)
        v = torch.where(ok, v, torch.full_like(v, std * std + 1.0))
        a = torch.where(ok.view(-1, 1), a, torch.zeros_like(a))
        tau = torch.where(ok.view(-1, 1), tau, torch.zeros_like(tau))
    # One Gauss-Newton step from the converged fit carries the gradient to the profile.
    if torch.is_grad_enabled() and g.requires_grad:
        m, Jt = _model(t, a, tau, v, e)
        off, keep = _unused_parameters(mask, g.dtype)
        Jt = Jt * keep
        A = Jt @ Jt.transpose(1, 2)
        # A small ridge, as in the iterations: two steps that met (same position) make A singular.
        diag = torch.diagonal(A, dim1=1, dim2=2)
        A = A + torch.diag_embed(GN_RIDGE * diag + 1e-12 * diag.amax(1, keepdim=True) + off + 1e-9)
        v = v + _solve_spd(A, (Jt @ (g - m).unsqueeze(-1)).squeeze(-1))[:, -1]
    sigma = torch.sqrt((v - std * std).clamp_min(1e-12)).clamp_max(sigma_max)
    return torch.where(ok, sigma, torch.full_like(sigma, float("nan")))
