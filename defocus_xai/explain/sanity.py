"""Model-parameter randomization test (Adebayo et al. 2018, "Sanity checks for saliency maps").

An attribution that explains a *model* must change when the model's learned parameters are destroyed.
:func:`randomization_test` re-initializes the detector's layers one after the other, from the head down
to the input, recomputes the attribution after each step and reports how similar it still is to the
attribution of the trained model (Spearman rank correlation per sample, averaged). A method whose maps
stay similar after the whole network is random shows the input (edges, the map's own structure), not
what the model learned: it fails the check.

Design (see ``docs/sanity_faithfulness.md``)
    * The caller's model is never touched: the test runs on a deep copy.
    * Order: parameterized modules in the order they *run* in the explained forward pass (found with
      hooks on one probe input), reversed: the head first. ``layers=`` overrides it (any module names,
      randomized in the given order, each with its whole sub-tree).
    * Re-initialization is drawn from a :class:`torch.Generator` seeded from ``(seed, step)`` on the
      CPU, so a layer gets the same draws in cascading and independent mode and on every device, and no
      global random state is touched. Weights with two or more dimensions (conv, linear) are drawn
      from PyTorch's default distribution ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (Kaiming-uniform with
      ``a = sqrt(5)``); the biases of such layers from the same interval. Normalization layers
      (batch / group / layer / instance norm) have no random default: they are reset to it (scale 1,
      shift 0, running mean 0, running variance 1), as Quantus' ``reset_parameters`` does. Other 1-D
      parameters are drawn from ``U(-1, 1)``.
    * Similarity: Spearman rank correlation (ties get average ranks) of the flattened original and
      randomized attribution, per sample, on the signed values and on the absolute values. Adebayo et
      al. report both: the sign of gradient-type attributions flips easily, so the signed correlation
      drops faster, while ``|attribution|`` keeps structure of the input (edges) that a model-independent
      method would also show; the absolute version is the stricter check. ``method="saliency"`` is run
      with ``abs=False`` unless ``attribute_kwargs`` say otherwise, so that the signed column means
      something (captum's default returns ``|gradient|``).
    * The draws of sampling methods (shap_gradient, gradient_shap) use the same seed for every model, so
      the correlations measure the model's effect, not sampling noise.

Examples
--------
>>> import torch
>>> from defocus_xai.detect.models import DefocusDetector
>>> det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8)).eval()
>>> df = randomization_test(det, torch.rand(3, 1, 32, 32), method="saliency")
>>> df["layer"].iloc[:3].tolist()
['original', 'backbone.fc', 'backbone.features.10']
>>> float(df["spearman"].iloc[0])
1.0
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .attribute import attribute, unwrap
from .._device import module_device

__all__ = ["randomization_test", "randomizable_layers", "reinitialize_", "rank_correlation"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
_RESERVED = ("method", "space", "seed", "inputs_are_maps", "return_meta")


# ------------------------------------------------------------------------------------------ helpers



def _explained_forward(model: nn.Module, space: str):
    """The function whose output is attributed (maps -> logits, or images -> logits)."""
    if space == "defocus":
        if not hasattr(model, "forward_map"):
            raise ValueError(f"space='defocus' needs a detector with forward_map, got {type(model).__name__}")
        return model.forward_map
    if hasattr(model, "forward_map") and hasattr(model, "estimator") and hasattr(model, "normalize"):
        return lambda x: model.forward_map(model.normalize(model.estimator(x).dense.float()))
    return model


def _owns_parameters(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def randomizable_layers(detector: nn.Module, probe: torch.Tensor, *, space: str = "defocus") -> list[str]:
    """Names of the modules that own parameters, in the order the head-down test randomizes them.

    The order is the reverse of the order in which the modules first run on ``probe`` in the explained
    forward pass (``forward_map`` for ``space="defocus"``, the image forward for ``"rgb"``). Modules that
    own parameters but do not run (e.g. a removed classifier) are left out: they cannot change an
    attribution.

    Parameters
    ----------
    detector : nn.Module
        The detector (unwrapped from DataParallel / DDP).
    probe : torch.Tensor
        One or more explained inputs (maps ``(B, 1, S, S)`` or images ``(B, 3, H, W)``).
    space : {"defocus", "rgb"}

    Returns
    -------
    list of str
        Module names as in ``detector.named_modules()``, head first.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 1))
    >>> class Toy(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body = net
    ...     def forward_map(self, m):
    ...         return self.body(m)
    >>> randomizable_layers(Toy(), torch.zeros(1, 1, 8, 8))
    ['body.3', 'body.0']
    """
    model = unwrap(detector)
    names = {m: n for n, m in model.named_modules()}
    order: list[nn.Module] = []
    seen: set[int] = set()

    def hook(mod, _inp, _out):
        if id(mod) not in seen:
            seen.add(id(mod))
            order.append(mod)

    handles = [m.register_forward_hook(hook) for m in model.modules() if _owns_parameters(m)]
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            _explained_forward(model, space)(probe.to(module_device(model)))
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.training = t
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


def _prepare(model: nn.Module, inputs: Any, space: str, device: torch.device) -> torch.Tensor:
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4 and inputs.shape[1] in (1, 3) \
            and inputs.dtype.kind == "f":
        inputs = torch.from_numpy(np.ascontiguousarray(inputs))
    if not torch.is_tensor(inputs):
        from .._images import as_image_batch

        inputs = as_image_batch(inputs, name="inputs")
    if inputs.ndim == 3 and space == "defocus":
        inputs = inputs.unsqueeze(1)
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (B, C, H, W), got shape {tuple(inputs.shape)}")
    if inputs.shape[0] == 0:
        raise ValueError("inputs is empty")
    x = inputs.detach().to(device=device, dtype=torch.float32)
    if space == "defocus":
        if x.shape[1] == 1:
            return x
        if x.shape[1] != 3 or not hasattr(model, "map_from_images"):
            raise ValueError(f"space='defocus': inputs must be maps (B, 1, S, S) or images (B, 3, H, W) for a "
                             f"detector with map_from_images, got shape {tuple(x.shape)}")
        with torch.no_grad():
            return model.map_from_images(x).detach().float()
    if x.shape[1] != 3:
        raise ValueError(f"space='rgb' explains images (B, 3, H, W), got shape {tuple(x.shape)}")
    return x


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


def _logits(fn, x: torch.Tensor, batch: int) -> np.ndarray:
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


def randomization_test(detector: nn.Module, inputs: Any, *, method: str = "saliency", space: str = "defocus",
                       layers: Sequence[str] | None = None, cascading: bool = True, seed: int = 0,
                       attribute_kwargs: dict | None = None, per_sample: bool = False) -> pd.DataFrame:
    """Model-parameter randomization sanity check of an attribution method (Adebayo et al. 2018).

    Parameters
    ----------
    detector : nn.Module
        A :class:`~defocus_xai.detect.models.DefocusDetector` (``space="defocus"``) or any detector
        :func:`~defocus_xai.explain.attribute.attribute` accepts for ``space``. DataParallel / DDP are
        unwrapped. It is deep-copied: the caller's model (parameters, buffers, modes) is not changed.
    inputs : tensor or array
        ``space="defocus"``: normalized maps ``(B, 1, S, S)`` in ``[0, 1]``, or images ``(B, 3, H, W)``
        in ``[0, 1]`` (turned into maps once, with the detector's ``map_from_images``).
        ``space="rgb"``: images ``(B, 3, H, W)`` in ``[0, 1]``.
    method : str
        An attribution method of :func:`~defocus_xai.explain.attribute.attribute` (default
        ``"saliency"``, run with ``abs=False`` unless ``attribute_kwargs["method_kwargs"]`` says otherwise).
    space : {"defocus", "rgb"}
    layers : sequence of str, optional
        Module names (as in ``named_modules()``; a leading ``module.`` is accepted) to randomize, in this
        order; each name randomizes its whole sub-tree. Default: every module that owns parameters, from
        the head down (:func:`randomizable_layers`).
    cascading : bool
        True: layers are randomized cumulatively (after step k the top k layers are random). False:
        independent randomization, one layer at a time, the others at their trained values.
    seed : int
        Seeds the re-initialization (step k uses a generator seeded from ``(seed, k)``) and the
        attribution's own draws (the same for every model).
    attribute_kwargs : dict, optional
        More arguments for :func:`~defocus_xai.explain.attribute.attribute` (``background``,
        ``n_samples``, ``batch_size``, ``target``, ``method_kwargs``, ...). ``method``, ``space``,
        ``seed`` and ``inputs_are_maps`` are set by this function.
    per_sample : bool
        Return one row per (layer, sample) instead of the per-layer mean and standard deviation.

    Returns
    -------
    pandas.DataFrame
        One row per step, in randomization order, starting with ``"original"`` (the trained model, which
        correlates 1 with itself). Columns: ``step``, ``layer`` (the module randomized at this step),
        ``spearman`` / ``spearman_std`` (mean and sample standard deviation over samples of the rank
        correlation of the signed attributions), ``spearman_abs`` / ``spearman_abs_std`` (the same on
        ``|attribution|``), ``n_valid`` (samples with a defined correlation: a constant attribution
        has none), ``n_samples``, ``logit_change`` (mean ``|logit - original logit|``, evidence that the
        step changed the model), ``n_randomized`` (parameter values randomized in the model at this
        step), ``method``, ``space``, ``cascading``. With ``per_sample=True``: ``sample``, ``spearman``,
        ``spearman_abs``, ``logit_change`` per sample instead of the summaries. Draw it with
        :func:`defocus_xai.plot.randomization_plot`.

    Notes
    -----
    A method passes when the correlations fall towards 0 as more of the model is randomized; after the
    last step (every layer random in cascading mode) they should be near 0. See
    ``docs/sanity_faithfulness.md`` for how to read the two columns.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.detect.models import DefocusDetector
    >>> det = DefocusDetector("small-cnn", estimator={"size": 32}, widths=(4, 8)).eval()
    >>> df = randomization_test(det, torch.rand(2, 1, 32, 32), layers=["backbone.fc"], cascading=False)
    >>> df[["layer", "n_samples"]].values.tolist()
    [['original', 2], ['backbone.fc', 2]]
    """
    if space not in ("defocus", "rgb"):
        raise ValueError(f"space must be 'defocus' or 'rgb', got {space!r}")
    kw = copy.deepcopy(dict(attribute_kwargs or {}))
    bad = sorted(set(kw) & set(_RESERVED))
    if bad:
        raise ValueError(f"attribute_kwargs must not set {bad}: randomization_test sets them")
    if method == "saliency":
        mk = dict(kw.get("method_kwargs") or {})
        mk.setdefault("abs", False)
        kw["method_kwargs"] = mk
    original = unwrap(detector)
    if not isinstance(original, nn.Module):
        raise TypeError(f"detector must be a torch.nn.Module, got {type(detector).__name__}")
    model = copy.deepcopy(original)
    device = module_device(model)
    x = _prepare(model, inputs, space, device)
    if space == "defocus":
        kw["inputs_are_maps"] = True
    n = x.shape[0]
    eval_batch = int(kw.get("eval_batch_size", 256))

    def attr(m: nn.Module) -> np.ndarray:
        a = attribute(m, x, method=method, space=space, seed=int(seed), **kw)
        a = a.detach().float().cpu().numpy().reshape(n, -1)
        if not np.isfinite(a).all():
            raise ValueError(f"method={method!r} returned non-finite attributions")
        return a

    names = _resolve_layers(model, layers) if layers is not None else randomizable_layers(model, x[:1],
                                                                                       space=space)
    if not names:
        raise ValueError(f"{type(model).__name__} has no parameterized module in the explained forward pass")
    modules = dict(model.named_modules())
    trained = copy.deepcopy(model.state_dict())
    fwd = _explained_forward(model, space)
    was_training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        base = attr(model)
        base_logits = _logits(fwd, x, eval_batch)
        records = []

        def record(step: int, layer: str, a: np.ndarray, logits: np.ndarray, n_rand: int):
            rs = rank_correlation(base, a)
            ra = rank_correlation(np.abs(base), np.abs(a))
            dl = np.abs(logits - base_logits).mean(axis=1)
            common = {"step": step, "layer": layer, "method": method, "space": space,
                      "cascading": bool(cascading), "n_randomized": int(n_rand)}
            if per_sample:
                for i in range(n):
                    records.append({**common, "sample": i, "spearman": rs[i], "spearman_abs": ra[i],
                                    "logit_change": float(dl[i])})
            else:
                m_s, s_s, n_s = _summary(rs)
                m_a, s_a, n_a = _summary(ra)
                records.append({**common, "spearman": m_s, "spearman_std": s_s, "spearman_abs": m_a,
                                "spearman_abs_std": s_a, "n_valid": min(n_s, n_a), "n_samples": n,
                                "logit_change": float(dl.mean())})
            return rs, ra

        record(0, "original", base, base_logits, 0)
        undefined = []
        n_rand = 0
        for step, name in enumerate(names, start=1):
            if not cascading:
                model.load_state_dict(trained)
                n_rand = 0
            gen = torch.Generator(device="cpu")
            gen.manual_seed(int(np.random.SeedSequence([int(seed), step]).generate_state(1)[0]))
            n_rand += reinitialize_(modules[name], gen)
            model.eval()
            a = attr(model)
            rs, ra = record(step, name, a, _logits(fwd, x, eval_batch), n_rand)
            if not (np.isfinite(rs).all() and np.isfinite(ra).all()):
                undefined.append(name)
        if undefined:
            warnings.warn(f"randomization_test: some samples have a constant attribution after randomizing "
                          f"{undefined[:5]}{'...' if len(undefined) > 5 else ''}: their rank correlation is "
                          "undefined and left out of the means (see n_valid)", stacklevel=2)
    finally:
        for m, t in was_training.items():
            m.training = t
    df = pd.DataFrame.from_records(records)
    first = ["step", "layer", "sample"] if per_sample else ["step", "layer"]
    return df[first + [c for c in df.columns if c not in first]]
