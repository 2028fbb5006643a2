"""One entry point for attributions of defocus and RGB detectors, over shap and captum.

:func:`attribute` explains a detector's "fake" logit either with respect to its normalized defocus map
(``space="defocus"``, what the paper plots) or with respect to the RGB image (``space="rgb"``).

Which parts carry gradients in ``space="rgb"`` for a :class:`~defocus_xai.detect.models.DefocusDetector`
    image -> gray -> Gaussian-derivative filters -> **edge selection** -> sparse sigma at the edges ->
    guided-filter (or matting) propagation -> normalization -> backbone. The edge map (Canny:
    non-maximum suppression, thresholds, hysteresis) is a hard selection computed from detached
    gradients: it has no derivative, so an attribution says how the logit changes when blur *at the
    selected edges* and the guide image change, not when edges appear or vanish. The ratio of
    derivative magnitudes (sparse sigma), the propagation, the clamp to ``[0, sigma_max]`` (zero
    gradient where clamped) and the min-max normalization are differentiable. The ``"reference"``
    recipe runs scikit-image's Canny on the CPU; it is differentiable in the same places only if its
    implementation keeps the torch graph, and a clear error says so otherwise.

Randomness
    ``shap_gradient`` and ``gradient_shap`` draw background samples and interpolation points. The draws
    of sample ``i`` come from :func:`sample_seed` ``(seed, sample_indices[i])`` only, so the values do not
    depend on the batch size, on which other samples are in the call, on sharding or on resuming. numpy's
    and torch's global random states are saved and restored around every call (shap's ``rseed`` reseeds
    numpy globally, captum draws from numpy's and torch's global generators).

Engines of ``shap_gradient``
    All three compute shap's expected-gradients estimator: for sample ``x``, ``n_samples`` draws of a
    background row ``b`` (uniform over the rows) and ``t ~ U(0, 1)``; the attribution is the mean over the
    draws of ``grad f(b + t (x - b)) * (x - b)``.

    ``engine="batched"`` (default): our vectorized implementation of that estimator. The draws of sample
    ``i`` are *shap's own draws* for ``rseed=sample_seed(seed, index)`` (the same numpy stream, in the same
    order: background row then ``t``, per draw), so the values equal those of the reference per-image loop
    ``explainer.shap_values(x[i:i+1], nsamples=n, rseed=sample_seed(seed, i))`` up to float rounding
    (tested to ``rtol=1e-5``; on a trained detector, where float32 rounding flips a few ReLU masks, about
    3e-4 relative, no further from a float64 evaluation of the same draws than shap's own float32 values
    are: see ``docs/npz_format.md``). The draws of all samples of a call are flattened into rows
    ``(sample, draw)`` and evaluated in passes of at most ``eval_batch_size`` rows (64 on the CPU, where
    larger passes fall out of the cache and run slower): one forward and one ``autograd.grad`` per pass,
    no per-sample explainer call, no numpy round trip. The gradients run on a private copy of the
    detector with every ``Conv2d -> BatchNorm2d`` pair of an ``nn.Sequential`` folded into one
    convolution (eval mode: the same function), parameters frozen, ``channels_last`` weights and in-place
    ReLUs (kept only where autograd accepts them and the input gradients are unchanged); the copy
    is checked against the detector on the first inputs (else the detector itself is used) and cached
    until the detector's parameters change. ``method_kwargs={"optimize": False}`` switches the copy off.
    ``meta["params"]`` names what was applied.

    ``engine="shap"``: :class:`shap.GradientExplainer`, called once per sample with
    ``rseed=sample_seed(seed, index)``: the reference code path itself (slower; kept to check the
    batched engine and for users who want shap's code). ``engine="captum"``:
    :class:`captum.attr.GradientShap` (the same expected-gradients estimator), per sample with numpy
    seeded from the same seed; equal to shap in expectation, not draw for draw.

    ``local_smoothing`` (``method_kwargs``, default 0): Gaussian noise of that standard deviation added to
    ``x`` for each draw, as shap does. shap draws it from torch's global generator, which it does not seed;
    both the shap and the batched engine seed it with ``sample_seed(seed, index)`` (the global state is
    restored afterwards), so the two engines agree with it too.

Examples
--------
>>> import torch
>>> from defocus_xai.detect.models import DefocusDetector
>>> det = DefocusDetector("small-cnn", estimator={"size": 32}).eval()
>>> maps = torch.rand(2, 1, 32, 32)
>>> attribute(det, maps, method="saliency").shape
torch.Size([2, 1, 32, 32])
>>> attribute(det, maps, method="shap_gradient", n_samples=8, seed=1).shape
torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import warnings
import weakref
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._device import module_device

__all__ = ["attribute", "METHODS", "SPACES", "ENGINES", "DEFAULT_N_SAMPLES", "sample_seed", "unwrap",
           "describe_background"]

METHODS = ("shap_gradient", "shap_deep", "gradient_shap", "integrated_gradients", "deeplift", "saliency",
           "input_x_gradient", "occlusion")
"""Names accepted by ``attribute(method=...)``."""

SPACES = ("defocus", "rgb")
ENGINES = ("batched", "shap", "captum")

DEFAULT_N_SAMPLES = {"shap_gradient": 200, "gradient_shap": 200, "integrated_gradients": 50}
"""Default ``n_samples`` (shap's ``nsamples``; integrated gradients' ``n_steps``)."""

_SAMPLING = ("shap_gradient", "gradient_shap")
_CAPTUM_DRAW_BLOCK = 64  # draws per captum GradientShap call (part of the definition of its values)

# Leaf modules whose DeepLift rules shap / captum implement (or that are linear / pass-through).
_LINEAR_OK = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
              nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.AvgPool1d, nn.AvgPool2d,
              nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten,
              nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout3d)


def sample_seed(seed: int, index: int) -> int:
    """The 32-bit seed of the random draws of sample ``index`` under the user's ``seed``.

    Derived with :class:`numpy.random.SeedSequence` from ``(seed, index)``; pass it as shap's ``rseed`` to
    reproduce a value of :func:`attribute` with a direct ``shap.GradientExplainer`` call.

    Examples
    --------
    >>> sample_seed(0, 5) == sample_seed(0, 5) != sample_seed(0, 6)
    True
    """
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``DataParallel`` / ``DistributedDataParallel`` (any depth)."""
    for _ in range(10):
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            break
    return model


