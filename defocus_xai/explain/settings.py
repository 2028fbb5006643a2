"""The attribution options in one frozen object, shared by :func:`attribute`, the exporter and the sanity checks.

:class:`AttributionSettings` validates the options once, fills in each method's defaults
(:meth:`~AttributionSettings.resolved`) and describes itself as a JSON-able dict
(:meth:`~AttributionSettings.to_meta`) for the ``.npz`` store's ``meta`` and the export fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .samplers import SAMPLERS

__all__ = ["AttributionSettings", "METHODS", "SPACES", "ENGINES", "SAMPLING_ENGINES", "SAMPLERS",
           "DEFAULT_N_SAMPLES", "DEFAULT_N_STEPS", "describe_background"]

METHODS = ("shap_gradient", "shap_deep", "gradient_shap", "integrated_gradients", "deeplift", "saliency",
           "input_x_gradient", "occlusion")
"""Names accepted by ``attribute(method=...)``."""

SPACES = ("defocus", "rgb")
"""What an attribution explains: the normalized defocus map or the RGB image."""

ENGINES = ("batched", "shap", "captum")
"""Engines of ``shap_gradient`` (the other methods have one engine each, gradient_shap two)."""

SAMPLING_ENGINES = {"shap_gradient": ENGINES, "gradient_shap": ("batched", "captum")}
"""The engines of each sampling method (default ``"batched"``, the only one that stratifies its draws)."""

DEFAULT_N_SAMPLES = {"shap_gradient": 200, "gradient_shap": 200}
"""Default random draws per sample of the sampling methods (shap's ``nsamples``)."""

DEFAULT_N_STEPS = {"integrated_gradients": 50}
"""Default quadrature steps of the path-integral methods."""

_ONE_ENGINE = {"shap_deep": "shap"}  # methods other than shap_gradient: their only engine (default captum)


class _FrozenMap(Mapping):
    """A read-only, picklable mapping (the ``method_kwargs`` of a frozen settings object)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping | None = None):
        object.__setattr__(self, "_items", dict(items or {}))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("method_kwargs is read-only; use dataclasses.replace(settings, method_kwargs=...)")

    def __reduce__(self):
        return (_FrozenMap, (self._items,))

    def __repr__(self) -> str:
        return repr(self._items)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"method_kwargs values must be numbers, strings, booleans or sequences of them, got "
                    f"{type(value).__name__}")


def describe_background(background: Any, kind: str | None = None, shape: Sequence[int] | None = None, *,
                        source: str | None = None) -> str:
    """A short, reproducible description of an attribution reference (count, shape, sha1 of the values).

    Parameters
    ----------
    background : tensor, array, int or None
        Reference inputs ``(K, C, H, W)``; an int ``k``: the first ``k`` samples of the data set (resolved
        by the exporter); None: one all-zero input.
    kind : str, optional
        ``"maps"`` or ``"images"`` (default: from the channel count, 1 = maps).
    shape : sequence of int, optional
        The per-sample shape of the all-zero input (``background=None``), when known.
    source : str, optional
        Where the reference inputs came from (e.g. ``"data-set samples 0..9"``).

    Examples
    --------
    >>> describe_background(None, "maps", (1, 8, 8))
    'zeros maps (1, 8, 8)'
    >>> describe_background(torch.zeros(2, 1, 4, 4))[:30]
    '2 maps, shape (1, 4, 4), sha1 '
    """
    if background is None:
        return "zeros" + (f" {kind}" if kind else "") + (f" {tuple(int(s) for s in shape)}" if shape else "")
    if isinstance(background, (int, np.integer)) and not isinstance(background, bool):
        return f"data-set samples 0..{int(background) - 1}"
    b = background.detach().float().cpu().contiguous().numpy() if torch.is_tensor(background) else \
        np.ascontiguousarray(background, dtype=np.float32)
    kind = kind or ("maps" if b.ndim == 4 and b.shape[1] == 1 else "images")
    digest = hashlib.sha1(b.tobytes()).hexdigest()[:12]
    src = f" from {source}" if source else ""
    return f"{b.shape[0]} {kind}{src}, shape {tuple(b.shape[1:])}, sha1 {digest}"


def _positive(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class AttributionSettings:
    """The options of an attribution, validated once; shared by ``attribute``, the exporter and the sanity checks.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    space : {"defocus", "rgb"}
        Explain the normalized defocus map or the RGB image.
    background : tensor, array, int or None
        The attribution reference: inputs ``(K, C, H, W)`` as :func:`~defocus_xai.explain.attribute`
        takes them, an int ``k`` for the first ``k`` samples of the data set (the exporter resolves it),
        or None for one all-zero input.
    n_samples : int, optional
        Random draws per sample (shap_gradient, gradient_shap; default 200). Unused by other methods.
    n_steps : int, optional
        Quadrature steps (integrated_gradients; default 50). Unused by other methods.
    seed : int
        Seed of the random draws (sample ``i`` of a data set draws from ``sample_seed(seed, i)``).
    engine : {"batched", "shap", "captum"}, optional
        The engine of ``shap_gradient`` (default ``"batched"``; see :data:`SAMPLING_ENGINES`) or of
        ``gradient_shap`` (``"batched"`` or ``"captum"``); the other methods have a single engine.
    sampler : {"stratified", "shap"}, optional
        How the sampling methods draw (background row, t) pairs: ``"stratified"`` (every row equally often,
        t in jittered strata; the default of the ``"batched"`` engine) or ``"shap"`` (independent draws:
        shap's own stream with the ``"batched"`` and ``"shap"`` engines, captum's with ``"captum"``, the
        default of those two). Only the ``"batched"`` engine stratifies. Unused by other methods.
    batch_size, eval_batch_size : int
        Samples per step and inputs per forward/backward pass; they bound memory, not values.
    method_kwargs : mapping
        Extra parameters of the method (stored read-only), see :func:`~defocus_xai.explain.attribute`.
    target : int, optional
        Output column to explain (default: the single logit, or column 1 of two).

    Examples
    --------
    >>> import dataclasses, torch
    >>> from defocus_xai.detect import DefocusDetector
    >>> s = AttributionSettings(method="integrated_gradients", n_steps=16)
    >>> s.to_meta()["n_steps"], s.to_meta()["engine"]
    (16, 'captum')
    >>> det = DefocusDetector("small-cnn", estimator={"size": 32})
    >>> s.attribute(det, torch.rand(2, 1, 32, 32)).shape
    torch.Size([2, 1, 32, 32])
    >>> dataclasses.replace(s, method="saliency").to_meta()["n_steps"] is None
    True
    """

    method: str = "shap_gradient"
    space: str = "defocus"
    background: Any = None
    n_samples: int | None = None
    n_steps: int | None = None
    seed: int = 0
    engine: str | None = None
    sampler: str | None = None
    batch_size: int = 16
    eval_batch_size: int = 256
    method_kwargs: Mapping = field(default_factory=_FrozenMap)
    target: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {METHODS}")
        if self.space not in SPACES:
            raise ValueError(f"unknown space {self.space!r}; choose one of {SPACES}")
        if self.engine is not None and self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of {ENGINES}")
        if self.engine is not None and self.engine not in SAMPLING_ENGINES.get(
                self.method, (_ONE_ENGINE.get(self.method, "captum"),)):
            raise ValueError(f"method {self.method!r} has no engine {self.engine!r}")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {SAMPLERS}")
        if self.method in SAMPLING_ENGINES and self.sampler == "stratified" and self.engine not in (None,
                                                                                                  "batched"):
            raise ValueError(f"{self.method}: engine={self.engine!r} draws its own (background, t) pairs at "
                             "random; sampler='stratified' needs engine='batched' (or pass sampler='shap')")
        for name in ("n_samples", "n_steps", "batch_size", "eval_batch_size"):
            _positive(name, getattr(self, name))
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or int(self.seed) < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.target is not None and (isinstance(self.target, bool) or int(self.target) < 0):
            raise ValueError(f"target must be None or an integer >= 0, got {self.target!r}")
        bg = self.background
        if isinstance(bg, bool) or not (bg is None or torch.is_tensor(bg) or isinstance(bg, (np.ndarray, int,
                                                                                               np.integer))):
            raise TypeError(f"background must be None, an int (data-set samples) or a tensor / array of "
                            f"reference inputs, got {type(bg).__name__}")
        if isinstance(bg, (int, np.integer)) and int(bg) < 1:
            raise ValueError(f"background={bg}: need at least 1 sample")
        if not isinstance(self.method_kwargs, Mapping):
            raise TypeError(f"method_kwargs must be a mapping, got {type(self.method_kwargs).__name__}")
        _jsonable(self.method_kwargs)
        object.__setattr__(self, "method_kwargs", _FrozenMap(self.method_kwargs))

    def resolved(self) -> "AttributionSettings":
        """These settings with each method's defaults filled in: the engine, ``n_samples`` and the sampler
        for the sampling methods, ``n_steps`` for integrated gradients; what a method does not use is None.

        Examples
        --------
        >>> r = AttributionSettings(method="gradient_shap", n_steps=8).resolved()
        >>> r.engine, r.sampler, r.n_samples, r.n_steps
        ('batched', 'stratified', 200, None)
        >>> AttributionSettings(engine="shap").resolved().sampler
        'shap'
        """
        m = self.method
        engine = self.engine or ("batched" if m in SAMPLING_ENGINES else _ONE_ENGINE.get(m, "captum"))
        n_samples = (self.n_samples or DEFAULT_N_SAMPLES[m]) if m in DEFAULT_N_SAMPLES else None
        n_steps = (self.n_steps or DEFAULT_N_STEPS[m]) if m in DEFAULT_N_STEPS else None
        sampler = None
        if m in SAMPLING_ENGINES:
            sampler = self.sampler or ("stratified" if engine == "batched" else "shap")
        return dataclasses.replace(self, engine=engine, sampler=sampler, n_samples=n_samples, n_steps=n_steps)

    def to_meta(self) -> dict:
        """The settings that determine the values, as a JSON-able dict (for the store's ``meta`` and the
        export fingerprint). Defaults are resolved; ``batch_size`` and ``eval_batch_size`` are left out
        (they do not change values); the background is described by :func:`describe_background`.

        Examples
        --------
        >>> AttributionSettings(n_samples=8).to_meta()["background"]
        'zeros'
        """
        r = self.resolved()
        return {"method": r.method, "space": r.space, "engine": r.engine, "sampler": r.sampler,
                "n_samples": r.n_samples,
                "n_steps": r.n_steps, "seed": int(r.seed), "target": r.target,
                "method_kwargs": _jsonable(r.method_kwargs), "background": describe_background(r.background)}

    def attribute_kwargs(self) -> dict:
        """These settings as keyword arguments of :func:`~defocus_xai.explain.attribute`.

        Examples
        --------
        >>> sorted(AttributionSettings().attribute_kwargs())[:3]
        ['background', 'batch_size', 'engine']
        """
        return {f.name: (dict(self.method_kwargs) if f.name == "method_kwargs" else getattr(self, f.name))
                for f in dataclasses.fields(self)}

    def attribute(self, detector: torch.nn.Module, inputs: Any, *, sample_indices: Sequence[int] | None = None,
                  inputs_are_maps: bool | None = None, return_meta: bool = False):
        """Run :func:`~defocus_xai.explain.attribute` with these settings.

        ``sample_indices``, ``inputs_are_maps`` and ``return_meta`` are passed on; an int ``background``
        must first be replaced by the reference inputs it stands for.

        Examples
        --------
        >>> import torch
        >>> from defocus_xai.detect import DefocusDetector
        >>> det = DefocusDetector("small-cnn", estimator={"size": 16})
        >>> AttributionSettings(method="saliency").attribute(det, torch.rand(1, 1, 16, 16)).shape
        torch.Size([1, 1, 16, 16])
        """
        from .attribution import attribute

        if isinstance(self.background, (int, np.integer)):
            raise ValueError(f"background={int(self.background)} names data-set samples; pass the reference "
                             "inputs themselves (dataclasses.replace(settings, background=images))")
        return attribute(detector, inputs, sample_indices=sample_indices, inputs_are_maps=inputs_are_maps,
                         return_meta=return_meta, **self.attribute_kwargs())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AttributionSettings):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> str:
        return json.dumps([self.to_meta(), self.batch_size, self.eval_batch_size], sort_keys=True)
