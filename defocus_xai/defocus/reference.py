"""The reference recipe: the defocus maps the published research checkpoints were trained on.

Faithful, not correct: it keeps the reference code's flaws on purpose, because a detector loaded from a
published checkpoint expects exactly these maps. The recipe, its fidelity and its flaws:
``docs/reference_recipe.md``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._images import as_image_batch
from .resize import resize_batch

__all__ = [
    "reference_defocus",
    "reference_sparse_sigma",
    "reference_guided_filter",
    "REFERENCE_KERNEL_SIZE",
    "REFERENCE_SIGMA_MAX",
]

#: Side of the reference's derivative-of-Gaussian kernels (pixels).
REFERENCE_KERNEL_SIZE = 11
#: Upper clamp of the reference's sparse sigma (pixels).
REFERENCE_SIGMA_MAX = 5.0
_GF_RADIUS = 7
_GF_EPS = 1e-2
_DIV_EPS = 1e-8
_INPUT_RANGES = {"[-1,1]": "[-1,1]", "[0,1]": "[0,1]"}


def _check_input_range(input_range: str) -> str:
    key = str(input_range).replace(" ", "")
    if key not in _INPUT_RANGES:
        raise ValueError(
            f"input_range must be '[-1,1]' (the training convention) or '[0,1]' (the analysis "
            f"notebooks' convention), got {input_range!r}"
        )
    return key


def _check_std_pair(std1: float, std2: float) -> tuple[float, float]:
    std1, std2 = float(std1), float(std2)
    if not (std1 > 0 and std2 > 0 and math.isfinite(std1) and math.isfinite(std2)):
        raise ValueError(f"std1 and std2 must be positive and finite, got std1={std1}, std2={std2}")
    if std1 == std2:
        raise ValueError(f"std1 and std2 must differ for the re-blur ratio, got {std1} twice")
    return std1, std2


def _dog_kernels(std: float, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(2, 1, size, size) x- and y-derivative-of-Gaussian kernels, continuous normalization."""
    r = size // 2
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(x, x, indexing="ij")
    g = torch.exp(-(xx**2 + yy**2) / (2.0 * std**2)) / (2.0 * math.pi * std**2)
    kx = -xx / std**2 * g
    ky = -yy / std**2 * g
    return torch.stack([kx, ky])[:, None].to(dtype=dtype, device=device)


