"""Small torch helpers shared by the subpackages (private)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["module_device"]


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
