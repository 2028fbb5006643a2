"""The estimator's compiled CPU path: its two static stages fused by ``torch.compile`` (inductor, C++).

Opt-in (``estimate_defocus(..., compiled=True)`` or ``DEFOCUS_XAI_COMPILE=1``), CPU inference only, recipe
``"ours"`` with guided propagation; anything else, or a failed compilation, runs the eager code. The switch,
the tolerance against the eager maps and the timings: ``docs/estimator.md`` ("Compiled CPU path").
"""

from __future__ import annotations

import math
import os
import threading
import warnings

import torch

from .config import EstimatorConfig
from .edges import edge_thresholds, hysteresis, non_maximum_suppression
from .filters import DEFAULT_TRUNCATE, _chains, _pad, _taps
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


def _front(padded, taps, ie):
    """Gradients (:func:`~.filters.gaussian_derivatives`' chains on the reflect-padded gray image,
    padded outside the graph so that every row is read by contiguous vector loads) and non-maximum
    suppression (static shapes)."""
    d = _chains(padded, taps, ((1, 0), (0, 1)))
    ge = d[:, ie]
    gx, gy = ge[:, 0:1], ge[:, 1:2]
    mag = torch.sqrt(gx * gx + gy * gy)
    return d, mag, non_maximum_suppression(gx, gy, mag)


def _back(sparse, conf, gray, cfg):
    """Guided propagation and the clamp (static shapes)."""
    dense = guided_propagation(sparse, conf, gray, fill_std=cfg.fill_std, radius=cfg.guided_radius,
                               eps=cfg.guided_eps, subsample=cfg.subsample)
    return dense.clamp(0.0, cfg.sigma_max)


def _call(fn, *args):
    """``fn(*args)`` compiled once per input signature (first call under a lock: compilation is not
    thread-safe); on a failed compilation, a warning and the eager ``fn`` from then on."""
    if _FAILED:
        return fn(*args)
    key = (fn.__name__,) + tuple((tuple(a.shape), a.dtype) if torch.is_tensor(a) else a
                                 for a in args)
    if key in _READY:
        return _COMPILED[fn](*args)
    with _LOCK:
        try:
            if fn not in _COMPILED:
                _COMPILED[fn] = torch.compile(fn, dynamic=False, fullgraph=True)
            from torch._inductor import config as inductor_config

            # Contracted multiply-adds, as the eager multiply-add chains of the filters compute
            # them: the derivatives then match the eager ones almost everywhere (docs/estimator.md).
            with inductor_config.patch({"cpp.enable_floating_point_contract_flag": "fast",
                                        "cpp_wrapper": True}):
                out = _COMPILED[fn](*args)
        except Exception as exc:  # no C++ compiler, unsupported op, ...: the eager code is exact
            _FAILED.append(repr(exc))
            warnings.warn(f"estimate_defocus: the compiled path failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); running the eager code", RuntimeWarning, stacklevel=3)
            return fn(*args)
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
    ie, i1, i2 = (uniq.index(s) for s in scales)
    with torch.no_grad():
        radius = int(math.ceil(DEFAULT_TRUNCATE * max(uniq)))
        taps = tuple(_taps(s, radius, gray.dtype) for s in uniq)
        d, mag, peaks = _call(_front, _pad(gray, radius, radius), taps, ie)
        lo, hi = edge_thresholds(mag, low=cfg.low_threshold, high=cfg.high_threshold,
                                 min_contrast=cfg.min_contrast, edge_sigma=cfg.edge_sigma)
        edges = hysteresis(peaks & (mag >= hi), peaks & (mag >= lo))
        sparse, conf = edge_sigma(d, (i1, i2), edges, cfg)
        dense = _call(_back, sparse, conf, gray, cfg)
    return dense, sparse, edges.to(gray.dtype)
