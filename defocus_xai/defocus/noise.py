"""Per-image noise level (Immerkaer's fast estimate), for the noise-aware steps of ``recipe="robust"``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["noise_level", "noise_gradient_energy"]


def noise_level(gray: torch.Tensor) -> torch.Tensor:
    """Standard deviation of additive white noise in each image (Immerkaer 1996).

    The image is filtered with the difference of two Laplacians
    ``[[1, -2, 1], [-2, 4, -2], [1, -2, 1]]``, which cancels smooth structure up to second order;
    ``sigma_n = sqrt(pi / 2) / (6 (H - 2) (W - 2)) * sum |I * N|``. Texture and edges add to the
    sum, so the estimate is an upper bound on strongly textured images.

    Parameters
    ----------
    gray : torch.Tensor
        ``(B, 1, H, W)`` in ``[0, 1]``, ``H, W >= 3``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` noise std in intensity units (no gradient).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.noise import noise_level
    >>> g = torch.Generator().manual_seed(0)
    >>> x = 0.5 + 0.02 * torch.randn(2, 1, 128, 128, generator=g)
    >>> [round(v, 3) for v in noise_level(x).tolist()]
    [0.02, 0.02]
    """
    with torch.no_grad():
        k = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]],
                         dtype=gray.dtype, device=gray.device).view(1, 1, 3, 3)
        H, W = gray.shape[-2:]
        if H < 3 or W < 3:
            return torch.zeros(gray.shape[0], dtype=gray.dtype, device=gray.device)
        r = F.conv2d(gray, k).abs().flatten(1).sum(1)
        return r * (math.sqrt(math.pi / 2) / (6 * (H - 2) * (W - 2)))


def noise_gradient_energy(noise: torch.Tensor, std: float) -> torch.Tensor:
    """Expected ``Ix^2 + Iy^2`` of white noise of std ``noise`` filtered by derivatives of a
    Gaussian of std ``std``: ``noise^2 / (4 pi std^4)``.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.noise import noise_gradient_energy
    >>> round(float(noise_gradient_energy(torch.tensor(1.0), 1.0)), 5)   # 1 / (4 pi)
    0.07958
    """
    return noise * noise / (4.0 * math.pi * std ** 4)
