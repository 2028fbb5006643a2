"""A batched Canny-style edge detector in torch (no per-sample loop, any device; no gradient).

Gaussian-derivative gradients, non-maximum suppression, a double threshold relative to each image's
99th percentile of gradient magnitude, and hysteresis as exact 8-connected components. Details:
``docs/estimator.md`` ("The recipe", step 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .filters import gaussian_derivatives

__all__ = ["canny", "non_maximum_suppression", "hysteresis", "edge_thresholds"]

DEFAULT_LOW = 0.05
DEFAULT_HIGH = 0.15
DEFAULT_MIN_CONTRAST = 0.02
_QUANTILE = 0.99
#: Noise-aware floors (``noise=`` of :func:`edge_thresholds`), in stds of a noise gradient component:
#: a pure-noise gradient magnitude (Rayleigh) exceeds 3 stds at 1 % of pixels, 5 stds at 4e-6.
NOISE_LOW = 3.0
NOISE_HIGH = 5.0


def non_maximum_suppression(gx: torch.Tensor, gy: torch.Tensor, mag: torch.Tensor | None = None
                            ) -> torch.Tensor:
    """Pixels whose gradient magnitude is a local maximum along the gradient direction.

    The magnitudes one pixel forward and backward along the gradient are interpolated linearly
    between the two neighbours that straddle the direction. A pixel is kept when its magnitude is
    ``>=`` the forward value and ``>`` the backward one (so a two-pixel plateau, e.g. a step edge
    lying exactly between pixels, gives a one-pixel line), and positive.

    Parameters
    ----------
    gx, gy : torch.Tensor
        ``(B, 1, H, W)`` gradient components along the width and the height.
    mag : torch.Tensor, optional
        Their magnitude, if already computed.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` bool.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.edges import non_maximum_suppression
    >>> gx = torch.tensor([[0.1, 0.5, 1.0, 0.5, 0.1]]).repeat(5, 1)[None, None]
    >>> non_maximum_suppression(gx, torch.zeros_like(gx))[0, 0, 2].tolist()
    [False, False, True, False, False]
    """
    with torch.no_grad():
        if mag is None:
            mag = torch.sqrt(gx * gx + gy * gy)
        return _suppress(gx, gy, mag, F.pad(mag, (1, 1, 1, 1), value=0.0))


def _suppress(gx, gy, mag, pad):
    """:func:`non_maximum_suppression` given ``pad``, ``mag`` with a one-pixel frame of zeros."""
    H, W = mag.shape[-2:]

    def nb(dy: int, dx: int) -> torch.Tensor:     # neighbour at (y + dy, x + dx), a view
        return pad[..., 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]

    ax, ay = gx.abs(), gy.abs()
    horiz = ax >= ay
    t = torch.minimum(ax, ay) / torch.maximum(ax, ay).clamp_min(1e-30)
    u = 1 - t
    # The gradient (sx, sy) = (sign gx, sign gy) (0 counting as +) and its opposite share
    # the same two interpolated neighbours with forward and backward swapped: compute them
    # for the direction with sx = +1 ("a" forward, "b" backward) and swap where gx < 0.
    flip = gx < 0
    down = (gy >= 0) != flip                      # sy of that direction is +1
    a = u * torch.where(horiz, nb(0, 1), torch.where(down, nb(1, 0), nb(-1, 0))) \
        + t * torch.where(down, nb(1, 1), nb(-1, 1))
    b = u * torch.where(horiz, nb(0, -1), torch.where(down, nb(-1, 0), nb(1, 0))) \
        + t * torch.where(down, nb(-1, -1), nb(1, -1))
    fwd = torch.where(flip, b, a)
    bwd = torch.where(flip, a, b)
    return (mag > 0) & (mag >= fwd) & (mag > bwd)


def hysteresis(strong: torch.Tensor, weak: torch.Tensor, max_iter: int = 10_000) -> torch.Tensor:
    """Keep the 8-connected components of ``weak`` that contain a ``strong`` pixel.

    Strong pixels are kept; a weak pixel is kept when a chain of weak pixels joins it to a strong
    one. Components are labelled in parallel for the whole batch on the graph of the weak-but-not-
    strong pixels (edges between 8-neighbours, never across images), where all strong pixels
    together form one extra node with the largest label: every component root hooks onto the
    largest neighbouring root, then pointer jumping compresses the trees, until nothing changes.
    The number of rounds grows roughly with the logarithm of the component size, not with its
    length, and only the few weak-only pixels take part.

    Parameters
    ----------
    strong, weak : torch.Tensor
        ``(B, 1, H, W)`` bool; ``strong`` is taken as a subset of ``weak``.
    max_iter : int
        Safety bound on the rounds (not reached in practice: convergence is exact).

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` bool.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.edges import hysteresis
    >>> weak = torch.zeros(1, 1, 5, 5, dtype=torch.bool); weak[0, 0, 2, :] = True
    >>> strong = torch.zeros_like(weak); strong[0, 0, 2, 0] = True
    >>> hysteresis(strong, weak)[0, 0, 2].all().item()
    True
    """
    with torch.no_grad():
        strong = strong.to(torch.bool)
        weak = weak.to(torch.bool) | strong
        B, _, H, W = weak.shape
        dev = weak.device
        # Strong pixels are always kept; a weak-only pixel is kept when a path of weak-only
        # pixels joins it to a strong one. So only the (few) weak-only pixels are graph nodes,
        # and all strong pixels together act as one extra node, K, the largest label.
        ids = (weak & ~strong).reshape(-1).nonzero().squeeze(1)
        K = ids.numel()
        if K == 0:
            return strong.clone()
        Wp = W + 2
        # Node label of every pixel in a one-pixel frame: K at strong pixels, -1 (none) off weak.
        lab = torch.full((B, H + 2, Wp), -1, dtype=torch.int32, device=dev)
        lab[:, 1:-1, 1:-1].masked_fill_(strong.view(B, H, W), K)
        b_, rem = ids // (H * W), ids % (H * W)
        pos = b_ * ((H + 2) * Wp) + (rem // W + 1) * Wp + rem % W + 1
        lab = lab.view(-1)
        lab[pos] = torch.arange(K, dtype=torch.int32, device=dev)
        offs = torch.tensor([dy * Wp + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                             if dy or dx], device=dev)
        nbr = lab.take(pos.view(-1, 1) + offs.view(1, -1)).long()    # (K, 8)
        nbr[nbr < 0] = K + 1                                          # the sink
        # Connected components by hooking and pointer jumping (Shiloach-Vishkin style): every
        # root hooks onto the largest root among its members' neighbours, then paths are
        # compressed. Node K is its own root forever; the sink (-1) never wins a maximum.
        parent = torch.arange(K + 1, device=dev)
        tail = torch.full((1,), -1, dtype=torch.long, device=dev)
        for _ in range(max_iter):
            best = torch.cat([parent, tail])[nbr].amax(1)
            new = parent.clone()
            new.scatter_reduce_(0, parent[:K], best, "amax")
            for _j in range(max_iter):
                nxt = new[new]
                if torch.equal(nxt, new):
                    break
                new = nxt
            if torch.equal(new, parent):
                break
            parent = new
        out = strong.clone().view(-1)
        out[ids] = parent[:K] == K
        return out.view(B, 1, H, W)


def edge_thresholds(mag: torch.Tensor, *, low: float = DEFAULT_LOW, high: float = DEFAULT_HIGH,
                    min_contrast: float = DEFAULT_MIN_CONTRAST, edge_sigma: float = 1.5,
                    noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image low and high thresholds of the gradient magnitude (see the module docstring).

    Parameters
    ----------
    mag : torch.Tensor
        ``(B, 1, H, W)`` gradient magnitude at ``edge_sigma``.
    low, high : float
        Fractions of the per-image 99th percentile of ``mag``.
    min_contrast : float
        Floor, as the contrast (in ``[0, 1]`` intensity units) of a sharp step whose peak gradient
        is the floor.
    edge_sigma : float
        Scale of ``mag``, for the floor.
    noise : torch.Tensor, optional
        ``(B,)`` std of white noise in the image (:func:`~defocus_xai.defocus.noise.noise_level`):
        the low and high thresholds are then at least ``NOISE_LOW`` and ``NOISE_HIGH`` times the std
        ``noise / (sqrt(8 pi) edge_sigma^2)`` of each noise gradient component.

    Returns
    -------
    tuple of torch.Tensor
        ``(low, high)``, each ``(B, 1, 1, 1)``.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.edges import edge_thresholds
    >>> lo, hi = edge_thresholds(torch.zeros(2, 1, 8, 8))
    >>> bool((hi > 0).all())
    True
    """
    with torch.no_grad():
        ref = torch.quantile(_percentile_sample(mag), _QUANTILE, dim=1)
        return _thresholds_from(ref, mag, low=low, high=high, min_contrast=min_contrast,
                                edge_sigma=edge_sigma, noise=noise)


