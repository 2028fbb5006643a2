"""The estimator's compiled CPU path: the graphs of :mod:`.fast_graphs` compiled by ``torch.compile``
(inductor, C++) for the filters and the ratio, the C library of :mod:`.native` for the thresholds,
hysteresis and the propagation.

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

from .config import EstimatorConfig
from .edges import contrast_floor
from .fast_graphs import at_edges, derivatives, front
from .native import apply_coefficients, edge_pixels, edge_thresholds, guided_coefficients
from .filters import _SHIFT_TAPS, DEFAULT_TRUNCATE, _taps

__all__ = ["compile_requested", "fused_applies", "fused_maps", "COMPILE_ENV"]

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
    thread-safe); ``None`` after a failed compilation (a warning the first time). :func:`at_edges` is
    compiled dynamic in the number of edge pixels (its index vectors, at least two long)."""
    if _FAILED:
        return None
    dynamic = fn is at_edges
    key = (fn.__name__,) + tuple((tuple(a.shape[dynamic and a.dim() == 1:]), a.dtype)
                                 if torch.is_tensor(a) else a for a in args)
    if dynamic:
        for index in args[4:6]:
            torch._dynamo.mark_dynamic(index, 0)
    if key in _READY:
        return _COMPILED[fn](*args)
    with _LOCK:
        try:
            if fn not in _COMPILED:
                _COMPILED[fn] = torch.compile(fn, dynamic=None if dynamic else False,
                                              fullgraph=True)
            from torch._inductor import config as inductor_config

            # Contracted multiply-adds where the eager code computes them so (the filter chains),
            # not in the front graph (its suppression compares magnitudes that the eager code
            # rounds product by product, and its ties, on pixel-aligned edges, must break alike)
            # nor at the edge pixels (the eager ratio rounds them so too).
            contract = "off" if fn in (front, at_edges) else "fast"
            # at_edges: its indices come from the edge map on the same grid; no per-load bounds check.
            with inductor_config.patch({"cpp.enable_floating_point_contract_flag": contract,
                                        "cpp_wrapper": True,
                                        "assert_indirect_indexing": not dynamic}), \
                    torch._dynamo.config.patch(automatic_dynamic_shapes=False):
                out = _COMPILED[fn](*args)
        except Exception as exc:  # no C++ compiler, unsupported op, ...: the eager code is exact
            return _fail(exc)
        _READY.add(key)
        return out


def _fail(exc: Exception) -> None:
    """Turn the compiled path off after ``exc`` (a warning, the first time); ``None``."""
    if not _FAILED:
        warnings.warn(f"estimate_defocus: the compiled path failed ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); running the eager code", RuntimeWarning, stacklevel=5)
    _FAILED.append(repr(exc))


