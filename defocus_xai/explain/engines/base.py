"""What every engine shares: the explained function (the one place that says what is attributed), the
engine result, chunking, the mean baseline and the layer checks of the DeepLift-type methods."""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ...detect.protocol import uses_maps

__all__ = ["EngineOutput", "Explained", "explained_forward", "paper224", "PAPER_SIZE", "chunks", "mean_baseline",
           "check_layers", "check_differentiable"]

# Leaf modules whose DeepLift rules shap / captum implement (or that are linear / pass-through).
_LINEAR_OK = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
              nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.AvgPool1d, nn.AvgPool2d,
              nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten,
              nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout3d)


class EngineOutput(NamedTuple):
    """What an engine returns: float32 attributions on the CPU shaped like the input, the parameters it
    used (recorded in ``meta["params"]``) and per-call diagnostics (e.g. a convergence delta)."""

    values: torch.Tensor
    params: dict
    diagnostics: dict


PAPER_SIZE = 224
"""The grid the paper's shap wrapper resizes the 299 map to (``wrapper="paper224"``)."""


def paper224(forward_map: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The paper's explained function around ``forward_map``: bilinear resize of the map to 224 x 224
    (``align_corners=False``), per-sample min-max to ``[0, 1]`` (a constant map gives zeros), then
    ``forward_map`` (which repeats the map to the backbone's channels). Differentiable.

    Examples
    --------
    >>> f = paper224(lambda m: m.flatten(1).mean(1, keepdim=True))
    >>> round(float(f(torch.linspace(0, 2, 64).view(1, 1, 8, 8))), 3)
    0.5
    """
    from ...detect import scale_sigma_maps

    def forward(maps: torch.Tensor) -> torch.Tensor:
        z = F.interpolate(maps, size=(PAPER_SIZE, PAPER_SIZE), mode="bilinear", align_corners=False)
        return forward_map(scale_sigma_maps(z, "minmax"))

    return forward


def explained_forward(detector: nn.Module, space: str, wrapper: str | None = None
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function whose output is attributed: normalized maps -> logits (``space="defocus"``; through
    :func:`paper224` with ``wrapper="paper224"``) or images -> logits (``space="rgb"``; through the
    estimator's differentiable parts for a map detector).

    Examples
    --------
    >>> explained_forward(nn.Linear(2, 1), "rgb")(torch.zeros(1, 2)).shape
    torch.Size([1, 1])
    """
    if wrapper not in (None, "paper224"):
        raise ValueError(f"unknown wrapper {wrapper!r}")
    if space == "defocus":
        if not uses_maps(detector):
            raise ValueError(f"space='defocus' needs a detector that reads defocus maps (forward_map, "
                             f"map_from_images, normalize), got {type(detector).__name__}; use space='rgb'")
        return paper224(detector.forward_map) if wrapper == "paper224" else detector.forward_map
    if wrapper is not None:
        raise ValueError(f"wrapper={wrapper!r} wraps the defocus-map function; space='rgb' has none")
    estimator = getattr(detector, "estimator", None)
    if uses_maps(detector) and isinstance(estimator, nn.Module):
        # map_from_images runs the estimator without gradients; here its differentiable parts keep them
        return lambda x: detector.forward_map(detector.normalize(estimator(x).dense.float()))
    return detector


class Explained(nn.Module):
    """``x -> (B, 1)``: the selected logit column of :func:`explained_forward`."""

    def __init__(self, detector: nn.Module, space: str, target: int | None, wrapper: str | None = None):
        super().__init__()
        self.detector = detector
        self.space = space
        self.target = target
        self.wrapper = wrapper
        explained_forward(detector, space, wrapper)  # fail early on a detector that cannot explain this space

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = explained_forward(self.detector, self.space, self.wrapper)(x)
        if out.ndim == 1:
            out = out[:, None]
        out = out.reshape(out.shape[0], -1)
        t = self.target
        if t is None:
            t = 0 if out.shape[1] == 1 else 1
        if not 0 <= t < out.shape[1]:
            raise ValueError(f"target={t} out of range for a model with {out.shape[1]} outputs")
        return out[:, t:t + 1]


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive slices of at most ``size`` out of ``n``.

    Examples
    --------
    >>> list(chunks(5, 2))
    [(0, 2), (2, 4), (4, 5)]
    """
    for s in range(0, n, size):
        yield s, min(n, s + size)


def mean_baseline(bg: torch.Tensor) -> torch.Tensor:
    """The single baseline of the one-reference methods: the mean of the background rows, ``(1, ...)``."""
    return bg.mean(0, keepdim=True)


def _fired_leaves(model: nn.Module, probe: torch.Tensor) -> dict[str, tuple[nn.Module, int]]:
    """Leaf modules that run on ``probe``, with the number of calls, by name (``detector.`` prefix off)."""
    fired: dict[str, tuple[nn.Module, int]] = {}
    names = {m: (n[len("detector."):] if n.startswith("detector.") else n) for n, m in model.named_modules()}

    def hook(mod, _inp, _out):
        n = names.get(mod, type(mod).__name__)
        fired[n] = (mod, fired.get(n, (mod, 0))[1] + 1)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    return fired


def check_layers(model: nn.Module, probe: torch.Tensor, method: str) -> None:
    """Raise ``ValueError`` naming the method and the layer when a leaf module that runs on ``probe`` has no
    DeepLift rule in ``method``'s library, is an in-place activation or (deeplift) runs more than once."""
    if method == "shap_deep":
        from shap.explainers._deep.deep_pytorch import op_handler

        ok = lambda m: type(m).__name__ in op_handler  # noqa: E731
    else:
        from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

        ok = lambda m: isinstance(m, _LINEAR_OK) or type(m) in SUPPORTED_NON_LINEAR  # noqa: E731
    for name, (mod, count) in _fired_leaves(model, probe).items():
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


def check_differentiable(model: Explained, x1: torch.Tensor, method: str) -> None:
    """Raise ``ValueError`` when the explained output does not depend differentiably on the image."""
    probe = x1.clone().requires_grad_(True)
    with torch.enable_grad():
        y = model(probe)
    if not y.requires_grad:
        raise ValueError(f"method={method!r}, space='rgb': the output does not depend differentiably on the "
                         f"image for this detector ({type(model.detector).__name__}; e.g. an estimator "
                         "recipe computed outside torch); use space='defocus' or method='occlusion'")