@contextlib.contextmanager
def _isolated_rng(device: torch.device):
    """Save numpy's and torch's global RNG states and restore them on exit."""
    np_state = np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, t in modes.items():
            m.training = t


class _Explained(nn.Module):
    """``x -> (B, 1)``: the selected logit of the detector as a function of the explained input."""

    def __init__(self, detector: nn.Module, space: str, target: int | None):
        super().__init__()
        self.detector = detector
        self.space = space
        self.target = target

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        det = self.detector
        if self.space == "defocus":
            return det.forward_map(x)
        if hasattr(det, "forward_map") and hasattr(det, "estimator") and hasattr(det, "normalize"):
            # through the (partly) differentiable estimator; map_from_images runs it under no_grad
            return det.forward_map(det.normalize(det.estimator(x).dense.float()))
        return det(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.raw(x)
        if out.ndim == 1:
            out = out[:, None]
        out = out.reshape(out.shape[0], -1)
        t = self.target
        if t is None:
            t = 0 if out.shape[1] == 1 else 1
        if not 0 <= t < out.shape[1]:
            raise ValueError(f"target={t} out of range for a model with {out.shape[1]} outputs")
        return out[:, t:t + 1]


def _is_detector_with_maps(det: nn.Module) -> bool:
    return hasattr(det, "forward_map") and hasattr(det, "map_from_images")


def _prepare_inputs(det: nn.Module, inputs: Any, space: str, inputs_are_maps: bool | None,
                    device: torch.device, what: str = "inputs") -> tuple[torch.Tensor, bool]:
    """Return the explained input on ``device`` and whether maps were computed from images."""
    if not torch.is_tensor(inputs):
        if isinstance(inputs, np.ndarray) and inputs.ndim == 4 and inputs.shape[1] in (1, 3) and \
                inputs.dtype.kind == "f":
            inputs = torch.from_numpy(np.ascontiguousarray(inputs))
        else:
            from .._images import as_image_batch

            inputs = as_image_batch(inputs)
    if inputs.ndim != 4:
        raise ValueError(f"{what} must be (B, C, H, W), got shape {tuple(inputs.shape)}")
    x = inputs.detach().to(device=device, dtype=torch.float32)
    if space == "defocus":
        if not _is_detector_with_maps(det):
            raise ValueError(f"space='defocus' needs a detector with forward_map/map_from_images, got "
                             f"{type(det).__name__}; use space='rgb'")
        maps = inputs_are_maps if inputs_are_maps is not None else x.shape[1] == 1
        if maps:
            if x.shape[1] != 1:
                raise ValueError(f"{what}: defocus maps must be (B, 1, S, S), got shape {tuple(x.shape)}")
            return x, False
        if x.shape[1] != 3:
            raise ValueError(f"{what}: images must be (B, 3, H, W), got shape {tuple(x.shape)}")
        with torch.no_grad():
            return det.map_from_images(x).detach().float(), True
    if x.shape[1] != 3:
        raise ValueError(f"{what}: space='rgb' explains images (B, 3, H, W), got shape {tuple(x.shape)}")
    return x, False


def describe_background(background: torch.Tensor | None, kind: str, shape: Sequence[int], *,
                        source: str | None = None) -> str:
    """A short, reproducible description of a background set (count, shape, sha1 of the values)."""
    if background is None:
        return f"zeros {kind} {tuple(int(s) for s in shape)}"
    b = background.detach().float().cpu().contiguous().numpy()
    digest = hashlib.sha1(b.tobytes()).hexdigest()[:12]
    src = f" from {source}" if source else ""
    return f"{b.shape[0]} {kind}{src}, shape {tuple(b.shape[1:])}, sha1 {digest}"


def _check_layers(model: nn.Module, probe: torch.Tensor, method: str) -> None:
    """Raise when a leaf module used in the forward pass is not handled by a DeepLift-style method."""
    fired: dict[str, tuple[nn.Module, int]] = {}
    handles = []
    names = {m: (n[len("detector."):] if n.startswith("detector.") else n) for n, m in model.named_modules()}

    def hook(mod, _inp, _out):
        n = names.get(mod, type(mod).__name__)
        fired[n] = (mod, fired.get(n, (mod, 0))[1] + 1)

    for m in model.modules():
        if not list(m.children()):
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    if method == "shap_deep":
        from shap.explainers._deep.deep_pytorch import op_handler

        ok = lambda m: type(m).__name__ in op_handler  # noqa: E731
    else:
        from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

        ok = lambda m: isinstance(m, _LINEAR_OK) or type(m) in SUPPORTED_NON_LINEAR  # noqa: E731
    for name, (mod, count) in fired.items():
        if getattr(mod, "inplace", False) is True:
            raise ValueError(f"method={method!r} cannot handle layer {name!r} ({type(mod).__name__} with "
                             "inplace=True): in-place activations break its hooks; use "
                             "defocus_xai.detect.backbones.make_attributable(model)")
        if not ok(mod):
            raise ValueError(f"method={method!r} cannot handle layer {name!r} of type {type(mod).__name__}: "
                             "no DeepLift rule for it; use a gradient method (shap_gradient, "
                             "integrated_gradients, ...)")
        if count > 1 and method == "deeplift":
            raise ValueError(f"method={method!r} cannot handle layer {name!r} ({type(mod).__name__}): the "
                             "module is used more than once in the forward pass")


def _chunks(n: int, size: int):
    for s in range(0, n, size):
        yield s, min(n, s + size)


def attribute(detector: nn.Module, inputs: Any, *, method: str = "shap_gradient", space: str = "defocus",
              background: Any = None, n_samples: int | None = None, seed: int = 0, batch_size: int = 16,
              target: int | None = None, sample_indices: Sequence[int] | None = None,
              inputs_are_maps: bool | None = None, engine: str | None = None, eval_batch_size: int = 256,
              method_kwargs: dict | None = None, return_meta: bool = False):
    """Attribute a detector's "fake" logit to its defocus-map or RGB input.

    Parameters
    ----------
    detector : nn.Module
        A ``DefocusDetector`` (``forward_map``, ``map_from_images``) or, for ``space="rgb"``, any model
        ``images (B, 3, H, W) in [0, 1] -> (B, 1)`` such as ``RGBDetector``. ``DataParallel`` / DDP
        wrappers are unwrapped. The model runs in eval mode (its modes are restored afterwards).
    inputs : tensor or array
        ``space="defocus"``: normalized maps ``(B, 1, S, S)`` in ``[0, 1]``, or images ``(B, 3, H, W)``
        in ``[0, 1]`` turned into maps with ``detector.map_from_images`` (no gradients). Which one is
        decided by ``inputs_are_maps`` or, when None, by the channel count (1 = maps, 3 = images).
        ``space="rgb"``: images ``(B, 3, H, W)`` float in ``[0, 1]`` (uint8 / numpy HWC accepted and
        converted).
    method : str
        One of :data:`METHODS`: ``"shap_gradient"`` (shap GradientExplainer, the paper's choice),
        ``"shap_deep"`` (shap DeepExplainer), and through captum ``"gradient_shap"``,
        ``"integrated_gradients"``, ``"deeplift"``, ``"saliency"``, ``"input_x_gradient"``,
        ``"occlusion"``.
    space : {"defocus", "rgb"}
        Explain the normalized map or the image (see the module documentation for which parts of the
        estimator carry gradients).
    background : tensor, optional
        Reference inputs: maps ``(K, 1, S, S)`` (or images ``(K, 3, H, W)``, turned into maps, in
        ``space="defocus"``), images in ``space="rgb"``. Default: one all-zero input. Used by
        shap_gradient, shap_deep and gradient_shap as the distribution to integrate over; by
        integrated_gradients, deeplift and occlusion as a single baseline (their mean).
    n_samples : int, optional
        Draws per sample (shap_gradient, gradient_shap; default 200) or integration steps
        (integrated_gradients; default 50). Ignored by the other methods.
    seed : int
        Seed of the random draws; sample ``i`` uses :func:`sample_seed` ``(seed, sample_indices[i])``.
    batch_size : int
        Samples per step for the batched methods.
    target : int, optional
        Output column to explain; default the single logit (1 output) or column 1 (2 outputs).
    sample_indices : sequence of int, optional
        Indices of the samples in their data set (default ``0..B-1``); they select the random draws.
    inputs_are_maps : bool, optional
        Force the interpretation of ``inputs`` in ``space="defocus"``.
    engine : {"batched", "shap", "captum"}, optional
        For ``shap_gradient`` only (default ``"batched"``); see the module documentation.
    eval_batch_size : int
        At most this many inputs per forward/backward pass (bounds memory; does not change values). The
        batched ``shap_gradient`` engine uses at most 64 on the CPU.
    method_kwargs : dict, optional
        Extra parameters: ``stdevs`` (gradient_shap), ``abs`` (saliency, default True as captum),
        ``sliding_window`` / ``strides`` (occlusion, default ``S//8`` windows, stride half a window),
        ``check_additivity`` (shap_deep, default True), ``local_smoothing`` (shap_gradient, default 0),
        ``optimize`` (shap_gradient, batched engine: fold BatchNorm / channels_last, default True),
        ``method`` (integrated_gradients' rule, default ``"gausslegendre"``).
    return_meta : bool
        Also return a JSON-able dict describing the computation (stored in export metadata).

    Returns
    -------
    torch.Tensor or (torch.Tensor, dict)
        float32 attributions on the CPU, shaped like the explained input: ``(B, 1, S, S)`` for
        ``space="defocus"``, ``(B, 3, H, W)`` for ``space="rgb"`` (all three channels).

    Raises
    ------
    ValueError
        Unknown method / space / engine, wrong shapes, or a method that cannot handle a layer of the
        model (the message names the method and the layer).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.detect.models import DefocusDetector
    >>> det = DefocusDetector("small-cnn", estimator={"size": 32})
    >>> a = attribute(det, torch.rand(3, 1, 32, 32), method="integrated_gradients", n_samples=16)
    >>> tuple(a.shape)
    (3, 1, 32, 32)
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; choose one of {SPACES}")
    if engine is None:
        engine = "batched" if method == "shap_gradient" else ("captum" if method != "shap_deep" else "shap")
    if method == "shap_gradient" and engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} for shap_gradient; choose one of {ENGINES}")
    if method != "shap_gradient" and engine != ("shap" if method == "shap_deep" else "captum"):
        raise ValueError(f"method {method!r} has no engine {engine!r}")
    if int(batch_size) < 1 or int(eval_batch_size) < 1:
        raise ValueError(f"batch_size and eval_batch_size must be >= 1, got {batch_size}, {eval_batch_size}")
    kw = dict(method_kwargs or {})
    det = unwrap(detector)
    device = module_device(det)
    x, from_images = _prepare_inputs(det, inputs, space, inputs_are_maps, device)
    b = x.shape[0]
    idx = list(range(b)) if sample_indices is None else [int(i) for i in sample_indices]
    if len(idx) != b:
        raise ValueError(f"sample_indices has {len(idx)} entries for {b} inputs")
    if n_samples is None:
        n_samples = DEFAULT_N_SAMPLES.get(method, 0)
    n_samples = int(n_samples)
    if method in _SAMPLING or method == "integrated_gradients":
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1 for {method}, got {n_samples}")
    # background
    bg_given = background is not None
    if bg_given:
        bg, _ = _prepare_inputs(det, background, space, None if space == "defocus" else False, device,
                                what="background")
        if tuple(bg.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"background has shape {tuple(bg.shape)}, inputs {tuple(x.shape)}: "
                             "the per-sample shapes must match")
    else:
        bg = torch.zeros((1,) + tuple(x.shape[1:]), device=device)
    kind = "maps" if space == "defocus" else "images"
    bg_desc = describe_background(bg if bg_given else None, kind, x.shape[1:])
    model = _Explained(det, space, target)
    meta = {"space": space, "method": method, "engine": engine, "n_samples": n_samples if (
        method in _SAMPLING or method == "integrated_gradients") else None, "seed": int(seed),
            "background": bg_desc, "target": target, "params": {}}
    out = torch.zeros(x.shape, dtype=torch.float32)
    if b == 0:
        return (out, meta) if return_meta else out
    with _eval_mode(det), _isolated_rng(device):
        if space == "rgb" and method not in ("occlusion",):
            _check_differentiable(model, x[:1], method)
        fn = _RUNNERS[method]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*did not already require gradients.*")
            warnings.filterwarnings("ignore", message=".*Setting forward, backward hooks.*")
            fn(model, x, bg, idx, out, meta, n_samples=n_samples, seed=int(seed), batch_size=int(batch_size),
               eval_batch_size=int(eval_batch_size), engine=engine, kw=kw)
    meta["inputs"] = "maps from images (map_from_images)" if from_images else kind
    return (out, meta) if return_meta else out


def _check_differentiable(model: nn.Module, x1: torch.Tensor, method: str) -> None:
    probe = x1.clone().requires_grad_(True)
    with torch.enable_grad():
        y = model(probe)
    if not y.requires_grad:
        raise ValueError(f"method={method!r}, space='rgb': the output does not depend differentiably on the "
                         f"image for this detector ({type(model.detector).__name__}; e.g. an estimator "
                         "recipe computed outside torch); use space='defocus' or method='occlusion'")


# ------------------------------------------------------------------------------------------- runners


_CPU_ROWS = 64  # rows (sample, draw) per pass of the batched engine on the CPU (cache-sized; see bench/)
_FAST_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _state_key(module: nn.Module) -> tuple:
    """Changes when a parameter or buffer of ``module`` is replaced or modified in place."""
    return tuple((name, t.data_ptr(), t._version, str(t.device), t.dtype, tuple(t.shape))
                 for name, t in list(module.named_parameters()) + list(module.named_buffers()))


def _fold_batchnorm(module: nn.Module) -> int:
    """Fold every ``Conv2d -> BatchNorm2d`` pair inside an ``nn.Sequential`` of ``module`` (in place, eval
    mode: the same function). Returns the number of folded pairs."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    n = 0
    for seq in list(module.modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        keys = list(seq._modules.keys())
        for a, b in zip(keys[:-1], keys[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats and \
                    bn.running_mean is not None and conv.out_channels == bn.num_features:
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
                n += 1
    return n


def _fast_detector(det: nn.Module, space: str, target, probe: torch.Tensor) -> tuple[nn.Module, list]:
    """A frozen copy of ``det`` for the gradient passes: BatchNorm folded, ``channels_last`` weights.

    Cached per detector until its parameters or buffers change; returns ``(det, [])`` when a copy cannot
    be made or does not reproduce the detector's outputs on ``probe``.
    """
    key = (_state_key(det), space, target)
    hit = _FAST_CACHE.get(det)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    try:
        fast = copy.deepcopy(det)
    except Exception:  # noqa: BLE001  (an uncopyable module: use the detector as it is)
        return det, []
    fast.eval()
    applied = []
    if _fold_batchnorm(fast):
        applied.append("fold_batchnorm")
    if any(p.ndim == 4 for p in fast.parameters()):
        fast = fast.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    for p in fast.parameters():
        p.requires_grad_(False)
    applied.append("frozen_parameters")
    relus = [m for m in fast.modules() if type(m) is nn.ReLU and not m.inplace]
    with torch.no_grad():
        ref = _Explained(det, space, target)(probe)
        got = _Explained(fast, space, target)(probe.contiguous(memory_format=torch.channels_last))
    tol = 1e-4 * (1.0 + float(ref.abs().max()))
    if ref.shape != got.shape or not bool(torch.isfinite(got).all()) or float((ref - got).abs().max()) > tol:
        fast, applied = det, []
    elif relus:
        # in-place ReLUs (one activation tensor less to allocate and write per layer): kept only when
        # autograd accepts them and the input gradients do not change
        z = probe.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        with torch.enable_grad():
            (g0,) = torch.autograd.grad(_Explained(fast, space, target)(z).sum(), z)
            for m in relus:
                m.inplace = True
            try:
                (g1,) = torch.autograd.grad(_Explained(fast, space, target)(z).sum(), z)
                ok = torch.equal(g0, g1)
            except RuntimeError:
                ok = False
        if ok:
            applied.append("inplace_relu")
        else:
            for m in relus:
                m.inplace = False
    _FAST_CACHE[det] = (key, fast, applied)
    return fast, applied


def _shap_draws(rseed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """shap GradientExplainer's draws for ``rseed``: per draw, a background row and then ``t``, from numpy's
    legacy generator (shap seeds the global one with ``np.random.seed(rseed)``; same stream)."""
    rs = np.random.RandomState(rseed)
    rows = np.empty(n, np.int64)
    ts = np.empty(n, np.float64)
    for j in range(n):
        rows[j] = rs.choice(k)
        ts[j] = rs.uniform()
    return rows, ts


def _run_shap_gradient(model, x, bg, idx, out, meta, *, n_samples, seed, batch_size, eval_batch_size, engine,
                       kw):
    local_smoothing = float(kw.get("local_smoothing", 0.0))
    if not local_smoothing >= 0:
        raise ValueError(f"shap_gradient: local_smoothing must be >= 0, got {local_smoothing}")
    if engine == "captum":
        if local_smoothing:
            raise ValueError("shap_gradient: engine='captum' has no local_smoothing; use engine='batched'")
        meta["params"] = {"draws_per_call": _CAPTUM_DRAW_BLOCK, "stdevs": 0.0,
                          "estimator": "expected gradients (captum GradientShap)"}
        return _run_gradient_shap(model, x, bg, idx, out, meta, n_samples=n_samples, seed=seed,
                                  batch_size=batch_size, eval_batch_size=eval_batch_size, engine=engine,
                                  kw={"stdevs": 0.0}, record=False)
    if engine == "batched":
        return _run_shap_gradient_batched(model, x, bg, idx, out, meta, n_samples=n_samples, seed=seed,
                                          eval_batch_size=eval_batch_size, local_smoothing=local_smoothing,
                                          optimize=bool(kw.get("optimize", True)))
    import shap

    explainer = shap.GradientExplainer(model, bg, batch_size=min(eval_batch_size, n_samples),
                                       local_smoothing=local_smoothing)
    meta["params"] = {"rseed": "sample_seed(seed, index)", "local_smoothing": local_smoothing,
                      "shap_version": shap.__version__}
    for i in range(x.shape[0]):
        s = sample_seed(seed, idx[i])
        np.random.seed(s)  # also set by rseed; state restored by the caller
        torch.manual_seed(s)  # local_smoothing noise (shap draws it from torch's global generator)
        vals = explainer.shap_values(x[i:i + 1], nsamples=n_samples, rseed=s)
        out[i] = torch.from_numpy(np.asarray(vals, dtype=np.float32).reshape(x.shape[1:]))


def _run_shap_gradient_batched(model, x, bg, idx, out, meta, *, n_samples, seed, eval_batch_size, local_smoothing,
                               optimize):
    """shap's expected-gradients estimator over all (sample, draw) rows, a bounded pass at a time."""
    b, n, k = x.shape[0], n_samples, bg.shape[0]
    device = x.device
    rows_per_pass = int(eval_batch_size) if device.type != "cpu" else min(int(eval_batch_size), _CPU_ROWS)
    applied: list = []
    net = model
    if optimize:
        probe = torch.cat([bg[:2], x[:2]])
        fast, applied = _fast_detector(model.detector, model.space, model.target, probe)
        net = _Explained(fast, model.space, model.target) if fast is not model.detector else model
    cl = "channels_last" in applied
    meta["params"] = {"rseed": "sample_seed(seed, index)", "local_smoothing": local_smoothing,
                      "draws": "shap GradientExplainer's (numpy legacy stream of rseed: row, then t)",
                      "rows_per_pass": rows_per_pass, "optimizations": applied}
    draws = [_shap_draws(sample_seed(seed, idx[i]), n, k) for i in range(b)]
    bg_rows = torch.from_numpy(np.concatenate([d[0] for d in draws])).to(device)
    t64 = torch.from_numpy(np.concatenate([d[1] for d in draws]))
    t_all = t64.float().to(device)  # shap multiplies float32 tensors by the Python floats t and 1 - t
    omt_all = (1.0 - t64).float().to(device)
    gens = None
    if local_smoothing:
        gens = []
        for i in range(b):
            g = torch.Generator(device=device)
            g.manual_seed(sample_seed(seed, idx[i]))
            gens.append(g)
    view = (-1,) + (1,) * (x.ndim - 1)
    acc = torch.zeros(x.shape, dtype=torch.float64, device=device)
    total = b * n
    with torch.enable_grad():
        for r0 in range(0, total, rows_per_pass):
            r1 = min(total, r0 + rows_per_pass)
            rows = torch.arange(r0, r1, device=device)
            si = torch.div(rows, n, rounding_mode="floor")
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
            y = net(z)
            (g,) = torch.autograd.grad(y.sum(), z)
            prod = g.double() * (xs - base).double()
            acc.index_add_(0, si, prod)
    out.copy_((acc / n).float().cpu())


def _run_gradient_shap(model, x, bg, idx, out, meta, *, n_samples, seed, batch_size, eval_batch_size, engine,
                       kw, record=True):
    from captum.attr import GradientShap

    stdevs = float(kw.get("stdevs", 0.0))
    if record:
        meta["params"] = {"stdevs": stdevs, "draws_per_call": _CAPTUM_DRAW_BLOCK,
                          "rng": "numpy seeded with sample_seed(seed, index) + block"}
    gs = GradientShap(model)
    n_blocks = math.ceil(n_samples / _CAPTUM_DRAW_BLOCK)
    for i in range(x.shape[0]):
        acc = torch.zeros(x.shape[1:], dtype=torch.float64)
        s = sample_seed(seed, idx[i])
        for blk in range(n_blocks):
            m = min(_CAPTUM_DRAW_BLOCK, n_samples - blk * _CAPTUM_DRAW_BLOCK)
            np.random.seed(s if blk == 0 else sample_seed(s, blk))
            torch.manual_seed(s + blk)  # noise (stdevs > 0) is drawn from torch's global RNG
            a = gs.attribute(x[i:i + 1], baselines=bg, n_samples=m, stdevs=stdevs, target=0)
            acc += a[0].detach().double().cpu() * m
        out[i] = (acc / n_samples).float()


def _baseline(bg: torch.Tensor) -> torch.Tensor:
    return bg.mean(0, keepdim=True)


def _run_integrated_gradients(model, x, bg, idx, out, meta, *, n_samples, seed, batch_size, eval_batch_size,
                              engine, kw):
    from captum.attr import IntegratedGradients

    rule = kw.get("method", "gausslegendre")
    meta["params"] = {"n_steps": n_samples, "method": rule, "baseline": "mean of background"}
    ig = IntegratedGradients(model)
    base = _baseline(bg)
    deltas = []
    for s, e in _chunks(x.shape[0], batch_size):
        a, d = ig.attribute(x[s:e], baselines=base.expand_as(x[s:e]), target=0, n_steps=n_samples, method=rule,
                            internal_batch_size=max(e - s, eval_batch_size), return_convergence_delta=True)
        out[s:e] = a.detach().float().cpu()
        deltas.append(d.detach().abs().cpu())
    meta["max_abs_convergence_delta"] = float(torch.cat(deltas).max())


def _run_deeplift(model, x, bg, idx, out, meta, *, n_samples, seed, batch_size, eval_batch_size, engine, kw):
    from captum.attr import DeepLift

    _check_layers(model, bg[:1], "deeplift")
    meta["params"] = {"baseline": "mean of background", "rule": "rescale"}
    dl = DeepLift(model)
    base = _baseline(bg)
    for s, e in _chunks(x.shape[0], batch_size):
        try:
            a = dl.attribute(x[s:e], baselines=base.expand_as(x[s:e]), target=0)
        except (RuntimeError, AssertionError) as err:
            raise ValueError(f"method='deeplift' failed on {type(model.detector).__name__}: {err}") from err
        out[s:e] = a.detach().float().cpu()


def _run_shap_deep(model, x, bg, idx, out, meta, *, n_samples, seed, batch_size, eval_batch_size, engine, kw):
    import shap

    _check_layers(model, bg[:1], "shap_deep")
    check = bool(kw.get("check_additivity", True))
    meta["params"] = {"check_additivity": check, "shap_version": shap.__version__}
    ex = shap.DeepExplainer(model, bg)
    step = max(1, min(batch_size, eval_batch_size // max(1, 2 * bg.shape[0])))
    for s, e in _chunks(x.shape[0], step):
        try:
            vals = ex.shap_values(x[s:e], check_additivity=check)
        except AssertionError as err:
            raise ValueError(f"method='shap_deep': shap's additivity check failed for "
                             f"{type(model.detector).__name__} (functional non-linearities that DeepExplainer "
                             f"cannot see?): {err}") from err
        out[s:e] = torch.from_numpy(np.asarray(vals, dtype=np.float32).reshape((e - s,) + tuple(x.shape[1:])))


def _run_saliency(model, x, bg, idx, out, meta, *, n_samples, seed, batch_size, eval_batch_size, engine, kw):
    from captum.attr import Saliency

    absolute = bool(kw.get("abs", True))
    meta["params"] = {"abs": absolute}
    sal = Saliency(model)
    for s, e in _chunks(x.shape[0], min(batch_size, eval_batch_size)):
        out[s:e] = sal.attribute(x[s:e], target=0, abs=absolute).detach().float().cpu()


def _run_input_x_gradient(model, x, bg, idx, out, meta, *, n_samples, seed, batch_size, eval_batch_size, engine,
                          kw):
    from captum.attr import InputXGradient

    ixg = InputXGradient(model)
    for s, e in _chunks(x.shape[0], min(batch_size, eval_batch_size)):
        out[s:e] = ixg.attribute(x[s:e], target=0).detach().float().cpu()


def _run_occlusion(model, x, bg, idx, out, meta, *, n_samples, seed, batch_size, eval_batch_size, engine, kw):
    from captum.attr import Occlusion

    c, h, w = x.shape[1:]
    win = kw.get("sliding_window", max(1, min(h, w) // 8))
    win = (int(win), int(win)) if np.isscalar(win) else tuple(int(v) for v in win)
    strides = kw.get("strides", (max(1, win[0] // 2), max(1, win[1] // 2)))
    strides = (int(strides), int(strides)) if np.isscalar(strides) else tuple(int(v) for v in strides)
    meta["params"] = {"sliding_window": [c, *win], "strides": [c, *strides], "baseline": "mean of background"}
    occ = Occlusion(model)
    base = _baseline(bg)
    for s, e in _chunks(x.shape[0], batch_size):
        per_eval = max(1, eval_batch_size // (e - s))
        out[s:e] = occ.attribute(x[s:e], sliding_window_shapes=(c, *win), strides=(c, *strides),
                                 baselines=base.expand_as(x[s:e]), target=0,
                                 perturbations_per_eval=per_eval).detach().float().cpu()


_RUNNERS = {
    "shap_gradient": _run_shap_gradient,
    "shap_deep": _run_shap_deep,
    "gradient_shap": _run_gradient_shap,
    "integrated_gradients": _run_integrated_gradients,
    "deeplift": _run_deeplift,
    "saliency": _run_saliency,
    "input_x_gradient": _run_input_x_gradient,
    "occlusion": _run_occlusion,
}
