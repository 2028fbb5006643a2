"""The defocus-map estimator: images -> sigma maps in pixels.

:func:`estimate_defocus` does the work; :class:`DefocusEstimator` is a thin ``nn.Module`` that holds an
:class:`~defocus_xai.defocus.config.EstimatorConfig` and calls it. The method: ``docs/estimator.md``.
"""

from __future__ import annotations

import os
import sys
import warnings
from functools import partial

import torch
import torch.nn as nn

from .._device import resolve_device
from .._images import as_image_batch_unchecked, check_extremes, check_range, luma, to_gray
from .chunks import run_in_cpu_chunks
from .config import EstimatorConfig
from .edges import canny_from_gradients
from .filters import DEFAULT_TRUNCATE, gaussian_derivatives
from .fused import compile_requested, fused_applies, fused_maps
from .propagation import guided_propagation
from .noise import noise_level
from .ratio import edge_sigma
from .robust import STD3_FACTOR, robust_edge_sigma
from .resize import resize_batch, upscale_note
from .result import DefocusResult

__all__ = ["estimate_defocus", "DefocusEstimator"]


def _caller_stacklevel() -> int:
    """Stack level of the first frame outside this package and torch.nn (for warnings)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    skip = (here, os.path.dirname(os.path.abspath(nn.__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


def _config_from(config: EstimatorConfig | None, settings: dict) -> EstimatorConfig:
    """``config``, or an :class:`EstimatorConfig` built from ``settings`` (never both)."""
    if config is None:
        return EstimatorConfig(**settings)
    if not isinstance(config, EstimatorConfig):
        raise TypeError(f"config must be an EstimatorConfig or None, got {type(config).__name__}; "
                        "pass a dict of settings as keywords (**settings)")
    if settings:
        raise TypeError(f"pass either config or settings, not both (got config and {sorted(settings)})")
    return config


def edge_values(cfg: EstimatorConfig, batch: torch.Tensor):
    """The sparse stage of the corrected recipes (``"ours"``, ``"robust"``) for a ``(B, 3, H, W)`` batch.

    Returns ``(x, gray, sparse, confidence, edges)``, each ``(B, C, H, W)`` at the recipe's grid: the
    resized batch, the gray image that guides the propagation, sigma at the edge pixels, the weight each
    edge value gets in the propagation, and the bool edge mask. :func:`estimate_defocus` propagates
    ``sparse`` with ``confidence``; benches use this stage to feed the same propagation other values or
    weights (``bench/defocus_error_budget.py``).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus import EstimatorConfig
    >>> from defocus_xai.defocus.estimator import edge_values
    >>> step = torch.zeros(1, 3, 32, 32); step[..., 16:] = 1.0
    >>> x, gray, sparse, confidence, edges = edge_values(EstimatorConfig(size=None), step)
    >>> bool(edges.any()), sparse[edges].max().item() < 0.5
    (True, True)
    """
    x = resize_batch(batch, cfg.size)
    robust = cfg.recipe == "robust"
    # "robust": JPEG's full-resolution luma, free of the subsampled chroma's blur.
    gray = luma(x) if robust else to_gray(x)
    scales = [cfg.edge_sigma, cfg.std1, cfg.std2] + ([STD3_FACTOR * cfg.std2] if robust else [])
    uniq = sorted(set(scales))
    # First derivatives of all scales in one separable filtering (B, S, 2, H, W).
    d = gaussian_derivatives(gray, uniq, truncate=DEFAULT_TRUNCATE)
    ie, *ratio_scales = (uniq.index(s) for s in scales)

    ge = d[:, ie].detach()
    gx, gy = ge[:, 0:1], ge[:, 1:2]
    mag = torch.sqrt(gx * gx + gy * gy)
    noise = noise_level(gray.detach()) if robust else None
    edges = canny_from_gradients(gx, gy, mag, edge_sigma=cfg.edge_sigma, low=cfg.low_threshold,
                                 high=cfg.high_threshold, min_contrast=cfg.min_contrast,
                                 noise=noise)

    if robust:
        sparse, conf = robust_edge_sigma(d, tuple(ratio_scales), edges, cfg, noise)
    else:
        sparse, conf = edge_sigma(d, tuple(ratio_scales), edges, cfg)
    return x, gray, sparse, conf, edges


def _maps_ours(cfg: EstimatorConfig, batch: torch.Tensor):
    """``(dense, sparse, edges)`` of the corrected recipes (``"ours"``, ``"robust"``) for a
    ``(B, 3, H, W)`` batch."""
    x, gray, sparse, conf, edges = edge_values(cfg, batch)
    edges_f = edges.to(gray.dtype)
    if cfg.propagation == "none":
        dense = sparse
    elif cfg.propagation == "guided":
        dense = guided_propagation(sparse, conf, gray, fill_std=cfg.fill_std,
                                   radius=cfg.guided_radius, eps=cfg.guided_eps,
                                   subsample=cfg.subsample)
    else:
        from .matting import matting_propagation

        dense = matting_propagation(sparse, conf, x, lam=cfg.matting_lambda, eps=cfg.matting_eps)
    dense = dense.clamp(0.0, cfg.sigma_max)
    return dense, sparse, edges_f


def _maps_reference(cfg: EstimatorConfig, batch: torch.Tensor):
    """``(dense, sparse, edges)`` of the reference recipe (square grids; ``size=None``: the input's width)."""
    from .reference import reference_defocus

    h, w = cfg.grid or (batch.shape[-1], batch.shape[-1])
    if h != w:
        raise ValueError(f"recipe='reference' needs a square size, got {cfg.size}")
    dense, sparse, edges = reference_defocus(batch, size=h, std1=cfg.std1, std2=cfg.std2,
                                             edge_sigma=cfg.edge_sigma,
                                             input_range=cfg.reference_input_range)
    return dense.to(torch.float32), sparse.to(torch.float32), edges.to(torch.float32)


def estimate_defocus(images, config: EstimatorConfig | None = None, *, device=None,
                     compiled: bool | None = None, **settings) -> DefocusResult:
    """Estimate per-pixel defocus blur (Gaussian sigma in pixels) of a batch of images.

    Parameters
    ----------
    images : torch.Tensor, numpy.ndarray, PIL image or list of them
        torch tensors channels-first ``(B, C, H, W)`` / ``(C, H, W)`` / ``(H, W)``; numpy arrays
        channels-last ``(B, H, W, C)`` / ``(H, W, C)`` / ``(H, W)``; ``C`` in {1, 3}; ``uint8``,
        ``uint16`` or float in ``[0, 1]`` (see :func:`defocus_xai._images.as_image_batch`).
    config : EstimatorConfig, optional
        All settings at once (then no ``**settings``).
    device : str or torch.device, optional
        Default: the input tensor's device, else CUDA if available, else CPU.
    compiled : bool, optional
        Run the compiled CPU path (``torch.compile`` and a small C library built with the same
        compiler; recipe ``"ours"``, guided propagation, CPU, no gradient; elsewhere ignored):
        4-5x the eager speed once compiled, about a minute to compile per chunk shape (cached on
        disk), maps within the tolerance given in ``docs/estimator.md``. ``None`` (default): on
        when ``$DEFOCUS_XAI_COMPILE=1``.
    **settings
        The fields of :class:`EstimatorConfig`: ``size`` (default 299; images are resized to
        ``size x size``, sigma is in pixels of that grid; ``None`` keeps the input size), ``recipe``
        (``"ours"``; ``"robust"``, JPEG's luma as gray, noise-aware thresholds, a multi-edge
        profile fit, a local median of edge values and boundary weights, for real photographs
        and video, 6-8x slower on typical images, up to 20x on edge-dense ones; or ``"reference"``, the published research code's maps, for its checkpoints),
        ``propagation`` (``"guided"``: normalized convolution + guided filter, fast and
        differentiable; ``"matting"``: exact closed-form matting Laplacian solve, CPU, slow;
        ``"none"``: ``dense = sparse``), ``std1`` / ``std2``, ``edge_sigma``, ``sigma_max`` and the
        rest.

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
        invalid settings.

    Warns
    -----
    RuntimeWarning
        Samples without any edge pixel.
    UserWarning
        Once per call, when the input is smaller than a quarter of the grid on either axis
        (heavily upscaled: the map then shows the interpolation, not the image's blur).

    Examples
    --------
    >>> import numpy as np, defocus_xai as dx
    >>> img = np.zeros((64, 64, 3), np.uint8); img[:, 32:] = 255
    >>> r = dx.estimate_defocus(img, size=None)
    >>> r.dense.shape, float(r.sparse[r.edges > 0].median()) < 0.1
    (torch.Size([1, 1, 64, 64]), True)
    """
    cfg = _config_from(config, settings)
    batch, unchecked = as_image_batch_unchecked(images, device=resolve_device(device, like=images))
    grid = cfg.grid or tuple(batch.shape[-2:])
    fast = (batch.device.type == "cpu" and compile_requested(compiled) and fused_applies(cfg, grid))
    if unchecked is not None and not (fast and grid == tuple(batch.shape[-2:])):
        batch, unchecked = check_range(batch, "images", unchecked), None
    note = upscale_note(batch.shape[-2:], cfg.size)
    if note is not None:
        warnings.warn(f"estimate_defocus: {note}; pass a smaller size= or larger images.",
                      UserWarning, stacklevel=_caller_stacklevel())
    if cfg.recipe == "reference":
        dense, sparse, edges = _maps_reference(cfg, batch)
    elif fast:
        # The compiled path takes the range check's minimum and maximum on its way through the batch.
        # Each chunk writes its maps into the outputs itself.
        n = batch.shape[0]
        outputs = tuple(torch.empty(n, 1, *grid, dtype=batch.dtype) for _ in range(3))
        outputs += (torch.empty(n, 2, dtype=batch.dtype),)
        dense, sparse, edges, checks = run_in_cpu_chunks(
            lambda b, out: fused_maps(cfg, resize_batch(b, cfg.size), out=out), batch,
            pixels=grid[0] * grid[1], outputs=outputs)
        if unchecked is not None:
            check_extremes(checks, batch, "images", unchecked)
    elif batch.device.type == "cpu":
        dense, sparse, edges = run_in_cpu_chunks(partial(_maps_ours, cfg), batch,
                                                 pixels=grid[0] * grid[1])
    else:
        dense, sparse, edges = _maps_ours(cfg, batch)
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
                         config=cfg.to_dict())