def _percentile_sample(mag: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` float32 values of ``mag`` for the per-image percentile: large images subsampled with a
    deterministic stride (at most about 20,000 values, a cheap sort)."""
    flat = mag.reshape(mag.shape[0], -1)
    step = max(1, flat.shape[1] // 20000)
    return flat[:, ::step].to(torch.float32)


def contrast_floor(min_contrast: float, edge_sigma: float) -> float:
    """The thresholds' absolute floor: the peak gradient, at scale ``edge_sigma``, of a sharp step of
    contrast ``min_contrast``.

    Examples
    --------
    >>> round(contrast_floor(0.02, 1.5), 6)
    0.005319
    """
    return min_contrast / (math.sqrt(2 * math.pi) * edge_sigma)


def _thresholds_from(ref, mag, *, low, high, min_contrast, edge_sigma, noise=None):
    """:func:`edge_thresholds` from the per-image 99th percentiles ``ref`` ``(B,)`` of ``mag``."""
    B = mag.shape[0]
    floor = contrast_floor(min_contrast, edge_sigma)
    lo = torch.clamp_min(low * ref, floor)
    hi = torch.clamp_min(high * ref, floor)
    if noise is not None:
        g = noise.to(torch.float32) / (math.sqrt(8 * math.pi) * edge_sigma ** 2)
        lo, hi = torch.maximum(lo, NOISE_LOW * g), torch.maximum(hi, NOISE_HIGH * g)
    lo = lo.to(mag.dtype).view(B, 1, 1, 1)
    hi = hi.to(mag.dtype).view(B, 1, 1, 1)
    hi = torch.maximum(hi, lo)
    return lo, hi


def canny(gray: torch.Tensor, *, edge_sigma: float = 1.5, low: float = DEFAULT_LOW,
          high: float = DEFAULT_HIGH, min_contrast: float = DEFAULT_MIN_CONTRAST) -> torch.Tensor:
    """Batched Canny edge detector on gray images.

    Parameters
    ----------
    gray : torch.Tensor
        ``(B, 1, H, W)`` with intensities in ``[0, 1]`` (see :func:`defocus_xai._images.to_gray`).
    edge_sigma : float
        Scale of the Gaussian-derivative gradient, in pixels.
    low, high : float
        Hysteresis thresholds as fractions of each image's 99th percentile of gradient magnitude.
    min_contrast : float
        Absolute floor of both thresholds (contrast of a sharp step, see :func:`edge_thresholds`).

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` bool edge mask (no gradient).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.edges import canny
    >>> img = torch.zeros(1, 1, 32, 32); img[..., 16:] = 1.0
    >>> canny(img).sum().item()   # one vertical line
    32
    """
    with torch.no_grad():
        d = gaussian_derivatives(gray, [edge_sigma], second_order=False)
        gx, gy = d[:, 0, 0:1], d[:, 0, 1:2]
        mag = torch.sqrt(gx * gx + gy * gy)
        return canny_from_gradients(gx, gy, mag, edge_sigma=edge_sigma, low=low, high=high,
                                    min_contrast=min_contrast)


def canny_from_gradients(gx, gy, mag, *, edge_sigma, low, high, min_contrast, noise=None):
    """Canny steps after the gradient (shared by :func:`canny` and the estimator)."""
    with torch.no_grad():
        lo, hi = edge_thresholds(mag, low=low, high=high, min_contrast=min_contrast,
                                 edge_sigma=edge_sigma, noise=noise)
        peaks = non_maximum_suppression(gx, gy, mag)
        weak = peaks & (mag >= lo)
        strong = peaks & (mag >= hi)
        return hysteresis(strong, weak)
