"""The defocus-map estimator: images -> sigma maps in pixels (``recipe="ours"`` and ``"reference"``).

Pipeline of ``recipe="ours"`` (batched torch, any device; see ``docs/estimator.md``):

1. convert the input with :func:`defocus_xai._images.as_image_batch` (``(B, 3, H, W)`` in
   ``[0, 1]``) and resize to ``size x size`` (bilinear, antialiased when downscaling);
2. gray = mean of R, G, B;
3. Gaussian-derivative filtering at ``edge_sigma``, ``std1`` and ``std2`` (first and second
   derivatives, separable, stacked kernels, half-width 5 std, reflect padding);
4. Canny edges (non-maximum suppression, per-image relative double threshold, hysteresis);
5. at each edge pixel, the dual re-blur ratio ``R = |grad_std1| / |grad_std2|`` evaluated at the
   centre of the edge profile, and ``sigma = sqrt((R^2 std1^2 - std2^2) / (1 - R^2))`` clamped to
   ``[0, sigma_max]``;
6. propagation to a dense map (``"guided"``, ``"matting"`` or ``"none"``), clamped to
   ``[0, sigma_max]``.

Evaluating the ratio at the edge centre
    For a step of amplitude ``A`` blurred by a Gaussian of std ``sigma``, the gradient magnitude at
    scale ``s`` and distance ``d`` from the edge centre is
    ``M_s(d) = A / (sqrt(2 pi) S) exp(-d^2 / (2 S^2))`` with ``S^2 = sigma^2 + s^2``. An edge pixel
    lies up to about half a pixel from the centre, where ``M_1(d) / M_2(d)`` differs from the ratio
    of the peaks (by 2 % at ``sigma = 0.5``, which is 0.25 px of sigma). Both magnitudes are
    therefore extrapolated to the centre using the second derivative along the gradient,
    ``q_s = I_nn / I_n = -d / S^2``. Since ``S_2^2 - S_1^2 = std2^2 - std1^2`` is known, the
    correction needs neither ``d`` nor ``sigma``::

        log R_centre = log(M_1 / M_2) + (std2^2 - std1^2) q_1 q_2 / 2

    (exact for a straight Gaussian-blurred step; the correction term is clipped to what a one-pixel
    offset can produce, so noise cannot inflate it).
"""

from __future__ import annotations

import json
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._images import as_image_batch, to_gray
from .edges import DEFAULT_HIGH, DEFAULT_LOW, DEFAULT_MIN_CONTRAST, canny_from_gradients
from .filters import DEFAULT_TRUNCATE, gaussian_derivatives
from .propagation import guided_propagation

__all__ = ["estimate_defocus", "DefocusEstimator", "DefocusResult", "sigma_from_ratio"]

PROPAGATIONS = ("guided", "matting", "none")
RECIPES = ("ours", "reference")
_RECIPE_STDS = {"ours": (1.5, 2.0), "reference": (2.0, 2.5)}
DEFAULT_SIGMA_MAX = 5.0
DEFAULT_SIZE = 299
_CPU_CHUNK = 8
_CPU_LOCK = threading.Lock()


