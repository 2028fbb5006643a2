"""``shap_gradient``: shap's expected-gradients estimator, through three engines.

``batched`` (default) evaluates shap's own draws for all samples in bounded passes; ``shap`` calls
:class:`shap.GradientExplainer` once per sample; ``captum`` uses :class:`captum.attr.GradientShap`
(equal in expectation). See ``docs/attribution.md``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..samplers import sample_seed, shap_draws
from .base import EngineOutput, Explained
from .captum_methods import CAPTUM_DRAW_BLOCK, gradient_shap_values
from .fast_copy import fast_detector

__all__ = ["shap_gradient"]

CPU_ROWS = 64  # rows (sample, draw) per pass of the batched engine on the CPU (cache-sized; see bench/)


def shap_gradient(model: Explained, x, bg, idx, s) -> EngineOutput:
    """Attributions of ``x`` with the engine ``s.engine`` (``s``: resolved AttributionSettings)."""
    local_smoothing = float(s.method_kwargs.get("local_smoothing", 0.0))
    if not local_smoothing >= 0:
        raise ValueError(f"shap_gradient: local_smoothing must be >= 0, got {local_smoothing}")
    if s.engine == "captum":
        if local_smoothing:
            raise ValueError("shap_gradient: engine='captum' has no local_smoothing; use engine='batched'")
        values = gradient_shap_values(model, x, bg, idx, n_samples=s.n_samples, seed=s.seed, stdevs=0.0)
        return EngineOutput(values, {"draws_per_call": CAPTUM_DRAW_BLOCK, "stdevs": 0.0,
                                     "estimator": "expected gradients (captum GradientShap)"}, {})
    if s.engine == "batched":
        return _batched(model, x, bg, idx, n=s.n_samples, seed=s.seed, eval_batch_size=s.eval_batch_size,
                        local_smoothing=local_smoothing, optimize=bool(s.method_kwargs.get("optimize", True)))
    return _shap_loop(model, x, bg, idx, n=s.n_samples, seed=s.seed, eval_batch_size=s.eval_batch_size,
                      local_smoothing=local_smoothing)


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


def _noise_generators(seed: int, idx, device: torch.device) -> list[torch.Generator]:
    gens = []
    for i in idx:
        g = torch.Generator(device=device)
        g.manual_seed(sample_seed(seed, i))
        gens.append(g)
    return gens


def _batched(model: Explained, x, bg, idx, *, n, seed, eval_batch_size, local_smoothing, optimize
             ) -> EngineOutput:
    """The estimator over all (sample, draw) rows, at most ``rows_per_pass`` rows per forward/backward."""
    b, k, device = x.shape[0], bg.shape[0], x.device
    rows_per_pass = int(eval_batch_size) if device.type != "cpu" else min(int(eval_batch_size), CPU_ROWS)
    applied: list = []
    net = model
    if optimize:
        fast, applied = fast_detector(model.detector, model.space, model.target, torch.cat([bg[:2], x[:2]]))
        net = Explained(fast, model.space, model.target) if fast is not model.detector else model
    cl = "channels_last" in applied
    draws = [shap_draws(sample_seed(seed, idx[i]), n, k) for i in range(b)]
    bg_rows = torch.from_numpy(np.concatenate([d[0] for d in draws])).to(device)
    t64 = torch.from_numpy(np.concatenate([d[1] for d in draws]))
    t_all = t64.float().to(device)  # shap multiplies float32 tensors by the Python floats t and 1 - t
    omt_all = (1.0 - t64).float().to(device)
    gens = _noise_generators(seed, idx, device) if local_smoothing else None
    view = (-1,) + (1,) * (x.ndim - 1)
    acc = torch.zeros(x.shape, dtype=torch.float64, device=device)
    with torch.enable_grad():
        for r0 in range(0, b * n, rows_per_pass):
            r1 = min(b * n, r0 + rows_per_pass)
            si = torch.div(torch.arange(r0, r1, device=device), n, rounding_mode="floor")
            xs = x[si]
            if gens is not None:
                noise = torch.stack([torch.empty(x.shape[1:], device=device).normal_(generator=gens[int(i)])
                                     for i in si.tolist()])
                xs = xs + noise * local_smoothing
            base = bg[bg_rows[r0:r1]]
            z = t_all[r0:r1].view(view) * xs + omt_all[r0:r1].view(view) * base
            if cl:
                z = z.contiguous(memory_format=torch.channels_last)
            z.requires_grad_(True)
            (g,) = torch.autograd.grad(net(z).sum(), z)
            acc.index_add_(0, si, g.double() * (xs - base).double())
    params = {"rseed": "sample_seed(seed, index)", "local_smoothing": local_smoothing,
              "draws": "shap GradientExplainer's (numpy legacy stream of rseed: row, then t)",
              "rows_per_pass": rows_per_pass, "optimizations": applied}
    return EngineOutput((acc / n).float().cpu(), params, {})