class DefocusEstimator(nn.Module):
    """:func:`estimate_defocus` as a module: images -> :class:`DefocusResult` (sigma in pixels).

    The module has no trainable parameters. It holds its settings as an :class:`EstimatorConfig`
    (``.settings``), recorded by :meth:`config` with every model and export that uses its maps.

    Parameters
    ----------
    config : EstimatorConfig, optional
        All settings at once (then no ``**settings``).
    device : str or torch.device, optional
        Where to compute; default: the input tensor's device, else CUDA when available, else CPU.
    **settings
        The fields of :class:`EstimatorConfig` (``size``, ``recipe``, ``propagation``, ``std1``, ...).

    Examples
    --------
    >>> import torch, defocus_xai as dx
    >>> est = dx.DefocusEstimator(size=64)
    >>> est(torch.rand(2, 3, 80, 80)).dense.shape
    torch.Size([2, 1, 64, 64])
    >>> est.config()["std1"], est.settings.std2
    (1.5, 2.0)
    """

    def __init__(self, config: EstimatorConfig | None = None, *, device=None, **settings):
        super().__init__()
        self.settings = _config_from(config, settings)
        self.device = None if device is None else str(torch.device(device))

    def config(self) -> dict:
        """The estimator's settings as a JSON-able dict (the recipe of its maps).

        ``DefocusEstimator(**est.config())`` rebuilds an equivalent estimator (``device`` is not
        part of the recipe and is left out).

        Returns
        -------
        dict
            ``self.settings.to_dict()``.

        Examples
        --------
        >>> import defocus_xai as dx
        >>> cfg = dx.DefocusEstimator().config()
        >>> cfg["recipe"], cfg["size"], cfg["propagation"]
        ('ours', 299, 'guided')
        """
        return self.settings.to_dict()

    def extra_repr(self) -> str:
        c = self.config()
        return ", ".join(f"{k}={c[k]!r}" for k in ("recipe", "size", "std1", "std2", "edge_sigma",
                                                   "propagation", "sigma_max"))

    def forward(self, images) -> DefocusResult:
        """Estimate defocus maps; see :func:`estimate_defocus` for inputs and outputs.

        Examples
        --------
        >>> import torch, defocus_xai as dx
        >>> dx.DefocusEstimator(size=32)(torch.rand(3, 32, 32)).sparse.shape
        torch.Size([1, 1, 32, 32])
        """
        return estimate_defocus(images, self.settings, device=self.device)