def fused_applies(cfg: EstimatorConfig, grid: tuple) -> bool:
    """Whether :func:`fused_maps` runs the graphs for ``cfg`` on a ``grid = (H, W)`` (CPU, no
    gradient): recipe ``"ours"``, guided propagation at half resolution with the short (shift-add)
    blur and box kernels of the eager code, a half-resolution grid larger than them.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus import EstimatorConfig
    >>> with torch.no_grad():
    ...     fused_applies(EstimatorConfig(), (299, 299)), fused_applies(EstimatorConfig(), (8, 8))
    (True, False)
    >>> fused_applies(EstimatorConfig(), (299, 299))        # with gradients: the eager code
    False
    """
    r = max(_blur_radius(cfg), max(1, round(cfg.guided_radius / 2)))
    return (cfg.recipe == "ours" and cfg.propagation == "guided" and not torch.is_grad_enabled()
            and cfg.subsample == 2 and cfg.fill_std > 0 and 2 * r + 1 <= _SHIFT_TAPS
            and min(grid) // 2 > 2 * r and min(grid) > _radius(cfg))


def fused_maps(cfg: EstimatorConfig, x: torch.Tensor, out: tuple | None = None):
    """``(dense, sparse, edges, checks)`` of recipe ``"ours"`` (guided propagation) through the
    compiled graphs, where :func:`fused_applies`.

    Parameters
    ----------
    cfg : EstimatorConfig
        Recipe ``"ours"``, propagation ``"guided"``.
    x : torch.Tensor
        ``(B, 3, H, W)`` float RGB batch on the estimator's grid, CPU, in the library's convention
        but possibly not range-checked yet: its values are clamped to ``[0, 1]`` first.
    out : tuple of torch.Tensor, optional
        Float32 tensors ``(B, 1, H, W)`` three times and ``(B, 2)`` to write the results into
        (returned); default: new ones.

    Returns
    -------
    dense, sparse, edges : torch.Tensor
        As the eager estimator's, within the tolerance of ``docs/estimator.md``; no gradient.
    checks : torch.Tensor
        ``(B, 2)``: the minimum and maximum of each sample of ``x`` before the clamp, for
        :func:`~defocus_xai._images.check_extremes`.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus import EstimatorConfig
    >>> img = torch.zeros(1, 3, 32, 32); img[..., 16:] = 1.0
    >>> dense, sparse, edges, checks = fused_maps(EstimatorConfig(size=None), img)  # doctest: +SKIP
    """
    scales = [cfg.edge_sigma, cfg.std1, cfg.std2]
    uniq = tuple(sorted(set(scales)))
    where = tuple(uniq.index(s) for s in scales)
    B, _, H, W = x.shape
    if out is None:
        out = tuple(torch.empty(B, 1, H, W, dtype=x.dtype) for _ in range(3))
        out += (torch.empty(B, 2, dtype=x.dtype),)
    dense, sparse, edges, checks = out
    with torch.no_grad():
        taps = tuple(_taps(s, _radius(cfg), x.dtype) for s in uniq)
        maps = _compiled_maps(cfg, x, taps, where)
        if maps is None:
            for o, eager in zip(out, _eager_maps(cfg, x)):
                o.copy_(eager)
            return out
        coef, sigma, idx, found, gray, extremes = maps
        apply_coefficients(coef, gray, cfg.sigma_max, out=dense)
        sparse.zero_().view(-1).index_put_((idx,), sigma)
        edges.copy_(found)
        checks.copy_(extremes)
    return out


def _radius(cfg: EstimatorConfig) -> int:
    """Radius of the derivative kernels (the largest scale's)."""
    return int(math.ceil(DEFAULT_TRUNCATE * max(cfg.edge_sigma, cfg.std1, cfg.std2)))


def _compiled_maps(cfg: EstimatorConfig, x: torch.Tensor, taps: tuple, where: tuple):
    """``(coefficients, sigma, idx, edges, gray, checks)`` through the graphs: the guided filter's
    coefficients on the half-resolution grid, sigma at the edge pixels and their flat indices, the
    edge map as ``uint8``; ``None`` after a failed compilation."""
    maps = _call(derivatives, x, taps, where)
    front_out = None if maps is None else _call(front, maps[2], maps[3])
    if front_out is None:
        return None
    mag, peaks, sample = front_out
    try:        # the thresholds of edges.edge_thresholds, hysteresis: the C library
        lo, hi = edge_thresholds(sample, cfg.low_threshold, cfg.high_threshold,
                                 contrast_floor(cfg.min_contrast, cfg.edge_sigma))
        edges, *at = edge_pixels(mag, peaks, lo, hi, frame=2)   # idx, centre, block
    except Exception as exc:  # no compiler, an unwritable cache, ...
        return _fail(exc)
    # A dynamic size of 0 or 1 would be specialized: so few edge pixels run eagerly.
    args = (*maps[4:], *at[1:], cfg)
    values = _call(at_edges, *args) if at[0].numel() > 1 else at_edges(*args)
    if values is None:
        return None
    try:
        coef = guided_coefficients(values[1], maps[0], _taps(cfg.fill_std / 2, _blur_radius(cfg), None)[0],
                                   max(1, round(cfg.guided_radius / 2)), cfg.guided_eps)
    except Exception as exc:
        return _fail(exc)
    return coef, values[0], at[0], edges, maps[0], maps[1]


def _blur_radius(cfg: EstimatorConfig) -> int:
    """Radius of :func:`~.filters.gaussian_blur`'s kernel in the half-resolution fill."""
    return max(1, int(math.ceil(3.0 * (cfg.fill_std / 2))))


def _eager_maps(cfg: EstimatorConfig, x: torch.Tensor):
    """The eager estimator's ``(dense, sparse, edges)`` and :func:`fused_maps`' ``checks``, after a
    failed compilation."""
    from .estimator import _maps_ours  # the eager recipe itself (the estimator imports this module)

    checks = torch.stack([x.amin((1, 2, 3)), x.amax((1, 2, 3))], 1)
    if bool((checks[:, 0] < 0).any() | (checks[:, 1] > 1).any()):
        x = x.clamp(0.0, 1.0)          # as check_range (beyond its tolerance, the caller refuses x)
    return (*_maps_ours(cfg, x), checks)
