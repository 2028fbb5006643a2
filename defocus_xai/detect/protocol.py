"""What every detector offers, and the helpers that borrow one without changing it.

The library's functions that take a detector (attribution, export, features, sanity checks, training,
evaluation) rely on this interface only; see ``docs/detectors.md`` for the long form.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Protocol, runtime_checkable

import torch
from torch import nn

from .._device import module_device, resolve_device

__all__ = ["Detector", "MapDetector", "unwrap", "uses_maps", "borrowed"]


@runtime_checkable
class Detector(Protocol):
    """A real/fake classifier: images in ``[0, 1]`` -> one logit per image (positive means *fake*).

    Attributes
    ----------
    identity : dict
        Name, architecture and checksum of the weights (recorded in exports and reports).
    input_size : int or None
        The square grid the model resizes its input to (``None``: any size).

    Methods
    -------
    forward(images) -> (B, 1) logits
        Differentiable from the images to the logit.
    prepare(images) -> tuple of tensors
        The model's inputs computed from images (no trainable parameter; cacheable).
    forward_prepared(*inputs) -> (B, 1) logits
        ``forward(images) == forward_prepared(*prepare(images))``.
    predict_proba(images, *, batch_size=None) -> (B,) probabilities of *fake*.
    """

    identity: dict

    @property
    def input_size(self) -> int | None: ...

    def prepare(self, images: Any) -> tuple: ...

    def forward_prepared(self, *inputs: torch.Tensor) -> torch.Tensor: ...

    def predict_proba(self, images: Any, *, batch_size: int | None = None) -> torch.Tensor: ...


@runtime_checkable
class MapDetector(Detector, Protocol):
    """A detector that reads a defocus map: adds the map path used by attributions on the map.

    Methods
    -------
    map_from_images(images) -> (B, 1, H, W)
        The normalized defocus map the backbone sees, in ``[0, 1]``.
    forward_map(maps) -> (B, 1) logits
        The classifier on normalized maps (differentiable in ``maps``).
    normalize(sigma) -> (B, 1, H, W)
        Sigma maps in pixels -> the normalized maps of ``forward_map``.
    """

    def map_from_images(self, images: Any) -> torch.Tensor: ...

    def forward_map(self, maps: torch.Tensor) -> torch.Tensor: ...

    def normalize(self, sigma: torch.Tensor) -> torch.Tensor: ...


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``DataParallel`` / ``DistributedDataParallel`` / ``torch.compile`` wrappers.

    Examples
    --------
    >>> m = nn.Linear(2, 1)
    >>> unwrap(nn.DataParallel(m)) is m
    True
    """
    for _ in range(10):
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            break
    return model


def uses_maps(detector: nn.Module) -> bool:
    """Whether ``detector`` (after :func:`unwrap`) reads defocus maps (offers :class:`MapDetector`).

    Examples
    --------
    >>> uses_maps(nn.Linear(2, 1))
    False
    """
    return isinstance(unwrap(detector), MapDetector)


@contextlib.contextmanager
def borrowed(model: nn.Module, device: Any = None, *, train: bool = False) -> Iterator[nn.Module]:
    """Use a caller's model and give it back as it came: same device, same train/eval mode per module.

    Parameters
    ----------
    model : nn.Module
        The caller's model (wrappers are removed with :func:`unwrap`).
    device : str, torch.device or None
        Where to run; ``None`` keeps the model's own device.
    train : bool
        Put the model in training mode inside the block (default: evaluation mode).

    Yields
    ------
    nn.Module
        The unwrapped model on ``device`` in the requested mode.

    Examples
    --------
    >>> m = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    >>> with borrowed(m) as inner:
    ...     inner.training
    False
    >>> m.training
    True
    """
    inner = unwrap(model)
    modes = [(m, m.training) for m in inner.modules()]
    home = module_device(inner)
    target = resolve_device(device, like=inner)
    if target != home:
        inner.to(target)
    inner.train(train)
    try:
        yield inner
    finally:
        for m, mode in modes:
            m.training = mode
        if target != home:
            inner.to(home)
