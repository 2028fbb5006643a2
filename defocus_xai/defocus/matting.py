"""Exact closed-form matting propagation (``propagation="matting"``), after Levin et al. 2008.

Solves ``(L + lam D) x = lam D s`` with the matting Laplacian ``L`` per sample on the CPU (scipy sparse
LU); gradients reach the sparse values ``s`` through the adjoint solve. The formulas and costs:
``docs/estimator.md`` ("Propagation modes").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

__all__ = ["matting_laplacian", "matting_propagation"]

DEFAULT_EPS = 1e-3
DEFAULT_LAMBDA = 0.5


def matting_laplacian(image: np.ndarray, eps: float = DEFAULT_EPS) -> sp.csr_matrix:
    """Matting Laplacian of Levin et al. 2008 with 3x3 windows.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` (or ``(H, W)`` gray) float image in ``[0, 1]``.
    eps : float
        Regularization of the window covariance.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(H W, H W)`` symmetric positive semi-definite, rows summing to zero; pixels are numbered
        row-major.

    Examples
    --------
    >>> import numpy as np
    >>> from defocus_xai.defocus.matting import matting_laplacian
    >>> L = matting_laplacian(np.random.default_rng(0).random((8, 8, 3)))
    >>> L.shape, bool(abs(L.sum(axis=1)).max() < 1e-8)
    ((64, 64), True)
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"matting_laplacian: expected (H, W, C), got shape {img.shape}")
    H, W, C = img.shape
    if H < 3 or W < 3:
        raise ValueError(f"matting_laplacian: image of shape {img.shape} is smaller than a 3x3 window")
    n = H * W
    idx = np.arange(n).reshape(H, W)
    # Indices of the 9 pixels of every window centred at an interior pixel: (n_win, 9).
    offs = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    win = np.stack([idx[1 + dy:H - 1 + dy, 1 + dx:W - 1 + dx].ravel() for dy, dx in offs], axis=1)
    flat = img.reshape(n, C)
    X = flat[win]                                            # (n_win, 9, C)
    mu = X.mean(axis=1, keepdims=True)
    Xc = X - mu
    cov = np.einsum("kic,kid->kcd", Xc, Xc) / 9.0
    inv = np.linalg.inv(cov + (eps / 9.0) * np.eye(C))
    vals = (1.0 + np.einsum("kic,kcd,kjd->kij", Xc, inv, Xc)) / 9.0   # (n_win, 9, 9)
    rows = np.repeat(win, 9, axis=1).ravel()
    cols = np.tile(win, (1, 9)).ravel()
    A = sp.coo_matrix((vals.ravel(), (rows, cols)), shape=(n, n)).tocsr()
    deg = np.asarray(A.sum(axis=1)).ravel()
    return (sp.diags(deg) - A).tocsr()


class _MattingSolve(torch.autograd.Function):
    """x = (L + lam D)^-1 lam D s, with the adjoint solve in backward (L is a constant)."""

    @staticmethod
    def forward(ctx, s, mask_np, lu, lam):
        s_np = s.detach().cpu().double().numpy().ravel()
        rhs = lam * mask_np * s_np
        x = lu.solve(rhs)
        ctx.lu, ctx.mask_np, ctx.lam = lu, mask_np, lam
        return torch.from_numpy(x).to(dtype=s.dtype, device=s.device).view_as(s)

    @staticmethod
    def backward(ctx, grad_x):
        g = grad_x.detach().cpu().double().numpy().ravel()
        y = ctx.lu.solve(g)                                   # A symmetric: A^-T g = A^-1 g
        gs = ctx.lam * ctx.mask_np * y
        return (torch.from_numpy(gs).to(dtype=grad_x.dtype, device=grad_x.device).view_as(grad_x),
                None, None, None)


def matting_propagation(sparse: torch.Tensor, edges: torch.Tensor, images: torch.Tensor, *,
                        lam: float = DEFAULT_LAMBDA, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Dense sigma by closed-form matting propagation, one sparse solve per sample (CPU).

    Parameters
    ----------
    sparse : torch.Tensor
        ``(B, 1, H, W)`` sigma at edge pixels.
    edges : torch.Tensor
        ``(B, 1, H, W)`` edge mask (the data-term support ``D``).
    images : torch.Tensor
        ``(B, 3, H, W)`` RGB in ``[0, 1]``, the colours of the Laplacian.
    lam : float
        Weight of the data term at edge pixels.
    eps : float
        Covariance regularization of the Laplacian.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` on the device of ``sparse``; zeros for samples without edges.
        Differentiable with respect to ``sparse`` only.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.matting import matting_propagation
    >>> e = torch.zeros(1, 1, 16, 16, dtype=torch.bool); e[..., 8] = True
    >>> d = matting_propagation(e * 2.0, e, torch.rand(1, 3, 16, 16))
    >>> d.allclose(torch.tensor(2.0), atol=1e-3)
    True
    """
    B, _, H, W = sparse.shape
    imgs = images.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    masks = edges.detach().to("cpu").reshape(B, -1).numpy().astype(np.float64)
    out = []
    for b in range(B):
        if not masks[b].any():
            out.append(torch.zeros_like(sparse[b]) * sparse[b])
            continue
        L = matting_laplacian(imgs[b], eps)
        A = (L + lam * sp.diags(masks[b])).tocsc()
        lu = spla.splu(A)
        out.append(_MattingSolve.apply(sparse[b], masks[b], lu, lam))
    return torch.stack(out)
