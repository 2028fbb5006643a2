"""The batched expected-gradients estimator: every (sample, draw) row of a call in bounded passes.

Shared by the ``"batched"`` engines of ``shap_gradient`` and ``gradient_shap``; the draws come from
:mod:`defocus_xai.explain.samplers` (stratified or shap's), the gradients from a fast copy of the detector
(:mod:`~defocus_xai.explain.engines.fast_copy`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..samplers import draws, sample_seed
from .base import EngineOutput, Explained
from .fast_copy import fast_detector

__all__ = ["batched_expected_gradients", "CPU_ROWS"]

CPU_ROWS = 64  # rows (sample, draw) per pass of the batched engine on the CPU (cache-sized; see bench/)

_DRAWS = {"stratified": "stratified (every background row equally often, one t per stratum of [0, 1))",
          "shap": "shap GradientExplainer's (numpy legacy stream of rseed: row, then t)"}


def _noise_generators(seed: int, idx, device: torch.device) -> list[torch.Generator]:
    gens = []
    for i in idx:
        g = torch.Generator(device=device)
        g.manual_seed(sample_seed(seed, i))
        gens.append(g)
    return gens


def batched_expected_gradients(model: Explained, x: torch.Tensor, bg: torch.Tensor, idx, *, n: int, seed: int,
                               sampler: str, eval_batch_size: int, noise: float = 0.0, optimize: bool = True
                               ) -> EngineOutput:
    """Expected gradients of ``x`` over the rows of ``bg``: per sample, the mean over ``n`` draws of
    ``grad f(b + t (x' - b)) * (x' - b)`` with ``x' = x + noise * N(0, 1)``.

    Sample ``i`` draws its (row, t) pairs with ``sampler`` and its noise from ``sample_seed(seed, idx[i])``;
    all rows are evaluated in passes of at most ``eval_batch_size`` (64 on the CPU).

    Examples
    --------
    >>> lin = Explained(torch.nn.Linear(2, 1), "rgb", None)
    >>> x, bg = torch.ones(1, 2), torch.zeros(3, 2)
    >>> out = batched_expected_gradients(lin, x, bg, [0], n=6, seed=0, sampler="stratified", eval_batch_size=8,
    ...                                  optimize=False)
    >>> torch.allclose(out.values, lin.detector.weight.detach())
    True
    """
    b, k, device = x.shape[0], bg.shape[0], x.device
    rows_per_pass = int(eval_batch_size) if device.type != "cpu" else min(int(eval_batch_size), CPU_ROWS)
    applied: list = []
    net = model
    if optimize:
        fast, applied = fast_detector(model.detector, model.space, model.target, torch.cat([bg[:2], x[:2]]))
        net = Explained(fast, model.space, model.target, model.wrapper) if fast is not model.detector else model
    cl = "channels_last" in applied
    drawn = [draws(sampler, sample_seed(seed, idx[i]), n, k) for i in range(b)]
    bg_rows = torch.from_numpy(np.concatenate([d[0] for d in drawn])).to(device)
    t64 = torch.from_numpy(np.concatenate([d[1] for d in drawn]))
    t_all = t64.float().to(device)  # shap multiplies float32 tensors by the Python floats t and 1 - t
    omt_all = (1.0 - t64).float().to(device)
    gens = _noise_generators(seed, idx, device) if noise else None
    view = (-1,) + (1,) * (x.ndim - 1)
    acc = torch.zeros(x.shape, dtype=torch.float64, device=device)
    with torch.enable_grad():
        for r0 in range(0, b * n, rows_per_pass):
            r1 = min(b * n, r0 + rows_per_pass)
            si = torch.div(torch.arange(r0, r1, device=device), n, rounding_mode="floor")
            xs = x[si]
            if gens is not None:
                eps = torch.stack([torch.empty(x.shape[1:], device=device).normal_(generator=gens[int(i)])
                                   for i in si.tolist()])
                xs = xs + eps * noise
            base = bg[bg_rows[r0:r1]]
            z = t_all[r0:r1].view(view) * xs + omt_all[r0:r1].view(view) * base
            if cl:
                z = z.contiguous(memory_format=torch.channels_last)
            z.requires_grad_(True)
            (g,) = torch.autograd.grad(net(z).sum(), z)
            acc.index_add_(0, si, g.double() * (xs - base).double())
    params = {"rseed": "sample_seed(seed, index)", "draws": _DRAWS[sampler], "rows_per_pass": rows_per_pass,
              "optimizations": applied}
    return EngineOutput((acc / n).float().cpu(), params, {})