def _run_cpu_chunks(fn, batch: torch.Tensor):
    """``fn`` over chunks of at most ``_CPU_CHUNK`` samples, spread over the torch CPU threads.

    Samples are independent, so the maps do not depend on the chunking. Small chunks stay in
    cache; a batch smaller than ``_CPU_CHUNK`` times the thread count is cut so that every
    worker gets a chunk. Each chunk runs single-threaded torch ops, and the chunks run concurrently in
    ``torch.get_num_threads()`` worker threads: the estimator is a long chain of small ops, which
    parallelize poorly inside one image, and whose OpenMP barriers stall badly when the cores are
    shared with other processes. The torch thread count is set to 1 for the duration of the call
    and restored afterwards (calls are serialized by a lock so that they cannot interleave).
    """
    n = batch.shape[0]
    with _CPU_LOCK:
        n_threads = torch.get_num_threads()
        size = max(1, min(_CPU_CHUNK, -(-n // n_threads)))     # every worker gets a chunk
        chunks = [batch[i:i + size] for i in range(0, n, size)]
        workers = min(n_threads, len(chunks))
        grad = torch.is_grad_enabled()

        def run(chunk):
            with torch.set_grad_enabled(grad):
                return fn(chunk)

        if n_threads > 1:
            torch.set_num_threads(1)
        try:
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    parts = list(pool.map(run, chunks))
            else:
                parts = [fn(c) for c in chunks]
        finally:
            if n_threads > 1:
                torch.set_num_threads(n_threads)
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(t) for t in zip(*parts))


@dataclass(frozen=True)
class DefocusResult:
    """Output of :func:`estimate_defocus`.

    Attributes
    ----------
    dense : torch.Tensor
        ``(B, 1, size, size)`` float32 sigma map in pixels of the ``size`` grid, in
        ``[0, sigma_max]``; differentiable for ``propagation="guided"`` / ``"none"``.
    sparse : torch.Tensor
        ``(B, 1, size, size)`` float32 sigma at edge pixels, zero elsewhere; differentiable at edge
        pixels.
    edges : torch.Tensor
        ``(B, 1, size, size)`` float32 edge mask (0 or 1), no gradient.
    edgeless : torch.Tensor
        ``(B,)`` bool: samples without any edge pixel (constant or featureless images), whose maps
        are all zeros.
    config : dict
        The estimator parameters that made the maps (JSON-able), see :meth:`DefocusEstimator.config`.

    Examples
    --------
    >>> import torch, defocus_xai as dx
    >>> r = dx.estimate_defocus(torch.rand(2, 3, 64, 64), size=64)
    >>> r.dense.shape, r.edgeless.tolist()
    (torch.Size([2, 1, 64, 64]), [False, False])
    """

    dense: torch.Tensor
    sparse: torch.Tensor
    edges: torch.Tensor
    edgeless: torch.Tensor
    config: dict = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def detach(self) -> "DefocusResult":
        """The same result with every tensor detached from the autograd graph.

        Examples
        --------
        >>> import torch, defocus_xai as dx
        >>> dx.estimate_defocus(torch.rand(1, 3, 32, 32), size=32).detach().dense.requires_grad
        False
        """
        return replace(self, dense=self.dense.detach(), sparse=self.sparse.detach(),
                       edges=self.edges.detach(), edgeless=self.edgeless.detach())

    def to(self, device) -> "DefocusResult":
        """The same result with every tensor moved to ``device``.

        Examples
        --------
        >>> import torch, defocus_xai as dx
        >>> dx.estimate_defocus(torch.rand(1, 3, 32, 32), size=32).to("cpu").dense.device.type
        'cpu'
        """
        return replace(self, dense=self.dense.to(device), sparse=self.sparse.to(device),
                       edges=self.edges.to(device), edgeless=self.edgeless.to(device))

    def numpy(self) -> dict:
        """Detached CPU numpy copies: ``{"dense", "sparse", "edges", "edgeless"}``.

        Examples
        --------
        >>> import torch, defocus_xai as dx
        >>> dx.estimate_defocus(torch.rand(1, 3, 32, 32), size=32).numpy()["dense"].dtype
        dtype('float32')
        """
        return {k: getattr(self, k).detach().cpu().numpy()
                for k in ("dense", "sparse", "edges", "edgeless")}


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
    >>> from defocus_xai.defocus.estimator import sigma_from_ratio
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


def _caller_stacklevel() -> int:
    """Stack level of the first frame outside this package and torch.nn (for warnings)."""
    import os
    import sys

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    skip = (here, os.path.dirname(os.path.abspath(nn.__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


def _resolve_device(images: Any, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(images, torch.Tensor):
        return images.device
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], torch.Tensor):
        return images[0].device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resolve_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"size must be an int, an (H, W) pair or None, got {size!r}")
        h, w = int(size[0]), int(size[1])
    else:
        h = w = int(size)
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size!r}")
    return h, w


def resize_batch(batch: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of a ``(B, C, H, W)`` batch to ``size``, antialiased when downscaling.

    Parameters
    ----------
    batch : torch.Tensor
        ``(B, C, H, W)`` float.
    size : int, (int, int) or None
        Target ``(H, W)`` (an int means square); ``None`` or the same size returns ``batch``.

    Returns
    -------
    torch.Tensor
        ``(B, C, h, w)``; non-square inputs resized to a square are stretched, as in the
        reference method.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.estimator import resize_batch
    >>> resize_batch(torch.rand(1, 3, 100, 80), 64).shape
    torch.Size([1, 3, 64, 64])
    """
    hw = _resolve_size(size)
    if hw is None or tuple(batch.shape[-2:]) == hw:
        return batch
    down = hw[0] < batch.shape[-2] or hw[1] < batch.shape[-1]
    return F.interpolate(batch, size=hw, mode="bilinear", align_corners=False, antialias=down)


class DefocusEstimator(nn.Module):
    """Defocus-blur estimator as a module: images -> :class:`DefocusResult` (sigma in pixels).

    The module has no trainable parameters; its settings are plain attributes, recorded by
    :meth:`config` with every model and export that uses the maps.

    Parameters
    ----------
    size : int, (int, int) or None
        Images are resized to ``size x size`` (bilinear, antialiased when downscaling) before
        estimation; sigma is in pixels of that grid. ``None`` keeps the input size.
    std1, std2 : float, optional
        The re-blur pair (``0 < std1 < std2``, pixels). Default: 1.5 / 2.0 for ``recipe="ours"``,
        2.0 / 2.5 for ``recipe="reference"`` (the pair the published checkpoints were trained with).
    edge_sigma : float
        Scale (px) of the Canny gradient.
    propagation : {"guided", "matting", "none"}
        How sparse edge sigma becomes a dense map (see ``docs/estimator.md``).
    recipe : {"ours", "reference"}
        ``"ours"``: this module's corrected estimator. ``"reference"``: the published research
        code's recipe, reproduced for compatibility with its checkpoints (scikit-image Canny on the
        CPU, edge-weighted ratio, guided filter over the zero-filled sparse map).
    device : str or torch.device, optional
        Where to compute; default: the input tensor's device, else CUDA when available, else CPU.
    sigma_max : float
        Upper clamp of sigma in pixels (``"ours"``; the reference recipe clamps at 5).
    low_threshold, high_threshold : float
        Canny thresholds as fractions of each image's 99th percentile of gradient magnitude.
    min_contrast : float
        Contrast of the weakest sharp step that can be an edge (floor of both thresholds).
    fill_std : float
        Std (px) of the normalized convolution of ``"guided"`` propagation.
    guided_radius : int
        Window half-width (px) of the guided filter.
    guided_eps : float
        Regularization of the guided filter.
    structure_scale : float
        ``"guided"``: edge pixels are weighted in the propagation by
        ``exp(-(rho / structure_scale)^2)``, ``rho`` measuring how far the image departs from a
        straight edge there (corners, junctions; the ratio formula assumes a straight edge). ``0``
        weights all edge pixels equally.
    subsample : int
        ``"guided"``: the propagation runs on a grid subsampled by this factor and the guided
        filter's coefficients are applied at full resolution (fast guided filter); ``1`` = exact.
    matting_lambda, matting_eps : float
        Data-term weight and covariance regularization of ``"matting"`` propagation.
    reference_input_range : {"[-1,1]", "[0,1]"}
        ``recipe="reference"`` only: the range the caller's ``[0, 1]`` image is mapped to before the
        reference computation (the training convention of the published checkpoints is
        ``"[-1,1]"``).

    Examples
    --------
    >>> import torch, defocus_xai as dx
    >>> est = dx.DefocusEstimator(size=64)
    >>> est(torch.rand(2, 3, 80, 80)).dense.shape
    torch.Size([2, 1, 64, 64])
    >>> est.config()["std1"], est.config()["std2"]
    (1.5, 2.0)
    """

    def __init__(self, size=DEFAULT_SIZE, *, std1: float | None = None, std2: float | None = None,
                 edge_sigma: float = 1.5, propagation: str = "guided", recipe: str = "ours",
                 device=None, sigma_max: float = DEFAULT_SIGMA_MAX,
                 low_threshold: float = DEFAULT_LOW, high_threshold: float = DEFAULT_HIGH,
                 min_contrast: float = DEFAULT_MIN_CONTRAST, fill_std: float = 2.0,
                 guided_radius: int = 4, guided_eps: float = 1e-3, structure_scale: float = 0.2,
                 subsample: int = 2,
                 matting_lambda: float | None = None, matting_eps: float | None = None,
                 reference_input_range: str = "[-1,1]"):
        super().__init__()
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {propagation!r}")
        d1, d2 = _RECIPE_STDS[recipe]
        std1 = float(d1 if std1 is None else std1)
        std2 = float(d2 if std2 is None else std2)
        if not (0 < std1 < std2):
            raise ValueError(f"need 0 < std1 < std2, got std1={std1}, std2={std2}")
        if not edge_sigma > 0:
            raise ValueError(f"edge_sigma must be > 0, got {edge_sigma}")
        if not sigma_max > 0:
            raise ValueError(f"sigma_max must be > 0, got {sigma_max}")
        if not (0 <= low_threshold <= high_threshold):
            raise ValueError(f"need 0 <= low_threshold <= high_threshold, got {low_threshold}, "
                             f"{high_threshold}")
        if recipe == "reference" and propagation != "guided":
            raise ValueError("recipe='reference' has its own propagation (a guided filter over the "
                             f"zero-filled sparse map); propagation={propagation!r} is not available")
        if reference_input_range not in ("[-1,1]", "[0,1]"):
            raise ValueError("reference_input_range must be '[-1,1]' or '[0,1]', got "
                             f"{reference_input_range!r}")
        from .matting import DEFAULT_EPS, DEFAULT_LAMBDA

        _resolve_size(size)
        self.size = size if size is None or isinstance(size, int) else tuple(int(s) for s in size)
        self.std1, self.std2 = std1, std2
        self.edge_sigma = float(edge_sigma)
        self.propagation = propagation
        self.recipe = recipe
        self.device = None if device is None else str(torch.device(device))
        self.sigma_max = float(sigma_max)
        self.low_threshold = float(low_threshold)
        self.high_threshold = float(high_threshold)
        self.min_contrast = float(min_contrast)
        self.fill_std = float(fill_std)
        self.guided_radius = int(guided_radius)
        self.guided_eps = float(guided_eps)
        self.structure_scale = float(structure_scale)
        if int(subsample) < 1:
            raise ValueError(f"subsample must be >= 1, got {subsample}")
        self.subsample = int(subsample)
        self.matting_lambda = float(DEFAULT_LAMBDA if matting_lambda is None else matting_lambda)
        self.matting_eps = float(DEFAULT_EPS if matting_eps is None else matting_eps)
        self.reference_input_range = reference_input_range

    def config(self) -> dict:
        """The estimator's parameters as a JSON-able dict (the recipe of its maps).

        ``DefocusEstimator(**cfg)`` with ``cfg = est.config()`` rebuilds an equivalent estimator
        (``device`` is not part of the recipe and is left out).

        Returns
        -------
        dict

        Examples
        --------
        >>> import defocus_xai as dx
        >>> cfg = dx.DefocusEstimator().config()
        >>> cfg["recipe"], cfg["size"], cfg["propagation"]
        ('ours', 299, 'guided')
        """
        cfg = {
            "recipe": self.recipe,
            "size": list(self.size) if isinstance(self.size, tuple) else self.size,
            "std1": self.std1,
            "std2": self.std2,
            "edge_sigma": self.edge_sigma,
            "propagation": self.propagation,
            "sigma_max": self.sigma_max,
            "low_threshold": self.low_threshold,
            "high_threshold": self.high_threshold,
            "min_contrast": self.min_contrast,
            "fill_std": self.fill_std,
            "guided_radius": self.guided_radius,
            "guided_eps": self.guided_eps,
            "structure_scale": self.structure_scale,
            "subsample": self.subsample,
            "matting_lambda": self.matting_lambda,
            "matting_eps": self.matting_eps,
            "reference_input_range": self.reference_input_range,
        }
        json.dumps(cfg)
        return cfg

    def extra_repr(self) -> str:
        c = self.config()
        return ", ".join(f"{k}={c[k]!r}" for k in ("recipe", "size", "std1", "std2", "edge_sigma",
                                                   "propagation", "sigma_max"))

    # ------------------------------------------------------------------ pipeline
    def forward(self, images) -> DefocusResult:
        """Estimate defocus maps; see :func:`estimate_defocus` for inputs and outputs.

        Examples
        --------
        >>> import torch, defocus_xai as dx
        >>> dx.DefocusEstimator(size=32)(torch.rand(3, 32, 32)).sparse.shape
        torch.Size([1, 1, 32, 32])
        """
        device = _resolve_device(images, self.device)
        batch = as_image_batch(images, device=device)
        if self.recipe == "reference":
            dense, sparse, edges = self._reference(batch)
        elif batch.device.type == "cpu":
            dense, sparse, edges = _run_cpu_chunks(self._ours, batch)
        else:
            dense, sparse, edges = self._ours(batch)
        edgeless = edges.flatten(1).sum(1) == 0
        if bool(edgeless.any()):
            bad = edgeless.nonzero().flatten().tolist()
            warnings.warn(
                f"estimate_defocus: no edge found in sample(s) {bad} of {batch.shape[0]} (constant "
                "or featureless image); their maps are all zeros, flagged in result.edgeless.",
                RuntimeWarning, stacklevel=_caller_stacklevel())
            keep = (~edgeless).view(-1, 1, 1, 1).to(dense.dtype)
            dense, sparse = dense * keep, sparse * keep
        return DefocusResult(dense=dense, sparse=sparse, edges=edges, edgeless=edgeless,
                             config=self.config())

    def _reference(self, batch):
        from .reference import reference_defocus  # written beside this module

        size = self.size
        if size is None:
            size = batch.shape[-1]
        if isinstance(size, tuple):
            if size[0] != size[1]:
                raise ValueError(f"recipe='reference' needs a square size, got {size}")
            size = size[0]
        dense, sparse, edges = reference_defocus(
            batch, size=int(size), std1=self.std1, std2=self.std2, edge_sigma=self.edge_sigma,
            input_range=self.reference_input_range)
        return (dense.to(torch.float32), sparse.to(torch.float32), edges.to(torch.float32))

    def _ours(self, batch):
        x = resize_batch(batch, self.size)
        gray = to_gray(x)
        scales = [self.edge_sigma, self.std1, self.std2]
        uniq = sorted(set(scales))
        # First derivatives of all scales in one separable filtering (B, S, 2, H, W).
        d = gaussian_derivatives(gray, uniq, truncate=DEFAULT_TRUNCATE)
        ie, i1, i2 = (uniq.index(s) for s in scales)

        ge = d[:, ie].detach()
        gx, gy = ge[:, 0:1], ge[:, 1:2]
        mag = torch.sqrt(gx * gx + gy * gy)
        edges = canny_from_gradients(gx, gy, mag, edge_sigma=self.edge_sigma,
                                     low=self.low_threshold, high=self.high_threshold,
                                     min_contrast=self.min_contrast)

        sparse, conf = self._edge_sigma(d, (i1, i2), edges)
        edges_f = edges.to(gray.dtype)
        if self.propagation == "none":
            dense = sparse
        elif self.propagation == "guided":
            dense = guided_propagation(sparse, conf, gray, fill_std=self.fill_std,
                                       radius=self.guided_radius, eps=self.guided_eps,
                                       subsample=self.subsample)
        else:
            from .matting import matting_propagation

            dense = matting_propagation(sparse, conf, x, lam=self.matting_lambda,
                                        eps=self.matting_eps)
        dense = dense.clamp(0.0, self.sigma_max)
        return dense, sparse, edges_f

    def _edge_sigma(self, d: torch.Tensor, scales: tuple, edges: torch.Tensor):
        """Sparse sigma and propagation confidence at edge pixels.

        ``d`` is the ``(B, S, 2, H, W)`` output of :func:`gaussian_derivatives` (``Ix, Iy`` per
        scale) and ``scales`` the indices of ``std1`` and ``std2`` in it. Everything is computed
        at the edge pixels only (one gather of a 5-point cross per channel), second derivatives by
        5-point central differences of the first derivatives (relative error ~1e-2 on a term that
        is itself a few percent of ``log R``), indices clamped at the image border.
        """
        B, S, _, H, W = d.shape
        n_pix = H * W
        idx = edges.reshape(-1).nonzero().squeeze(1)
        sparse = torch.zeros(B * n_pix, dtype=d.dtype, device=d.device)
        conf = torch.zeros(B * n_pix, dtype=d.dtype, device=d.device)
        if idx.numel() == 0:
            return sparse.view(B, 1, H, W), conf.view(B, 1, H, W)
        b = idx // n_pix
        rem = idx - b * n_pix
        y, x = rem // W, rem % W
        # Channel planes (Ix, Iy at std1, then at std2) in d's flat layout.
        chan = torch.tensor([(2 * k + j) * n_pix for k in scales for j in (0, 1)],
                            device=d.device)
        # Cross offsets: centre, x -2, -1, +1, +2, y -2, -1, +1, +2 (clamped at the border).
        steps = torch.tensor([0, -2, -1, 1, 2], device=d.device)
        # Offsets first and pixels last, so that every slice below is contiguous.
        xx = (x.view(1, -1) + steps.view(-1, 1)).clamp_(0, W - 1)            # (5, K)
        yy = (y.view(1, -1) + steps[1:].view(-1, 1)).clamp_(0, H - 1)        # (4, K)
        sp = torch.cat([y.view(1, -1) * W + xx, yy * W + x.view(1, -1)], 0)  # (9, K)
        base = (b * (S * 2 * n_pix)).view(1, 1, -1) + chan.view(1, 4, 1)    # (1, 4, K)
        v = d.reshape(-1).take(base + sp.view(9, 1, -1))                     # (9, 4, K)
        c = v[0]
        dxs = (8.0 * (v[3] - v[2]) - (v[4] - v[1])) / 12.0
        dys = (8.0 * (v[7] - v[6]) - (v[8] - v[5])) / 12.0

        s1, s2 = self.std1, self.std2
        delta = s2 * s2 - s1 * s1

        def local(k):
            ix, iy = c[2 * k], c[2 * k + 1]
            ixx, iyy = dxs[2 * k], dys[2 * k + 1]
            ixy = 0.5 * (dys[2 * k] + dxs[2 * k + 1])
            m2 = (ix * ix + iy * iy).clamp_min(1e-30)
            inn = (ix * ix * ixx + 2 * ix * iy * ixy + iy * iy * iyy) / m2
            itt = (iy * iy * ixx - 2 * ix * iy * ixy + ix * ix * iyy) / m2
            int_ = (ix * iy * (iyy - ixx) + (ix * ix - iy * iy) * ixy) / m2
            return m2, inn, itt, int_

        m2_1, inn1, _, _ = local(0)
        m2_2, inn2, itt2, int2 = local(1)
        # q = I_nn / |grad I| = -d / S^2 at each scale; the product gives the centre correction.
        q1q2 = inn1 * inn2 / torch.sqrt(m2_1 * m2_2)
        corr = (delta * q1q2).clamp(0.0, delta / (s1 * s1 * s2 * s2))
        log_r2 = torch.log(m2_1) - torch.log(m2_2) + corr
        r2 = torch.exp(log_r2.clamp(-20.0, 20.0))
        sig = sigma_from_ratio(r2, s1, s2, self.sigma_max)
        sparse = sparse.index_put((idx,), sig)
        with torch.no_grad():
            if self.structure_scale > 0:
                # One-dimensionality at std2: rho = std2 |(I_tt, sqrt2 I_nt)| / |grad I| is zero
                # on any straight edge, large at corners and junctions.
                rho2 = (itt2 * itt2 + 2 * int2 * int2) * (s2 * s2) / m2_2
                w = torch.exp(-rho2 / (self.structure_scale ** 2))
            else:
                w = torch.ones_like(sig)
            conf = conf.index_put((idx,), w.detach())
        return sparse.view(B, 1, H, W), conf.view(B, 1, H, W)


def estimate_defocus(images, *, size=DEFAULT_SIZE, std1: float | None = None,
                     std2: float | None = None, edge_sigma: float = 1.5,
                     propagation: str = "guided", recipe: str = "ours", device=None,
                     **options) -> DefocusResult:
    """Estimate per-pixel defocus blur (Gaussian sigma in pixels) of a batch of images.

    Parameters
    ----------
    images : torch.Tensor, numpy.ndarray, PIL image or list of them
        torch tensors channels-first ``(B, C, H, W)`` / ``(C, H, W)`` / ``(H, W)``; numpy arrays
        channels-last ``(B, H, W, C)`` / ``(H, W, C)`` / ``(H, W)``; ``C`` in {1, 3}; ``uint8``,
        ``uint16`` or float in ``[0, 1]`` (see :func:`defocus_xai._images.as_image_batch`).
    size : int, (int, int) or None
        Images are resized to ``size x size`` (bilinear, antialiased when downscaling); sigma is in
        pixels of that grid. ``None`` keeps the input size.
    std1, std2 : float, optional
        Re-blur pair; default 1.5 / 2.0 for ``"ours"``, 2.0 / 2.5 for ``"reference"``.
    edge_sigma : float
        Scale (px) of the Canny gradient.
    propagation : {"guided", "matting", "none"}
        Sparse-to-dense propagation. ``"guided"``: normalized convolution + guided filter (fast,
        differentiable). ``"matting"``: exact closed-form matting Laplacian solve (CPU, per sample,
        slow). ``"none"``: ``dense = sparse``.
    recipe : {"ours", "reference"}
        ``"reference"`` reproduces the published research code's maps (for its checkpoints).
    device : str or torch.device, optional
        Default: the input tensor's device, else CUDA if available, else CPU.
    **options
        Further :class:`DefocusEstimator` parameters (``sigma_max``, ``low_threshold``,
        ``high_threshold``, ``min_contrast``, ``fill_std``, ``guided_radius``, ``guided_eps``,
        ``matting_lambda``, ``matting_eps``, ``reference_input_range``).

    Returns
    -------
    DefocusResult
        ``dense``, ``sparse``, ``edges`` float32 ``(B, 1, size, size)`` and ``edgeless`` ``(B,)``.
        ``sparse`` carries gradients to the input through the ratio at edge pixels, ``dense``
        through the propagation (``"guided"``, ``"none"``; ``"matting"``: from the sparse values
        only); ``edges`` is a hard mask without gradient. Samples without edges get all-zero maps,
        ``edgeless=True`` and a ``RuntimeWarning``.

    Raises
    ------
    ValueError, TypeError
        For inputs outside the convention (see :func:`defocus_xai._images.as_image_batch`) and
        invalid parameters.

    Examples
    --------
    >>> import numpy as np, defocus_xai as dx
    >>> img = np.zeros((64, 64, 3), np.uint8); img[:, 32:] = 255
    >>> r = dx.estimate_defocus(img, size=None)
    >>> r.dense.shape, float(r.sparse[r.edges > 0].median()) < 0.1
    (torch.Size([1, 1, 64, 64]), True)
    """
    est = DefocusEstimator(size, std1=std1, std2=std2, edge_sigma=edge_sigma,
                           propagation=propagation, recipe=recipe, device=device, **options)
    return est(images)
