"""Model-parameter randomization test (Adebayo et al. 2018, "Sanity checks for saliency maps").

:func:`randomization_test` re-initializes the detector's layers from the head down, recomputes the
attribution after each step and reports how similar it still is to the trained model's (Spearman rank
correlation per sample). A method whose maps stay similar after the whole network is random shows the input,
not what the model learned. How it is done and how to read it: ``docs/sanity_faithfulness.md``.

Examples
--------
>>> import torch
>>> from defocus_xai.detect import DefocusDetector
>>> det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8)).eval()
>>> df = randomization_test(det, torch.rand(3, 1, 32, 32), method="saliency")
>>> df["layer"].iloc[:3].tolist()
['original', 'backbone.fc', 'backbone.features.10']
>>> float(df["spearman"].iloc[0])
1.0
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._device import module_device
from ..detect.protocol import borrowed, unwrap
from .attribution import prepare_inputs
from .engines import explained_forward
from .settings import AttributionSettings

__all__ = ["randomization_test", "randomizable_layers", "reinitialize_", "rank_correlation"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def _owns_parameters(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def randomizable_layers(detector: nn.Module, probe: torch.Tensor, *, space: str = "defocus") -> list[str]:
    """Names of the modules that own parameters, in the order the head-down test randomizes them.

    The order is the reverse of the order in which the modules first run on ``probe`` in the explained
    forward pass (``forward_map`` for ``space="defocus"``, the image forward for ``"rgb"``). Modules that
    own parameters but do not run (e.g. a removed classifier) are left out: they cannot change an
    attribution. The detector is given back in the mode it came in.

    Parameters
    ----------
    detector : nn.Module
        The detector (wrappers are unwrapped).
    probe : torch.Tensor
        One or more explained inputs (maps ``(B, 1, S, S)`` or images ``(B, 3, H, W)``).
    space : {"defocus", "rgb"}

    Returns
    -------
    list of str
        Module names as in ``detector.named_modules()``, head first.

    Examples
    --------
    >>> from defocus_xai.detect import DefocusDetector
    >>> det = DefocusDetector("small-cnn", estimator={"size": 16}, widths=(4, 8))
    >>> randomizable_layers(det, torch.zeros(1, 1, 16, 16))[:2]
    ['backbone.fc', 'backbone.features.10']
    """
    with borrowed(detector) as model:
        names = {m: n for n, m in model.named_modules()}
        order: list[nn.Module] = []
        seen: set[int] = set()

        def hook(mod, _inp, _out):
            if id(mod) not in seen:
                seen.add(id(mod))
                order.append(mod)

        handles = [m.register_forward_hook(hook) for m in model.modules() if _owns_parameters(m)]
        try:
            with torch.no_grad():
                explained_forward(model, space)(probe.to(module_device(model)))
        finally:
            for h in handles:
                h.remove()
    return [names[m] for m in reversed(order)]


@torch.no_grad()
def reinitialize_(module: nn.Module, generator: torch.Generator) -> int:
    """Re-initialize every parameter in ``module``'s sub-tree in place; return the number of values drawn
    or reset.

    Weights with two or more dimensions: ``U(-b, b)``, ``b = 1 / sqrt(fan_in)`` (PyTorch's default for
    convolution and linear layers); 1-D parameters of a module that also owns such a weight (biases):
    the same interval; normalization layers: reset to scale 1, shift 0 and, with running statistics,
    mean 0 and variance 1 (their default, which is not random); any other 1-D parameter: ``U(-1, 1)``.
    Values are drawn on the CPU from ``generator`` and copied to the parameter's device and dtype.

    Examples
    --------
    >>> lin = nn.Linear(4, 2)
    >>> reinitialize_(lin, torch.Generator().manual_seed(0))
    10
    >>> bool(lin.weight.abs().max() <= 0.5)
    True
    """
    count = 0
    for sub in module.modules():
        own = list(sub.named_parameters(recurse=False))
        if isinstance(sub, _NORMS):
            if hasattr(sub, "reset_running_stats") and getattr(sub, "track_running_stats", False):
                sub.reset_running_stats()
            for name, p in own:
                p.fill_(1.0 if name == "weight" else 0.0)
                count += p.numel()
            continue
        if not own:
            continue
        big = [p for _, p in own if p.ndim >= 2]
        fan_in = (big[0][0].numel() if big[0].shape[0] else 1) if big else None
        for _, p in own:
            if p.ndim >= 2:
                bound = 1.0 / math.sqrt(max(1, p[0].numel())) if p.shape[0] else 1.0
            elif fan_in is not None:
                bound = 1.0 / math.sqrt(max(1, fan_in))
            else:
                bound = 1.0
            draw = torch.empty(p.shape, dtype=torch.float32).uniform_(-bound, bound, generator=generator)
            p.copy_(draw.to(device=p.device, dtype=p.dtype))
            count += p.numel()
    return count


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b``.

    Ties get their average rank. A row that is constant in ``a`` or ``b`` has no rank correlation: NaN.

    Parameters
    ----------
    a, b : array_like, (N, ...)
        Flattened per sample.

    Returns
    -------
    numpy.ndarray, (N,) float64

    Examples
    --------
    >>> rank_correlation(np.array([[1.0, 2.0, 3.0]]), np.array([[10.0, 20.0, 25.0]])).tolist()
    [1.0]
    >>> rank_correlation(np.array([[1.0, 2.0, 3.0]]), np.array([[3.0, 2.0, 1.0]])).tolist()
    [-1.0]
    """
    from scipy.stats import rankdata

    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"rank_correlation: shapes differ, {a.shape} vs {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("rank_correlation: attributions contain NaN or infinity")
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    num = (ra * rb).sum(axis=1)
    out = np.full(a.shape[0], np.nan)
    ok = den > 0
    out[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return out


def _resolve_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    mods = dict(model.named_modules())
    out = []
    for name in layers:
        key = str(name)
        if key not in mods and key.startswith("module.") and key[len("module."):] in mods:
            key = key[len("module."):]
        if key not in mods or key == "":
            raise ValueError(f"layer {name!r} is not a module of {type(model).__name__}; some modules: "
                             f"{[n for n in mods if n][:12]}")
        if not any(True for _ in mods[key].parameters()):
            raise ValueError(f"layer {name!r} ({type(mods[key]).__name__}) has no parameters to randomize")
        out.append(key)
    if len(set(out)) != len(out):
        raise ValueError(f"layers has duplicates: {list(layers)}")
    return out


def _logits(model: nn.Module, s: AttributionSettings, x: torch.Tensor) -> np.ndarray:
    fn, batch = explained_forward(model, s.space, s.wrapper), s.eval_batch_size
    with torch.no_grad():
        outs = [fn(x[s:s + batch]).reshape(min(batch, x.shape[0] - s), -1).float().cpu()
                for s in range(0, x.shape[0], batch)]
    return torch.cat(outs).numpy()


def _summary(values: np.ndarray) -> tuple[float, float, int]:
    ok = np.isfinite(values)
    n = int(ok.sum())
    if n == 0:
        return float("nan"), float("nan"), 0
    v = values[ok]
    return float(v.mean()), float(v.std(ddof=1)) if n > 1 else float("nan"), n



# --------------------------------------------------------------------------------------------- API


def _settings(settings: AttributionSettings | None, options: dict) -> AttributionSettings:
    """The attribution settings of the test: saliency by default, signed unless ``abs`` is given."""
    s = dataclasses.replace(settings or AttributionSettings(method="saliency"), **options)
    if s.method == "saliency" and "abs" not in s.method_kwargs:
        s = dataclasses.replace(s, method_kwargs={**s.method_kwargs, "abs": False})
    return s


class _Records:
    """Rows of the result table: per step, the similarity of the step's attributions to the original."""

    def __init__(self, base: np.ndarray, base_logits: np.ndarray, s: AttributionSettings, cascading: bool,
                 per_sample: bool):
        self.base, self.base_logits, self.per_sample = base, base_logits, per_sample
        self.common = {"method": s.method, "space": s.space, "cascading": bool(cascading)}
        self.rows: list[dict] = []
        self.undefined: list[str] = []

    def add(self, step: int, layer: str, a: np.ndarray, logits: np.ndarray, n_rand: int) -> None:
        rs = rank_correlation(self.base, a)
        ra = rank_correlation(np.abs(self.base), np.abs(a))
        dl = np.abs(logits - self.base_logits).mean(axis=1)
        common = {"step": step, "layer": layer, **self.common, "n_randomized": int(n_rand)}
        if not (np.isfinite(rs).all() and np.isfinite(ra).all()):
            self.undefined.append(layer)
        if self.per_sample:
            self.rows += [{**common, "sample": i, "spearman": rs[i], "spearman_abs": ra[i],
                           "logit_change": float(dl[i])} for i in range(len(a))]
            return
        m_s, s_s, n_s = _summary(rs)
        m_a, s_a, n_a = _summary(ra)
        self.rows.append({**common, "spearman": m_s, "spearman_std": s_s, "spearman_abs": m_a,
                          "spearman_abs_std": s_a, "n_valid": min(n_s, n_a), "n": len(a),
                          "logit_change": float(dl.mean())})

    def table(self) -> pd.DataFrame:
        if self.undefined:
            u = self.undefined
            warnings.warn(f"randomization_test: some samples have a constant attribution after randomizing "
                          f"{u[:5]}{'...' if len(u) > 5 else ''}: their rank correlation is undefined and left "
                          "out of the means (see n_valid)", stacklevel=3)
        df = pd.DataFrame.from_records(self.rows)
        first = ["step", "layer", "sample"] if self.per_sample else ["step", "layer"]
        return df[first + [c for c in df.columns if c not in first]]


def _step_generator(seed: int, step: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(np.random.SeedSequence([int(seed), step]).generate_state(1)[0]))
    return gen


def randomization_test(detector: nn.Module, inputs: Any, settings: AttributionSettings | None = None, *,
                       layers: Sequence[str] | None = None, cascading: bool = True, per_sample: bool = False,
                       **options: Any) -> pd.DataFrame:
    """Model-parameter randomization sanity check of an attribution method (Adebayo et al. 2018).

    Parameters
    ----------
    detector : nn.Module
        A map detector (``space="defocus"``) or any detector :func:`~defocus_xai.explain.attribute`
        accepts for the space. Wrappers are unwrapped. The test runs on a deep copy: the caller's model
        (parameters, buffers, modes, device) is not changed.
    inputs : tensor or array
        ``space="defocus"``: normalized maps ``(B, 1, S, S)`` in ``[0, 1]``, or images ``(B, 3, H, W)``
        in ``[0, 1]`` (turned into maps once, with the detector's ``map_from_images``).
        ``space="rgb"``: images ``(B, 3, H, W)`` in ``[0, 1]``.
    settings : AttributionSettings, optional
        The attribution to test (default ``AttributionSettings(method="saliency")``; saliency runs with
        ``abs=False`` unless ``method_kwargs`` say otherwise). Its ``seed`` also seeds the
        re-initialization (step k uses a generator seeded from ``(seed, k)``); the attribution's draws
        are the same for every model.
    layers : sequence of str, optional
        Module names (as in ``named_modules()``; a leading ``module.`` is accepted) to randomize, in this
        order; each name randomizes its whole sub-tree. Default: every module that owns parameters, from
        the head down (:func:`randomizable_layers`).
    cascading : bool
        True: layers are randomized cumulatively (after step k the top k layers are random). False:
        independent randomization, one layer at a time, the others at their trained values.
    per_sample : bool
        Return one row per (layer, sample) instead of the per-layer mean and standard deviation.
    **options
        Fields of :class:`AttributionSettings` that replace those of ``settings`` (``method=``,
        ``seed=``, ``n_samples=``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per step, in randomization order, starting with ``"original"`` (the trained model, which
        correlates 1 with itself). Columns: ``step``, ``layer``, ``spearman`` / ``spearman_std`` (mean and
        sample standard deviation over samples of the rank correlation of the signed attributions),
        ``spearman_abs`` / ``spearman_abs_std`` (the same on ``|attribution|``), ``n_valid`` (samples with
        a defined correlation), ``n`` (samples), ``logit_change`` (mean ``|logit - original logit|``),
        ``n_randomized`` (parameter values random at this step), ``method``, ``space``, ``cascading``.
        With ``per_sample=True``: ``sample``, ``spearman``, ``spearman_abs``, ``logit_change`` per sample
        instead of the summaries. Draw it with :func:`defocus_xai.plot.randomization_plot`.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.detect import DefocusDetector
    >>> det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8)).eval()
    >>> df = randomization_test(det, torch.rand(2, 1, 32, 32), layers=["backbone.fc"], cascading=False)
    >>> df[["layer", "n"]].values.tolist()
    [['original', 2], ['backbone.fc', 2]]
    """
    s = _settings(settings, options)
    original = unwrap(detector)
    if not isinstance(original, nn.Module):
        raise TypeError(f"detector must be a torch.nn.Module, got {type(detector).__name__}")
    model = copy.deepcopy(original).eval()
    x, _ = prepare_inputs(model, inputs, s.space, None, module_device(model))
    if x.shape[0] == 0:
        raise ValueError("inputs is empty")
    names = _resolve_layers(model, layers) if layers is not None else randomizable_layers(model, x[:1],
                                                                                       space=s.space)
    if not names:
        raise ValueError(f"{type(model).__name__} has no parameterized module in the explained forward pass")

    def attr() -> np.ndarray:
        a = s.attribute(model, x, inputs_are_maps=True if s.space == "defocus" else None)
        a = a.detach().float().cpu().numpy().reshape(x.shape[0], -1)
        if not np.isfinite(a).all():
            raise ValueError(f"method={s.method!r} returned non-finite attributions")
        return a

    rec = _Records(attr(), _logits(model, s, x), s, cascading, per_sample)
    rec.add(0, "original", rec.base, rec.base_logits, 0)
    modules, trained = dict(model.named_modules()), copy.deepcopy(model.state_dict())
    n_rand = 0
    for step, name in enumerate(names, start=1):
        if not cascading:
            model.load_state_dict(trained)
            n_rand = 0
        n_rand += reinitialize_(modules[name], _step_generator(s.seed, step))
        rec.add(step, name, attr(), _logits(model, s, x), n_rand)
    return rec.table()