def _grad_magnitude(gray: torch.Tensor, std: float) -> torch.Tensor:
    k = _dog_kernels(std, REFERENCE_KERNEL_SIZE, gray.dtype, gray.device)
    g = F.conv2d(gray, k, padding=REFERENCE_KERNEL_SIZE // 2)
    return torch.sqrt(g[:, 0:1] ** 2 + g[:, 1:2] ** 2)


def _window_sums(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sums over the ``2 r + 1`` window along ``dim``, truncated at the border (running sums)."""
    n = x.shape[dim]
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [r + 1, r]
    c = F.pad(x, pad).cumsum(dim)
    return c.narrow(dim, 2 * r + 1, n) - c.narrow(dim, 0, n)


def _box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the ``(2 r + 1)^2`` window truncated at the border (``avg_pool2d`` with
    ``count_include_pad=False``), from running sums in float64: O(1) per pixel."""
    H, W = x.shape[-2:]
    s = _window_sums(_window_sums(x.to(torch.float64), r, -2), r, -1)

    def count(n):
        i = torch.arange(n, device=x.device, dtype=torch.float64)
        return (i + r).clamp_max(n - 1) - (i - r).clamp_min(0) + 1

    return (s / (count(H)[:, None] * count(W)[None, :])).to(x.dtype)


def reference_guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int = _GF_RADIUS,
                            eps: float = _GF_EPS) -> torch.Tensor:
    """Gray-guide guided filter (He et al. 2013) as the reference's propagation step uses it.

    Parameters
    ----------
    guide, src : torch.Tensor
        ``(B, 1, H, W)`` float tensors: the guide image and the map to filter.
    radius : int
        Box radius; the window is ``(2 radius + 1)^2`` pixels, truncated at the image border (means
        are over the pixels inside the image).
    eps : float
        Regularization of the local linear model.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` filtered map ``mean(a) * guide + mean(b)``.

    Examples
    --------
    >>> import torch
    >>> g = torch.rand(1, 1, 32, 32)
    >>> reference_guided_filter(g, torch.zeros_like(g)).abs().max().item()
    0.0
    """
    if guide.shape != src.shape or guide.dim() != 4 or guide.shape[1] != 1:
        raise ValueError(f"guide and src must both be (B, 1, H, W), got {tuple(guide.shape)} and "
                         f"{tuple(src.shape)}")
    mean_i = _box_mean(guide, radius)
    mean_p = _box_mean(src, radius)
    cov_ip = _box_mean(guide * src, radius) - mean_i * mean_p
    var_i = _box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box_mean(a, radius) * guide + _box_mean(b, radius)


def reference_sparse_sigma(gray: torch.Tensor, edge_map: torch.Tensor, *, std1: float = 2.0,
                           std2: float = 2.5) -> torch.Tensor:
    """The reference's sparse blur: edge-weighted dual re-blur gradient ratio.

    Computes ``R = |g1| / |g2|`` with the reference's 11 x 11 derivative-of-Gaussian kernels, multiplies
    it by ``edge_map`` bilinearly resized to the grid of ``gray`` and divided by its (per-sample)
    maximum, and
    evaluates ``sigma = sqrt(clamp((R^2 std1^2 - std2^2) / (1 - R^2), min=0))`` clamped to
    ``[0, 5]``. Kept *as the reference does it*, flaws included:

    * the 11 x 11 kernels truncate the Gaussian at ``5 / std`` standard deviations (2 at std 2.5), so
      the ratio formula, exact for ideal kernels, is biased even on a clean step edge;
    * where the resized edge weight ``w`` is below 1 (an edge map from another grid) the ratio is
      scaled to ``w R``: slightly below 1 the sigma is inflated (up to the clamp), further below it
      collapses to 0.

    Parameters
    ----------
    gray : torch.Tensor
        ``(B, 1, H, W)`` float gray image in whatever range the recipe feeds (``[-1, 1]`` in training).
    edge_map : torch.Tensor
        ``(B, 1, h, w)`` edge map (binary or weights) on any grid; resized bilinearly to ``(H, W)``.
    std1, std2 : float
        The re-blur pair (the published checkpoints: 2.0 and 2.5).

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` float sigma in pixels, zero where the edge weight is zero.

    Examples
    --------
    A vertical step edge blurred by a Gaussian of std 4 px reads about 0.9 px (the truncation bias);
    off the edge the map is zero:

    >>> import torch
    >>> x = torch.arange(64, dtype=torch.float32) - 31.5
    >>> gray = (0.5 * (1 + torch.erf(x / (4.0 * 2**0.5)))).expand(1, 1, 64, 64).contiguous()
    >>> edges = torch.zeros_like(gray); edges[..., 31] = 1.0
    >>> s = reference_sparse_sigma(gray, edges)
    >>> round(s[0, 0, 32, 31].item(), 1), bool((s[..., :30] == 0).all())
    (0.9, True)
    """
    std1, std2 = _check_std_pair(std1, std2)
    if gray.dim() != 4 or gray.shape[1] != 1:
        raise ValueError(f"gray must be (B, 1, H, W), got {tuple(gray.shape)}")
    if edge_map.dim() != 4 or edge_map.shape[:2] != gray.shape[:2]:
        raise ValueError(f"edge_map must be (B, 1, h, w) with the batch size of gray "
                         f"{tuple(gray.shape)}, got {tuple(edge_map.shape)}")
    g1 = _grad_magnitude(gray, std1)
    g2 = _grad_magnitude(gray, std2)
    ratio = g1 / (g2 + _DIV_EPS)
    weight = edge_map.to(device=gray.device, dtype=gray.dtype)
    if weight.shape[-2:] != ratio.shape[-2:]:
        weight = F.interpolate(weight, size=ratio.shape[-2:], mode="bilinear", align_corners=False)
    # Divided by its maximum, per sample (so a batch gives what its samples give one by one); for
    # binary edge maps on the same grid -- the training flow -- the maximum is 1 (or 0: no edges).
    peak = weight.amax(dim=(1, 2, 3), keepdim=True)
    weight = torch.where(peak > 0, weight / peak.clamp_min(1e-12), torch.zeros_like(weight))
    ratio = ratio * weight
    r2 = ratio * ratio
    s2 = (r2 * std1**2 - std2**2) / (1.0 - r2 + _DIV_EPS)
    s2 = torch.nan_to_num(s2, nan=0.0, posinf=REFERENCE_SIGMA_MAX**2, neginf=0.0)
    return torch.sqrt(torch.clamp(s2, min=0.0)).clamp(0.0, REFERENCE_SIGMA_MAX)


def reference_defocus(images: Any, *, size: int = 299, std1: float = 2.0, std2: float = 2.5,
                      edge_sigma: float = 1.5, input_range: str = "[-1,1]",
                      device: str | torch.device | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Defocus maps exactly as the reference research code computed them for training.

    Reproduces the maps the published checkpoints (``defocus_gt_legacy_xception_*.pth``) were
    trained on: Pearson r 0.99996 (median over 60 saved frames) with the saved maps after per-sample
    min-max normalization. Use it to feed those checkpoints or to compare with the paper; it is
    **not** a physically correct sigma estimate (see ``docs/reference_recipe.md``): prefer
    ``estimate_defocus(recipe="ours")`` for that.

    Parameters
    ----------
    images : tensor or array
        Anything :func:`defocus_xai._images.as_image_batch` accepts; the library convention is a
        ``(B, 3, H, W)`` float32 tensor with values in ``[0, 1]`` (uint8 is divided by 255).
    size : int
        Output grid; images are resized bilinearly (antialiased when shrinking) to
        ``size x size`` first. The checkpoints used 299.
    std1, std2 : float
        Re-blur pair of the gradient ratio. Defaults 2.0 / 2.5: the pair the released training run
        used (the source file says 1.5 / 2.0; that pair does not reproduce the saved maps).
    edge_sigma : float
        Gaussian sigma of scikit-image's Canny.
    input_range : {"[-1,1]", "[0,1]"}
        What the recipe sees: ``"[-1,1]"`` maps the ``[0, 1]`` image to ``2 x - 1`` as training did
        (the Canny step then clips gray to ``[0, 1]`` and finds edges only in the brighter half);
        ``"[0,1]"`` is what the analysis notebooks fed. The two give very different maps
        (r 0.2-0.5 on real frames): use the one the consuming model was trained with.
    device : str or torch.device, optional
        Where the convolutions and the guided filter run (default: the input's device; CPU for
        numpy). Canny always runs on the CPU, one sample at a time, with scikit-image.

    Returns
    -------
    dense, sparse, edges : torch.Tensor
        Each ``(B, 1, size, size)`` float32 on the chosen device. ``dense``: the guided-filter output
        (un-normalized; may be slightly negative; apply per-sample min-max to get what the classifier
        saw). ``sparse``: sigma in ``[0, 5]`` pixels at edges, 0 elsewhere. ``edges``: the edge
        weights used (binary here). Outputs carry no gradient (Canny is not differentiable; the
        recipe is for inference and comparison).

    Warns
    -----
    UserWarning
        When a sample has no edge pixel: its maps are all zero, as in the reference (which is silent).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.reference import reference_defocus
    >>> imgs = torch.rand(2, 3, 64, 64)
    >>> dense, sparse, edges = reference_defocus(imgs, size=64)
    >>> dense.shape, sparse.dtype
    (torch.Size([2, 1, 64, 64]), torch.float32)
    >>> bool(((sparse >= 0) & (sparse <= 5)).all())
    True
    """
    from skimage.feature import canny

    input_range = _check_input_range(input_range)
    std1, std2 = _check_std_pair(std1, std2)
    size = int(size)
    if size < REFERENCE_KERNEL_SIZE:
        raise ValueError(f"size must be at least {REFERENCE_KERNEL_SIZE} pixels, got {size}")
    edge_sigma = float(edge_sigma)
    if not (edge_sigma > 0 and math.isfinite(edge_sigma)):
        raise ValueError(f"edge_sigma must be positive and finite, got {edge_sigma}")

    with torch.no_grad():
        x = resize_batch(as_image_batch(images, device=device).detach().to(torch.float32), size)
        if input_range == "[-1,1]":
            x = x * 2.0 - 1.0
        gray = x.mean(dim=1, keepdim=True)

        gray_np = np.clip(gray[:, 0].cpu().numpy(), 0.0, 1.0)
        edge_list = [canny(g, sigma=edge_sigma) for g in gray_np]
        edges = torch.from_numpy(np.stack(edge_list).astype(np.float32))[:, None].to(gray.device)
        empty = [i for i, e in enumerate(edge_list) if not e.any()]
        if empty:
            warnings.warn(
                f"reference_defocus: no Canny edge in sample(s) {empty} (input_range={input_range}); "
                "their maps are all zero, as the reference recipe gives them",
                UserWarning, stacklevel=2)

        # Canny ran on the gradient grid, so the bilinear resize of the edge map is an identity and
        # the weights are binary: exactly the training flow.
        sparse = reference_sparse_sigma(gray, edges, std1=std1, std2=std2)
        edges_w = edges
        dense = reference_guided_filter(gray, sparse)
    return dense.float(), sparse.float(), edges_w.float()
