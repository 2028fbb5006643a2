"""The expected-gradients methods: ``shap_gradient`` (engines batched, shap, captum) and ``gradient_shap``
(engines batched, captum).

``batched`` evaluates the draws of the settings' sampler (stratified or shap's) for all samples in bounded
passes; ``shap`` calls :class:`shap.GradientExplainer` once per sample; ``captum`` uses
:class:`captum.attr.GradientShap` (captum's own independent draws). See ``docs/attribution.md``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..samplers import sample_seed
from .base import EngineOutput, Explained
from .batched import batched_expected_gradients
from .captum_methods import CAPTUM_DRAW_BLOCK, gradient_shap_values

__all__ = ["shap_gradient", "gradient_shap"]


def _nonnegative(method: str, name: str, value) -> float:
    value = float(value)
    if not value >= 0:
        raise ValueError(f"{method}: {name} must be >= 0, got {value}")
    return value


def shap_gradient(model: Explained, x, bg, idx, s) -> EngineOutput:
    """Attributions of ``x`` with the engine ``s.engine`` (``s``: resolved AttributionSettings)."""
    local_smoothing = _nonnegative("shap_gradient", "local_smoothing", s.method_kwargs.get("local_smoothing", 0))
    if s.engine == "captum":
        if local_smoothing:
            raise ValueError("shap_gradient: engine='captum' has no local_smoothing; use engine='batched'")
        values = gradient_shap_values(model, x, bg, idx, n_samples=s.n_samples, seed=s.seed, stdevs=0.0)
        return EngineOutput(values, {"draws_per_call": CAPTUM_DRAW_BLOCK, "stdevs": 0.0,
                                     "estimator": "expected gradients (captum GradientShap)"}, {})
    if s.engine == "batched":
        out = batched_expected_gradients(model, x, bg, idx, n=s.n_samples, seed=s.seed, sampler=s.sampler,
                                         eval_batch_size=s.eval_batch_size, noise=local_smoothing,
                                         optimize=bool(s.method_kwargs.get("optimize", True)))
        return EngineOutput(out.values, {**out.params, "local_smoothing": local_smoothing}, out.diagnostics)
    return _shap_loop(model, x, bg, idx, n=s.n_samples, seed=s.seed, eval_batch_size=s.eval_batch_size,
                      local_smoothing=local_smoothing)


def gradient_shap(model: Explained, x, bg, idx, s) -> EngineOutput:
    """Expected gradients with Gaussian input noise ``stdevs`` (captum's GradientShap estimand)."""
    stdevs = _nonnegative("gradient_shap", "stdevs", s.method_kwargs.get("stdevs", 0.0))
    if s.engine == "batched":
        out = batched_expected_gradients(model, x, bg, idx, n=s.n_samples, seed=s.seed, sampler=s.sampler,
                                         eval_batch_size=s.eval_batch_size, noise=stdevs,
                                         optimize=bool(s.method_kwargs.get("optimize", True)))
        return EngineOutput(out.values, {**out.params, "stdevs": stdevs}, out.diagnostics)
    values = gradient_shap_values(model, x, bg, idx, n_samples=s.n_samples, seed=s.seed, stdevs=stdevs)
    return EngineOutput(values, {"stdevs": stdevs, "draws_per_call": CAPTUM_DRAW_BLOCK,
                                 "rng": "numpy seeded with sample_seed(seed, index) + block"}, {})


def _shap_loop(model, x, bg, idx, *, n, seed, eval_batch_size, local_smoothing) -> EngineOutput:
    """shap's GradientExplainer, one call per sample with ``rseed=sample_seed(seed, index)``."""
    import shap

    explainer = shap.GradientExplainer(model, bg, batch_size=min(eval_batch_size, n),
                                       local_smoothing=local_smoothing)
    out = torch.zeros(x.shape, dtype=torch.float32)
    for i in range(x.shape[0]):
        rs = sample_seed(seed, idx[i])
        np.random.seed(rs)  # also set by rseed; the caller restores the global state
        torch.manual_seed(rs)  # local_smoothing noise (shap draws it from torch's global generator)
        vals = explainer.shap_values(x[i:i + 1], nsamples=n, rseed=rs)
        out[i] = torch.from_numpy(np.asarray(vals, dtype=np.float32).reshape(x.shape[1:]))
    return EngineOutput(out, {"rseed": "sample_seed(seed, index)", "local_smoothing": local_smoothing,
                              "shap_version": shap.__version__}, {})
