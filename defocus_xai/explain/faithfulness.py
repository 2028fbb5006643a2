"""Deletion and insertion curves of an attribution on the defocus map (Petsiuk et al. 2018, RISE).

:func:`deletion_insertion` removes (deletion) or restores (insertion) the map's pixels in the order an
attribution ranks them and records the detector's score at ``n_steps + 1`` fractions, with the trapezoid
areas and the same for a seeded random ranking (the chance level). Conventions and how to read the
result: ``docs/sanity_faithfulness.md``.

Examples
--------
>>> import torch
>>> from defocus_xai.detect import DefocusDetector
>>> det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8)).eval()
>>> maps = torch.rand(2, 1, 32, 32)
>>> res = deletion_insertion(det, maps, torch.randn(2, 1, 32, 32), n_steps=4, baseline="zero")
>>> res.deletion.shape, res.fractions.tolist()
((2, 5), [0.0, 0.25, 0.5, 0.75, 1.0])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .._device import module_device
from ..defocus.filters import gaussian_blur
from ..detect.protocol import borrowed, uses_maps
from .faithfulness_result import CurveSet, FaithfulnessResult

__all__ = ["FaithfulnessResult", "CurveSet", "deletion_insertion", "trapezoid_auc", "make_baseline"]

BASELINES = ("blur", "zero", "mean")


# ------------------------------------------------------------------------------------------ helpers


def trapezoid_auc(fractions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Trapezoid area under ``scores`` (..., K) over ``fractions`` (K,).

    Examples
    --------
    >>> trapezoid_auc(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.0])).item()
    0.5
    """
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    return ((y[..., 1:] + y[..., :-1]) * 0.5 * np.diff(x)).sum(axis=-1)


def make_baseline(maps: torch.Tensor, baseline: Any = "blur", *, blur_sigma: float | None = None
                  ) -> tuple[torch.Tensor, str]:
    """The baseline ("removed information") map for each map, and its description.

    Parameters
    ----------
    maps : torch.Tensor, (N, C, H, W)
    baseline : {"blur", "zero", "mean"}, float or tensor
        ``"blur"``: the map blurred with a Gaussian of ``blur_sigma`` pixels
        (:func:`defocus_xai.defocus.filters.gaussian_blur`, reflect padding): local
        structure removed, coarse layout kept, as RISE's insertion start; ``"zero"``: 0 (in a normalized
        defocus map: the sharpest value); ``"mean"``: each map's own mean value (a constant map, no
        layout at all); a number: that constant; a tensor broadcastable to ``maps``: as given.
    blur_sigma : float, optional
        Default: 5% of the smaller side, at least 1 pixel.

    Examples
    --------
    >>> m = torch.arange(16.0).view(1, 1, 4, 4)
    >>> make_baseline(m, "mean")[0].unique().tolist(), make_baseline(m, 0.5)[1]
    ([7.5], '0.5')
    """
    if isinstance(baseline, str):
        if baseline == "zero":
            return torch.zeros_like(maps), "zero"
        if baseline == "mean":
            return maps.mean(dim=(-2, -1), keepdim=True).expand_as(maps).clone(), "mean"
        if baseline == "blur":
            s = float(blur_sigma) if blur_sigma is not None else max(1.0, 0.05 * min(maps.shape[-2:]))
            if not s > 0:
                raise ValueError(f"blur_sigma must be > 0, got {blur_sigma!r}")
            return gaussian_blur(maps, s, truncate=3.0), f"blur (sigma {s:.3g} px)"
        raise ValueError(f"baseline must be one of {BASELINES}, a number or a tensor, got {baseline!r}")
    if isinstance(baseline, (int, float, np.floating, np.integer)) and not isinstance(baseline, bool):
        v = float(baseline)
        if not math.isfinite(v):
            raise ValueError(f"baseline must be finite, got {baseline!r}")
        return torch.full_like(maps, v), f"{v:g}"
    if isinstance(baseline, np.ndarray):
        baseline = torch.from_numpy(np.ascontiguousarray(baseline))
    if torch.is_tensor(baseline):
        b = baseline.to(device=maps.device, dtype=maps.dtype)
        try:
            b = torch.broadcast_to(b, maps.shape).clone()
        except RuntimeError:
            raise ValueError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to maps "
                             f"{tuple(maps.shape)}") from None
        if not torch.isfinite(b).all():
            raise ValueError("baseline contains NaN or infinity")
        return b, "given"
    raise TypeError(f"baseline must be a string, a number or a tensor, got {type(baseline).__name__}")


