"""The attribution options in one frozen object, shared by :func:`attribute`, the exporter and the sanity checks.

:class:`AttributionSettings` validates the options once, fills in each method's defaults
(:meth:`~AttributionSettings.resolved`) and describes itself as a JSON-able dict
(:meth:`~AttributionSettings.to_meta`) for the ``.npz`` store's ``meta`` and the export fingerprint.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .background import (BACKGROUNDS, BLUR_FRACTION, DEFAULT_BACKGROUND_SIZE, background_kind, check_background,
                         data_size, describe_background, rows_info)
from .samplers import SAMPLERS

__all__ = ["AttributionSettings", "METHODS", "SPACES", "ENGINES", "SAMPLING_ENGINES", "SAMPLERS", "BACKGROUNDS",
           "WRAPPERS", "DEFAULT_N_SAMPLES", "DEFAULT_N_STEPS"]

METHODS = ("shap_gradient", "shap_deep", "gradient_shap", "integrated_gradients", "deeplift", "saliency",
           "input_x_gradient", "occlusion")
"""Names accepted by ``attribute(method=...)``."""

SPACES = ("defocus", "rgb")
"""What an attribution explains: the normalized defocus map or the RGB image."""

ENGINES = ("batched", "shap", "captum")
"""Engines of ``shap_gradient`` (the other methods have one engine each, gradient_shap two)."""

SAMPLING_ENGINES = {"shap_gradient": ENGINES, "gradient_shap": ("batched", "captum")}
"""The engines of each sampling method (default ``"batched"``, the only one that stratifies its draws)."""

WRAPPERS = ("paper224",)
"""Explained functions other than the detector's ``forward_map`` on the map grid (``space="defocus"``):
``"paper224"`` resizes the normalized map to 224 x 224 (bilinear), min-max normalizes it per sample and
feeds it to ``forward_map``, as the paper's shap wrapper."""

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
    background : {"data", "zeros", "blur"}, int, tensor or array
        The attribution reference (:data:`BACKGROUNDS`; ``docs/attribution.md``). ``"data"`` (default):
        ``background_size`` real samples, from the reference / training data given to the exporter
        (``background_data=``), else the first real samples of the explained data (:func:`attribute`:
        the first inputs); an int ``k``: ``"data"`` with ``k`` samples; ``"zeros"``: one all-zero
        input; ``"blur"``: each input's own Gaussian-blurred copy; or the reference inputs
        ``(K, C, H, W)`` as :func:`~defocus_xai.explain.attribute` takes them.
    background_size : int
        Samples of the data background (default 10, as the paper).
    wrapper : {"paper224"}, optional
        The explained function in ``space="defocus"`` (:data:`WRAPPERS`); None: the detector's
        ``forward_map`` on the map grid.
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
    >>> s = AttributionSettings(method="integrated_gradients", n_steps=16, background="zeros")
    >>> s.to_meta()["n_steps"], s.to_meta()["engine"], s.to_meta()["background"]
    (16, 'captum', 'zeros: one all-zero input')
    >>> det = DefocusDetector("small-cnn", estimator={"size": 32})
    >>> s.attribute(det, torch.rand(2, 1, 32, 32)).shape
    torch.Size([2, 1, 32, 32])
    >>> dataclasses.replace(s, method="saliency").to_meta()["n_steps"] is None
    True
    """

    method: str = "shap_gradient"
    space: str = "defocus"
    background: Any = "data"
    background_size: int = DEFAULT_BACKGROUND_SIZE
    wrapper: str | None = None
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
        check_background(self.background, self.background_size)
        if self.wrapper is not None and self.wrapper not in WRAPPERS:
            raise ValueError(f"unknown wrapper {self.wrapper!r}; choose None or one of {WRAPPERS}")
        if self.wrapper is not None and self.space != "defocus":
            raise ValueError(f"wrapper={self.wrapper!r} wraps the defocus-map function; space={self.space!r} has none")
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

    def background_info(self) -> dict:
        """The reference as far as these settings fix it (a ``background_info`` record): its kind, and
        ``k`` / shape / sha1 of given inputs. The exporter and :func:`attribute` complete it with the rows
        they resolve (indices, paths, labels).

        Examples
        --------
        >>> AttributionSettings().background_info()
        {'kind': 'data', 'k': 10, 'source': 'data (resolved when attributing)'}
        """
        bg, kind = self.background, background_kind(self.background)
        if kind == "data":
            return {"kind": "data", "k": data_size(bg, self.background_size),
                    "source": "data (resolved when attributing)"}
        if kind == "blur":
            return {"kind": "blur", "sigma_fraction": BLUR_FRACTION}
        if kind == "zeros":
            return {"kind": "zeros"}
        return rows_info(torch.as_tensor(np.asarray(bg) if not torch.is_tensor(bg) else bg), {"kind": "given"})

    def to_meta(self) -> dict:
        """The settings that determine the values, as a JSON-able dict (for the store's ``meta`` and the
        export fingerprint). Defaults are resolved; ``batch_size`` and ``eval_batch_size`` are left out
        (they do not change values); ``background`` is the one-line statement of the reference
        (:func:`~defocus_xai.explain.background.describe_background`) for reports and captions,
        ``background_info`` its record.

        Examples
        --------
        >>> AttributionSettings(n_samples=8).to_meta()["background"]
        'data: 10 samples of the data (resolved when attributing)'
        >>> AttributionSettings(background="blur").to_meta()["background"]
        "blur: each input's Gaussian-blurred copy (sigma 0.05 x side)"
        """
        r = self.resolved()
        info = self.background_info()
        return {"method": r.method, "space": r.space, "engine": r.engine, "sampler": r.sampler,
                "n_samples": r.n_samples, "n_steps": r.n_steps, "seed": int(r.seed), "target": r.target,
                "wrapper": r.wrapper, "method_kwargs": _jsonable(r.method_kwargs),
                "background": describe_background(info), "background_info": info}

    @classmethod
    def paper(cls, **overrides: Any) -> "AttributionSettings":
        """The paper's attribution: shap's GradientExplainer estimand and draws (``sampler="shap"``, 200
        draws) on the paper's wrapper (``wrapper="paper224"``) with a data background of 10 samples.

        The paper's reference was the first 10 real *training* frames: give the exporter the training
        split as ``background_data=``. What else the paper fixed (image resize, alignment eps, channel-0
        RGB, ...) belongs to the data and the analyses; ``docs/attribution.md`` lists each.

        Parameters
        ----------
        **overrides
            Fields that replace the preset's (e.g. ``seed=1``).

        Examples
        --------
        >>> s = AttributionSettings.paper()
        >>> s.wrapper, s.background, s.background_size, s.resolved().sampler, s.resolved().n_samples
        ('paper224', 'data', 10, 'shap', 200)
        """
        preset = dict(method="shap_gradient", space="defocus", background="data",
                      background_size=DEFAULT_BACKGROUND_SIZE, wrapper="paper224", engine="batched", sampler="shap",
                      n_samples=DEFAULT_N_SAMPLES["shap_gradient"])
        return cls(**{**preset, **overrides})

    def attribute_kwargs(self) -> dict:
        """These settings as keyword arguments of :func:`~defocus_xai.explain.attribute`.

        Examples
        --------
        >>> sorted(AttributionSettings().attribute_kwargs())[:3]
        ['background', 'background_size', 'batch_size']
        """
        return {f.name: (dict(self.method_kwargs) if f.name == "method_kwargs" else getattr(self, f.name))
                for f in dataclasses.fields(self)}

    def attribute(self, detector: torch.nn.Module, inputs: Any, *, sample_indices: Sequence[int] | None = None,
                  inputs_are_maps: bool | None = None, return_meta: bool = False):
        """Run :func:`~defocus_xai.explain.attribute` with these settings.

        ``sample_indices``, ``inputs_are_maps`` and ``return_meta`` are passed on.

        Examples
        --------
        >>> import torch
        >>> from defocus_xai.detect import DefocusDetector
        >>> det = DefocusDetector("small-cnn", estimator={"size": 16})
        >>> AttributionSettings(method="saliency").attribute(det, torch.rand(2, 1, 16, 16)).shape
        torch.Size([2, 1, 16, 16])
        """
        from .attribution import attribute

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
