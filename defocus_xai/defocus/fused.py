"""The estimator's compiled CPU path: the graphs of :mod:`.fast_graphs` compiled by ``torch.compile``
(inductor, C++), the thresholds, hysteresis and the final upsampling eager.

Opt-in (``estimate_defocus(..., compiled=True)`` or ``DEFOCUS_XAI_COMPILE=1``), CPU inference only, recipe
``"ours"`` with guided propagation (half-resolution, short kernels); anything else, or a failed
compilation, runs the eager code. The switch, the tolerance against the eager maps and the timings:
``docs/estimator.md`` ("Compiled CPU path").
"""

from __future__ import annotations

import math
import os
import threading
import warnings

import torch
import torch.nn.functional as F

from .config import EstimatorConfig
from .edges import canny_from_gradients, hysteresis
from .fast_graphs import back, derivatives, front, hysteresis_inputs
from .filters import _SHIFT_TAPS, DEFAULT_TRUNCATE, _pad, _taps, gaussian_derivatives
from .propagation import guided_propagation
from .ratio import edge_sigma

__all__ = ["compile_requested", "fused_maps", "COMPILE_ENV"]

#: Environment variable that turns the compiled path on when ``compiled=None`` (``1`` / ``0``).
COMPILE_ENV = "DEFOCUS_XAI_COMPILE"
_LOCK = threading.Lock()
_COMPILED: dict = {}
_READY: set = set()
_FAILED: list = []


def compile_requested(compiled: bool | None) -> bool:
    """``compiled``, or (``None``) whether ``$DEFOCUS_XAI_COMPILE`` is set to a true value.

    Examples
    --------
    >>> compile_requested(False), compile_requested(True)
    (False, True)
    """
    if compiled is not None:
        return bool(compiled)
    return os.environ.get(COMPILE_ENV, "0").strip().lower() not in ("", "0", "false", "no", "off")


def _call(fn, *args):
    """``fn(*args)`` compiled once per input signature (first call under a lock: compilation is not
    thread-safe); ``None`` after a failed compilation (a warning the first time)."""
    if _FAILED:
        return None
    key = (fn.__name__,) + tuple((tuple(a.shape), a.dtype) if torch.is_tensor(a) else a
                                 for a in args)
    if key in _READY:
        return _COMPILED[fn](*args)
    with _LOCK:
        try:
            if fn not in _COMPILED:
                _COMPILED[fn] = torch.compile(fn, dynamic=False, fullgraph=True)
            from torch._inductor import config as inductor_config

            # Contracted multiply-adds where the eager code computes them so (the filter chains),
            # not in the front graph: its suppression compares magnitudes that the eager code
            # rounds product by product, and its ties (pixel-aligned edges) must break alike.
            contract = "off" if fn is front else "fast"
            with inductor_config.patch({"cpp.enable_floating_point_contract_flag": contract,
                                        "cpp_wrapper": True}):
                out = _COMPILED[fn](*args)
        except Exception as exc:  # no C++ compiler, unsupported op, ...: the eager code is exact
            _FAILED.append(repr(exc))
            warnings.warn(f"estimate_defocus: the compiled path failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); running the eager code", RuntimeWarning, stacklevel=4)
            return None
        _READY.add(key)
        return out


def fused_maps(cfg: EstimatorConfig, gray: torch.Tensor):
    """``(dense, sparse, edges)`` of recipe ``"ours"`` (guided propagation) through the compiled stages.

    Parameters
    ----------
    cfg : EstimatorConfig
        Recipe ``"ours"``, propagation ``"guided"``.
    gray : torch.Tensor
        ``(B, 1, H, W)`` float gray image on the estimator's grid, CPU.

    Returns
    -------
    dense, sparse, edges : torch.Tensor
        As the eager estimator's, within the tolerance of ``docs/estimator.md``; no gradient.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus import EstimatorConfig
    >>> img = torch.zeros(1, 1, 32, 32); img[..., 16:] = 1.0
    >>> dense, sparse, edges = fused_maps(EstimatorConfig(size=None), img)  # doctest: +SKIP
    """
    scales = [cfg.edge_sigma, cfg.std1, cfg.std2]
    uniq = tuple(sorted(set(scales)))
    where = tuple(uniq.index(s) for s in scales)
    with torch.no_grad():
        radius = int(math.ceil(DEFAULT_TRUNCATE * max(uniq)))
        taps = tuple(_taps(s, radius, gray.dtype) for s in uniq)
        maps = None
        if _supported(cfg, gray):
            maps = _call(derivatives, _pad(gray, radius, radius), taps, where)
            if maps is not None:
                maps = _call(front, *maps, cfg)
        if maps is not None:
            mag, peaks, sigma, weight = maps
            edges = hysteresis(*hysteresis_inputs(mag, peaks, cfg))
            blur = _taps(cfg.fill_std / 2, _blur_radius(cfg), None)[0]
            maps = _call(back, sigma, weight, edges, gray, blur, cfg)
        if maps is None:
            return _eager_maps(cfg, gray, uniq, where)
        coef, sparse = maps
        ab = F.interpolate(coef, size=gray.shape[-2:], mode="bilinear", align_corners=False)
        dense = torch.addcmul(ab[:, 1:], ab[:, :1], gray).clamp_(0.0, cfg.sigma_max)
    return dense, sparse, edges.to(gray.dtype)


def _supported(cfg: EstimatorConfig, gray: torch.Tensor) -> bool:
    """Whether the compiled graphs cover ``cfg`` and the grid: half-resolution propagation with the
    short (shift-add) blur and box kernels of the eager code, a half-resolution grid larger than them."""
    r = max(_blur_radius(cfg), max(1, round(cfg.guided_radius / 2)))
    return (cfg.subsample == 2 and cfg.fill_std > 0 and 2 * r + 1 <= _SHIFT_TAPS
            and min(gray.shape[-2:]) // 2 > 2 * r)


def _blur_radius(cfg: EstimatorConfig) -> int:
    """Radius of :func:`~.filters.gaussian_blur`'s kernel in the half-resolution fill."""
    return max(1, int(math.ceil(3.0 * (cfg.fill_std / 2))))


def _eager_maps(cfg: EstimatorConfig, gray: torch.Tensor, uniq: tuple, where: tuple):
    """The eager estimator's ``(dense, sparse, edges)`` (recipe ``"ours"``, guided propagation), for the
    settings the graphs do not cover and after a failed compilation."""
    ie, i1, i2 = where
    d = gaussian_derivatives(gray, uniq, truncate=DEFAULT_TRUNCATE)
    gx, gy = d[:, ie, 0:1], d[:, ie, 1:2]
    edges = canny_from_gradients(gx, gy, torch.sqrt(gx * gx + gy * gy), edge_sigma=cfg.edge_sigma,
                                 low=cfg.low_threshold, high=cfg.high_threshold,
                                 min_contrast=cfg.min_contrast)
    sparse, conf = edge_sigma(d, (i1, i2), edges, cfg)
    dense = guided_propagation(sparse, conf, gray, fill_std=cfg.fill_std, radius=cfg.guided_radius,
                               eps=cfg.guided_eps, subsample=cfg.subsample)
    return dense.clamp(0.0, cfg.sigma_max), sparse, edges.to(gray.dtype)
