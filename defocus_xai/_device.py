"""Device resolution in one place: the default device, and the device a module or input lives on."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["resolve_device", "module_device"]


def resolve_device(device: Any = None, *, like: Any = None) -> torch.device:
    """The device to run on.

    Parameters
    ----------
    device : str, torch.device or None
        An explicit choice wins.
    like : torch.Tensor, nn.Module, a list of tensors or None
        Without an explicit ``device``, follow this object's device (a tensor's, a module's first
        parameter's, or the first tensor's of a list).

    Returns
    -------
    torch.device
        ``device``; else the device of ``like``; else ``"cuda"`` when available, ``"cpu"`` otherwise.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device(like=torch.zeros(1))
    device(type='cpu')
    """
    if device is not None:
        return torch.device(device)
    if isinstance(like, torch.Tensor):
        return like.device
    if isinstance(like, nn.Module):
        return module_device(like)
    if isinstance(like, (list, tuple)) and like and isinstance(like[0], torch.Tensor):
        return like[0].device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (else first buffer; CPU for a stateless module).

    Examples
    --------
    >>> module_device(torch.nn.Linear(2, 1))
    device(type='cpu')
    """
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