def _as_maps(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"{name} must be (N, 1, H, W) or (N, H, W), got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int32, torch.int64)):
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return x



def _order(scores: np.ndarray) -> np.ndarray:
    """Per row, pixel indices sorted by decreasing score; ties by increasing index (stable)."""
    return np.argsort(-scores, axis=1, kind="stable")


def _random_order(n: int, p: int, seed: int) -> np.ndarray:
    out = np.empty((n, p), dtype=np.int64)
    for i in range(n):
        out[i] = np.random.default_rng(np.random.SeedSequence([int(seed), i])).permutation(p)
    return out


def _ranks(order: np.ndarray) -> torch.Tensor:
    """Inverse permutation: rank[i, pixel] = position of pixel in order[i]."""
    r = np.empty_like(order)
    rows = np.arange(order.shape[0])[:, None]
    r[rows, order] = np.arange(order.shape[1])[None, :]
    return torch.from_numpy(r)


def _score(logits: torch.Tensor, target: int | None, score: str) -> torch.Tensor:
    out = logits.reshape(logits.shape[0], -1).float()
    if out.shape[1] == 1:
        if target not in (None, 0):
            raise ValueError(f"target={target} out of range for a model with one output")
        return torch.sigmoid(out[:, 0]) if score == "probability" else out[:, 0]
    t = 1 if target is None else int(target)
    if not 0 <= t < out.shape[1]:
        raise ValueError(f"target={t} out of range for a model with {out.shape[1]} outputs")
    return torch.softmax(out, dim=1)[:, t] if score == "probability" else out[:, t]


def _curves(fn, x: torch.Tensor, base: torch.Tensor, ranks: torch.Tensor, counts: torch.Tensor,
            batch_size: int, target: int | None, device: torch.device, score: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion scores (N, K) for one ranking, in batches of <= batch_size maps."""
    n, c, h, w = x.shape
    k = counts.numel()
    flat_x, flat_b = x.reshape(n, c, h * w), base.reshape(n, c, h * w)
    dele = np.empty(n * k)
    ins = np.empty(n * k)
    total = n * k
    for s in range(0, total, batch_size):
        j = torch.arange(s, min(total, s + batch_size))
        i, step = j // k, j % k
        changed = (ranks[i] < counts[step][:, None]).unsqueeze(1)  # (b, 1, P)
        xi, bi = flat_x[i], flat_b[i]
        d_in = torch.where(changed, bi, xi).reshape(-1, c, h, w)
        i_in = torch.where(changed, xi, bi).reshape(-1, c, h, w)
        both = torch.cat([d_in, i_in]).to(device)
        p = _score(fn(both), target, score).double().cpu().numpy()
        m = j.numel()
        dele[s:s + m], ins[s:s + m] = p[:m], p[m:]
    return dele.reshape(n, k), ins.reshape(n, k)


def _maps_and_attributions(maps: Any, attributions: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated maps (N, C, H, W) and attributions of the same shape (channels summed onto a 1-channel map)."""
    x = _as_maps(maps, "maps")
    a = _as_maps(attributions, "attributions")
    if a.shape != x.shape:
        if x.shape[1] == 1 and a.shape[0] == x.shape[0] and a.shape[2:] == x.shape[2:]:
            a = a.sum(1, keepdim=True)  # per-channel attributions of a repeated map: one value per pixel
        else:
            raise ValueError(f"attributions of shape {tuple(a.shape)} do not match maps {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("maps is empty")
    return x, a


def _result(fractions: np.ndarray, curves: tuple, random_curves: tuple | None, desc: str, n_steps: int,
            seed: int, score: str) -> FaithfulnessResult:
    dele, ins = curves
    r_dele, r_ins = random_curves if random_curves is not None else (None, None)
    return FaithfulnessResult(
        fractions=fractions,
        deletion=dele,
        insertion=ins,
        deletion_auc=trapezoid_auc(fractions, dele),
        insertion_auc=trapezoid_auc(fractions, ins),
        random_deletion=r_dele,
        random_insertion=r_ins,
        random_deletion_auc=None if r_dele is None else trapezoid_auc(fractions, r_dele),
        random_insertion_auc=None if r_ins is None else trapezoid_auc(fractions, r_ins),
        baseline=desc,
        n_steps=n_steps,
        seed=int(seed),
        score=score,
    )


# --------------------------------------------------------------------------------------------- API


def deletion_insertion(detector: nn.Module, maps: Any, attributions: Any, *, n_steps: int = 20,
                       baseline: Any = "blur", batch_size: int = 64, target: int | None = None, seed: int = 0,
                       random_baseline: bool = True, blur_sigma: float | None = None,
                       score: str = "probability") -> FaithfulnessResult:
    """Deletion and insertion curves (and their AUC) of defocus-map attributions.

    Parameters
    ----------
    detector : nn.Module
        A map detector (normalized maps -> logits with ``forward_map``), e.g.
        :class:`~defocus_xai.detect.DefocusDetector`; wrappers are unwrapped. It runs in eval mode without
        gradients on its own device and is given back in the mode it came in.
    maps : tensor or array, (N, 1, S, S) or (N, S, S)
        The normalized defocus maps in ``[0, 1]`` that were explained.
    attributions : tensor or array, same shape as ``maps``
        One value per map pixel; larger = more evidence for fake (rank by magnitude by passing ``abs``).
        E.g. the output of :func:`~defocus_xai.explain.attribute` with ``space="defocus"``.
    n_steps : int
        Number of steps between 0 and all pixels (``n_steps + 1`` points per curve).
    baseline : {"blur", "zero", "mean"}, float or tensor
        What a deleted pixel becomes and where insertion starts (see :func:`make_baseline`).
    batch_size : int
        Maps per forward pass (deletion and insertion inputs together).
    target : int, optional
        Output column for models with several outputs (softmax; default 1). One-logit models: sigmoid.
    seed : int
        Seed of the random ranking (sample ``i``: ``numpy.random.SeedSequence([seed, i])``).
    random_baseline : bool
        Also compute the curves of a random ranking, the chance level.
    blur_sigma : float, optional
        Sigma in pixels of ``baseline="blur"`` (default 5% of the map side, at least 1).
    score : {"probability", "logit"}
        What the curves record: the probability of fake (default, bounded, comparable across models) or
        the raw logit (use it when a confident model saturates the sigmoid; AUCs in logit units).

    Returns
    -------
    FaithfulnessResult
        Curves, areas, the random ranking's curves and areas; ``summary()`` tabulates the areas and
        ``curves(kind)`` feeds :func:`defocus_xai.plot.deletion_curves`.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.detect import DefocusDetector
    >>> det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8)).eval()
    >>> maps = torch.rand(2, 1, 32, 32)
    >>> res = deletion_insertion(det, maps, torch.randn(2, 1, 32, 32), n_steps=5)
    >>> res.deletion_auc.shape, res.summary()["metric"].tolist()[:2]
    ((2,), ['deletion_auc', 'insertion_auc'])
    """
    if score not in ("probability", "logit"):
        raise ValueError(f"score must be 'probability' or 'logit', got {score!r}")
    n_steps = int(n_steps)
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if int(batch_size) < 2:
        raise ValueError(f"batch_size must be >= 2 (a deletion and an insertion input), got {batch_size}")
    if not uses_maps(detector):
        raise ValueError(f"deletion_insertion needs a map detector (forward_map: maps -> logits), got "
                         f"{type(detector).__name__}")
    x, a = _maps_and_attributions(maps, attributions)
    n, p = x.shape[0], x.shape[-2] * x.shape[-1]
    base, desc = make_baseline(x, baseline, blur_sigma=blur_sigma)
    counts_np = np.rint(np.arange(n_steps + 1) * p / n_steps).astype(np.int64)
    counts = torch.from_numpy(counts_np)
    # one ranking per sample; channels (if several) share the pixel's rank
    orders = [_order(a.sum(1).reshape(n, p).double().numpy())]
    if random_baseline:
        orders.append(_random_order(n, p, seed))
    with borrowed(detector) as det, torch.no_grad():
        curves = [_curves(det.forward_map, x, base, _ranks(o), counts, max(1, int(batch_size) // 2), target,
                          module_device(det), score) for o in orders]
    return _result(counts_np / p, curves[0], curves[1] if random_baseline else None, desc, n_steps, seed, score)
