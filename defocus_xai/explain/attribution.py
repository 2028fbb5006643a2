"""One entry point for attributions of defocus and RGB detectors, over shap and captum.

:func:`attribute` explains a detector's "fake" logit with respect to its normalized defocus map
(``space="defocus"``, what the paper plots) or the RGB image (``space="rgb"``). It validates the options
(:class:`~defocus_xai.explain.settings.AttributionSettings`), prepares inputs and background and hands them
to the method's engine (:mod:`defocus_xai.explain.engines`). Which parts of the estimator carry gradients,
how the random draws are seeded and how the engines of ``shap_gradient`` relate: ``docs/attribution.md``.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._device import module_device
from ..detect.protocol import borrowed, uses_maps
from .background import (BLUR_FRACTION, DEFAULT_BACKGROUND_SIZE, background_kind, blur, blur_sigma,
                         check_background, data_size, describe_background, rows_info)
from .engines import ENGINES_BY_METHOD, Explained, check_differentiable
from .samplers import isolated_rng
from .settings import AttributionSettings

__all__ = ["attribute", "prepare_inputs"]


def _check_values(x: torch.Tensor, what: str, *, maps: bool) -> None:
    """Refuse non-finite values (naming the first bad sample) and, for normalized maps, values outside
    ``[0, 1]`` (images are checked the same way: their documented range is ``[0, 1]`` too)."""
    flat = x.reshape(x.shape[0], -1)
    bad = ~torch.isfinite(flat).all(dim=1)
    if bool(bad.any()):
        j = int(torch.nonzero(bad)[0])
        raise ValueError(f"attribute: {what} are not finite: sample {j} holds "
                         f"{int((~torch.isfinite(flat[j])).sum())} NaN or infinite value(s)")
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        kind = "normalized defocus maps" if maps else "images"
        hint = ("pass images (B, 3, H, W) or maps made by detector.map_from_images / detector.normalize" if maps
                else "scale them to [0, 1] (uint8 images are converted)")
        raise ValueError(f"attribute: {what} are {kind}, documented in [0, 1], but span [{lo:.4g}, {hi:.4g}]; "
                         f"{hint}")


def prepare_inputs(det: nn.Module, inputs: Any, space: str, inputs_are_maps: bool | None, device: torch.device,
                   what: str = "inputs") -> tuple[torch.Tensor, bool]:
    """The explained input on ``device`` (float32) and whether maps were computed from images.

    ``space="defocus"``: maps ``(B, 1, S, S)`` (or ``(B, S, S)``) as they are, images ``(B, 3, H, W)``
    through ``det.map_from_images`` (no gradients); ``inputs_are_maps`` forces the choice. ``space="rgb"``:
    images ``(B, 3, H, W)``. Numpy HWC and uint8 images are converted. Values that are not finite, maps or
    images outside ``[0, 1]`` are refused (``ValueError`` naming ``what``).
    """
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4 and inputs.shape[1] in (1, 3) and \
            inputs.dtype.kind == "f":
        inputs = torch.from_numpy(np.ascontiguousarray(inputs))
    if not torch.is_tensor(inputs):
        from .._images import as_image_batch

        inputs = as_image_batch(inputs, name=what)
    if inputs.ndim == 3 and space == "defocus":
        inputs = inputs.unsqueeze(1)
    if inputs.ndim != 4:
        raise ValueError(f"{what} must be (B, C, H, W), got shape {tuple(inputs.shape)}")
    x = inputs.detach().to(device=device, dtype=torch.float32)
    if space == "rgb":
        if x.shape[1] != 3:
            raise ValueError(f"{what}: space='rgb' explains images (B, 3, H, W), got shape {tuple(x.shape)}")
        _check_values(x, what, maps=False)
        return x, False
    if not uses_maps(det):
        raise ValueError(f"space='defocus' needs a detector that reads defocus maps (forward_map, "
                         f"map_from_images, normalize), got {type(det).__name__}; use space='rgb'")
    maps = inputs_are_maps if inputs_are_maps is not None else x.shape[1] == 1
    if maps:
        if x.shape[1] != 1:
            raise ValueError(f"{what}: defocus maps must be (B, 1, S, S), got shape {tuple(x.shape)}")
        _check_values(x, what, maps=True)
        return x, False
    if x.shape[1] != 3:
        raise ValueError(f"{what}: images must be (B, 3, H, W), got shape {tuple(x.shape)}")
    _check_values(x, what, maps=False)
    with torch.no_grad():
        m = det.map_from_images(x).detach().float()
    _check_values(m, f"the maps the detector made from the {what}", maps=True)
    return m, True


def _background(det: nn.Module, s: AttributionSettings, background: Any, x: torch.Tensor,
                idx: list[int]) -> tuple[torch.Tensor | None, dict]:
    """The background rows on ``x``'s device (None for ``"blur"``: per input) and their record."""
    kind = background_kind(background)
    if kind == "zeros":
        return torch.zeros((1,) + tuple(x.shape[1:]), device=x.device), {"kind": "zeros",
                                                                         "shape": list(x.shape[1:])}
    if kind == "blur":
        sigma = blur_sigma(min(x.shape[-2:]))
        return None, {"kind": "blur", "sigma": sigma, "sigma_fraction": BLUR_FRACTION}
    if kind == "data":
        k = data_size(background, s.background_size)
        if x.shape[0] < 2:
            raise ValueError("attribute: background='data' takes its reference from the inputs themselves (no "
                             "reference data given), and one input would be its own reference (all-zero "
                             "attributions); pass reference inputs as background=, or 'zeros' / 'blur'")
        rows = x[:k]
        return rows, rows_info(rows, {"kind": "data", "source": "explained inputs",
                                      "indices": idx[:rows.shape[0]], "labels": None})
    bg, _ = prepare_inputs(det, background, s.space, None if s.space == "defocus" else False, x.device,
                           what="background")
    if tuple(bg.shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(f"background has shape {tuple(bg.shape)}, inputs {tuple(x.shape)}: "
                         "the per-sample shapes must match")
    return bg, rows_info(bg, {"kind": "given"})


def _run(det: nn.Module, x: torch.Tensor, bg: torch.Tensor | None, idx: list[int], s: AttributionSettings,
         sigma: float | None):
    """The engine on all inputs (one reference), or per input on its blurred copy (``bg`` None)."""
    model = Explained(det, s.space, s.target, s.wrapper)
    engine = ENGINES_BY_METHOD[s.method]
    with isolated_rng(x.device), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*did not already require gradients.*")
        warnings.filterwarnings("ignore", message=".*Setting forward, backward hooks.*")
        if s.space == "rgb" and s.method != "occlusion":
            check_differentiable(model, x[:1], s.method)
        if bg is not None:
            return engine(model, x, bg, idx, s)
        parts = [engine(model, x[i:i + 1], blur(x[i:i + 1], sigma), idx[i:i + 1], s) for i in range(x.shape[0])]
        return torch.cat([p.values for p in parts]), parts[0].params, parts[0].diagnostics


def _check_output(out: torch.Tensor, s: AttributionSettings, idx: list[int]) -> None:
    bad = ~torch.isfinite(out.reshape(out.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        j = int(torch.nonzero(bad)[0])
        raise ValueError(f"attribute: method={s.method!r} (engine {s.engine!r}) returned non-finite attributions "
                         f"for sample {idx[j]} ({int(bad.sum())} of {len(idx)} samples); a detector with NaN "
                         "weights, or an output it cannot differentiate?")


def attribute(detector: nn.Module, inputs: Any, *, method: str = "shap_gradient", space: str = "defocus",
              background: Any = "data", background_size: int = DEFAULT_BACKGROUND_SIZE, wrapper: str | None = None,
              n_samples: int | None = None, n_steps: int | None = None, seed: int = 0, engine: str | None = None,
              sampler: str | None = None, batch_size: int = 16, eval_batch_size: int = 256,
              method_kwargs: dict | None = None, target: int | None = None,
              sample_indices: Sequence[int] | None = None, inputs_are_maps: bool | None = None,
              return_meta: bool = False):
    """Attribute a detector's "fake" logit to its defocus-map or RGB input.

    Parameters
    ----------
    detector : nn.Module
        A map detector (``forward_map``, ``map_from_images``, e.g. ``DefocusDetector``) or, for
        ``space="rgb"``, any model ``images (B, 3, H, W) in [0, 1] -> (B, 1)`` such as ``RGBDetector``.
        Wrappers are unwrapped. It runs in eval mode and is given back in the mode it came in.
    inputs : tensor or array
        ``space="defocus"``: normalized maps ``(B, 1, S, S)`` in ``[0, 1]``, or images ``(B, 3, H, W)``
        in ``[0, 1]`` turned into maps with ``detector.map_from_images`` (no gradients); which one is
        decided by ``inputs_are_maps`` or, when None, by the channel count (1 = maps, 3 = images).
        ``space="rgb"``: images ``(B, 3, H, W)`` float in ``[0, 1]`` (uint8 / numpy HWC converted).
    method : str
        One of :data:`~defocus_xai.explain.settings.METHODS`: ``"shap_gradient"`` (shap's
        GradientExplainer estimand, the paper's choice), ``"gradient_shap"`` (captum's GradientShap
        estimand: the same with input noise ``stdevs``), ``"shap_deep"`` (shap DeepExplainer), and through
        captum ``"integrated_gradients"``, ``"deeplift"``, ``"saliency"``, ``"input_x_gradient"``,
        ``"occlusion"``.
    space : {"defocus", "rgb"}
        Explain the normalized map or the image.
    background : {"data", "zeros", "blur"}, int or tensor
        The attribution reference (``docs/attribution.md``). ``"data"`` (default): the first
        ``background_size`` inputs themselves (``attribute`` sees no other data; give the paper's kind of
        reference, real training samples, as a tensor, or export with ``background_data=``); an int
        ``k``: ``"data"`` with ``k`` rows; ``"zeros"``: one all-zero input; ``"blur"``: each input's
        own Gaussian-blurred copy (sigma :data:`~defocus_xai.explain.background.BLUR_FRACTION` of the
        side); or reference inputs: maps ``(K, 1, S, S)`` in ``[0, 1]`` (or images ``(K, 3, H, W)``,
        turned into maps) in ``space="defocus"``, images in ``space="rgb"``. shap_gradient, shap_deep
        and gradient_shap integrate over its rows; integrated_gradients, deeplift and occlusion use their
        mean as a single baseline.
    background_size : int
        Rows of the data background (default 10, as the paper).
    wrapper : {"paper224"}, optional
        ``space="defocus"`` only: explain the paper's wrapper (the map resized to 224, min-max
        normalized, then the detector) instead of ``forward_map`` on the map grid. The attributions
        keep the input's grid.
    n_samples : int, optional
        Random draws per sample (shap_gradient, gradient_shap; default 200). Unused by other methods.
    n_steps : int, optional
        Quadrature steps of integrated_gradients (default 50). Unused by other methods.
    seed : int
        Seed of the random draws; sample ``i`` uses ``sample_seed(seed, sample_indices[i])``.
    engine : {"batched", "shap", "captum"}, optional
        For ``shap_gradient`` (all three) and ``gradient_shap`` (``"batched"`` or ``"captum"``); default
        ``"batched"``. See ``docs/attribution.md``.
    sampler : {"stratified", "shap"}, optional
        How ``shap_gradient`` and ``gradient_shap`` draw (background row, t) pairs. ``"stratified"`` (the
        default of the batched engine): every background row equally often and t in jittered strata of
        ``[0, 1]``, the same expectation with a lower variance. ``"shap"`` (the default and only choice of
        the ``"shap"`` and ``"captum"`` engines): independent draws, shap's own with the batched engine.
    batch_size : int
        Samples per step of the per-batch methods.
    eval_batch_size : int
        At most this many inputs per forward/backward pass (bounds memory; does not change values). The
        batched ``shap_gradient`` engine uses at most 64 on the CPU.
    method_kwargs : dict, optional
        ``stdevs`` (gradient_shap), ``abs`` (saliency, default True as captum), ``sliding_window`` /
        ``strides`` (occlusion, default ``S//8`` windows, stride half a window), ``check_additivity``
        (shap_deep, default True), ``local_smoothing`` (shap_gradient, default 0), ``optimize``
        (shap_gradient, batched engine: fold BatchNorm / channels_last, default True), ``method``
        (integrated_gradients' rule, default ``"gausslegendre"``).
    target : int, optional
        Output column to explain; default the single logit (1 output) or column 1 (2 outputs).
    sample_indices : sequence of int, optional
        Indices of the samples in their data set (default ``0..B-1``); they select the random draws.
    inputs_are_maps : bool, optional
        Force the interpretation of ``inputs`` in ``space="defocus"``.
    return_meta : bool
        Also return a JSON-able dict describing the computation: the settings' ``to_meta()`` with the
        resolved reference (``background``: one line for reports and captions, ``background_info``: its
        record), the engine's ``params``, diagnostics and what the inputs were.

    Returns
    -------
    torch.Tensor or (torch.Tensor, dict)
        float32 attributions on the CPU, shaped like the explained input: ``(B, 1, S, S)`` for
        ``space="defocus"``, ``(B, 3, H, W)`` for ``space="rgb"`` (all three channels).

    Raises
    ------
    ValueError
        Unknown method / space / engine / background, wrong shapes, inputs or background that are not
        finite, maps or images outside ``[0, 1]``, non-finite attributions (naming the sample), or a
        method that cannot handle a layer of the model (the message names the method and the layer).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.detect import DefocusDetector
    >>> det = DefocusDetector("small-cnn", estimator={"size": 32})
    >>> a, meta = attribute(det, torch.rand(3, 1, 32, 32), method="integrated_gradients", n_steps=16,
    ...                     background="zeros", return_meta=True)
    >>> tuple(a.shape), meta["background"]
    ((3, 1, 32, 32), 'zeros: one all-zero input (1, 32, 32)')
    """
    s = AttributionSettings(method=method, space=space, background="zeros", background_size=background_size,
                            wrapper=wrapper, n_samples=n_samples, n_steps=n_steps, seed=seed, engine=engine,
                            sampler=sampler, batch_size=batch_size, eval_batch_size=eval_batch_size,
                            method_kwargs=method_kwargs or {}, target=target).resolved()
    check_background(background, background_size)
    with borrowed(detector) as det:
        x, from_images = prepare_inputs(det, inputs, space, inputs_are_maps, module_device(det))
        idx = list(range(x.shape[0])) if sample_indices is None else [int(i) for i in sample_indices]
        if len(idx) != x.shape[0]:
            raise ValueError(f"sample_indices has {len(idx)} entries for {x.shape[0]} inputs")
        if x.shape[0] == 0:
            return (torch.zeros(x.shape), {**s.to_meta(), "params": {}}) if return_meta else torch.zeros(x.shape)
        bg, info = _background(det, s, background, x, idx)
        meta = {**s.to_meta(), "background": describe_background(info), "background_info": info, "params": {},
                "inputs": "maps from images (map_from_images)" if from_images else
                ("maps" if space == "defocus" else "images")}
        out, meta["params"], diagnostics = _run(det, x, bg, idx, s, info.get("sigma"))
        meta.update(diagnostics)
    _check_output(out, s, idx)
    return (out, meta) if return_meta else out
