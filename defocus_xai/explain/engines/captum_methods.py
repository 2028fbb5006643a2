"""The captum engines: integrated_gradients, deeplift, saliency, input_x_gradient, occlusion, and captum's
GradientShap values behind the ``"captum"`` engines of gradient_shap and shap_gradient.

Each takes the explained model, the inputs ``x``, the background rows ``bg``, the samples' data-set indices
and the resolved :class:`~defocus_xai.explain.settings.AttributionSettings`, and returns an
:class:`~defocus_xai.explain.engines.base.EngineOutput`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..samplers import sample_seed
from .base import EngineOutput, Explained, check_layers, chunks, mean_baseline

__all__ = ["gradient_shap_values", "integrated_gradients", "deeplift", "saliency",
           "input_x_gradient", "occlusion", "CAPTUM_DRAW_BLOCK"]

CAPTUM_DRAW_BLOCK = 64  # draws per captum GradientShap call (part of the definition of its values)


def gradient_shap_values(model: Explained, x, bg, idx, *, n_samples: int, seed: int, stdevs: float
                         ) -> torch.Tensor:
    """captum's GradientShap per sample, in blocks of draws seeded from ``sample_seed(seed, index)``."""
    from captum.attr import GradientShap

    gs = GradientShap(model)
    out = torch.zeros(x.shape, dtype=torch.float32)
    for i in range(x.shape[0]):
        acc = torch.zeros(x.shape[1:], dtype=torch.float64)
        s = sample_seed(seed, idx[i])
        for blk in range(math.ceil(n_samples / CAPTUM_DRAW_BLOCK)):
            m = min(CAPTUM_DRAW_BLOCK, n_samples - blk * CAPTUM_DRAW_BLOCK)
            np.random.seed(s if blk == 0 else sample_seed(s, blk))  # the caller restores the global state
            torch.manual_seed(s + blk)  # noise (stdevs > 0) is drawn from torch's global RNG
            a = gs.attribute(x[i:i + 1], baselines=bg, n_samples=m, stdevs=stdevs, target=0)
            acc += a[0].detach().double().cpu() * m
        out[i] = (acc / n_samples).float()
    return out


def integrated_gradients(model: Explained, x, bg, idx, s) -> EngineOutput:
    from captum.attr import IntegratedGradients

    rule = s.method_kwargs.get("method", "gausslegendre")
    ig = IntegratedGradients(model)
    base = mean_baseline(bg)
    out = torch.zeros(x.shape, dtype=torch.float32)
    deltas = []
    for a, e in chunks(x.shape[0], s.batch_size):
        v, d = ig.attribute(x[a:e], baselines=base.expand_as(x[a:e]), target=0, n_steps=s.n_steps, method=rule,
                            internal_batch_size=max(e - a, s.eval_batch_size), return_convergence_delta=True)
        out[a:e] = v.detach().float().cpu()
        deltas.append(d.detach().abs().cpu())
    return EngineOutput(out, {"n_steps": s.n_steps, "method": rule, "baseline": "mean of background"},
                        {"max_abs_convergence_delta": float(torch.cat(deltas).max())})


def deeplift(model: Explained, x, bg, idx, s) -> EngineOutput:
    from captum.attr import DeepLift

    check_layers(model, bg[:1], "deeplift")
    dl = DeepLift(model)
    base = mean_baseline(bg)
    out = torch.zeros(x.shape, dtype=torch.float32)
    for a, e in chunks(x.shape[0], s.batch_size):
        try:
            v = dl.attribute(x[a:e], baselines=base.expand_as(x[a:e]), target=0)
        except (RuntimeError, AssertionError) as err:
            raise ValueError(f"method='deeplift' failed on {type(model.detector).__name__}: {err}") from err
        out[a:e] = v.detach().float().cpu()
    return EngineOutput(out, {"baseline": "mean of background", "rule": "rescale"}, {})


def saliency(model: Explained, x, bg, idx, s) -> EngineOutput:
    from captum.attr import Saliency

    absolute = bool(s.method_kwargs.get("abs", True))
    sal = Saliency(model)
    out = torch.zeros(x.shape, dtype=torch.float32)
    for a, e in chunks(x.shape[0], min(s.batch_size, s.eval_batch_size)):
        out[a:e] = sal.attribute(x[a:e], target=0, abs=absolute).detach().float().cpu()
    return EngineOutput(out, {"abs": absolute}, {})


def input_x_gradient(model: Explained, x, bg, idx, s) -> EngineOutput:
    from captum.attr import InputXGradient

    ixg = InputXGradient(model)
    out = torch.zeros(x.shape, dtype=torch.float32)
    for a, e in chunks(x.shape[0], min(s.batch_size, s.eval_batch_size)):
        out[a:e] = ixg.attribute(x[a:e], target=0).detach().float().cpu()
    return EngineOutput(out, {}, {})


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if np.isscalar(value) else tuple(int(v) for v in value)


def occlusion(model: Explained, x, bg, idx, s) -> EngineOutput:
    from captum.attr import Occlusion

    c, h, w = x.shape[1:]
    win = _pair(s.method_kwargs.get("sliding_window", max(1, min(h, w) // 8)))
    strides = _pair(s.method_kwargs.get("strides", (max(1, win[0] // 2), max(1, win[1] // 2))))
    occ = Occlusion(model)
    base = mean_baseline(bg)
    out = torch.zeros(x.shape, dtype=torch.float32)
    for a, e in chunks(x.shape[0], s.batch_size):
        v = occ.attribute(x[a:e], sliding_window_shapes=(c, *win), strides=(c, *strides),
                          baselines=base.expand_as(x[a:e]), target=0,
                          perturbations_per_eval=max(1, s.eval_batch_size // (e - a)))
        out[a:e] = v.detach().float().cpu()
    return EngineOutput(out, {"sliding_window": [c, *win], "strides": [c, *strides],
                              "baseline": "mean of background"}, {})
