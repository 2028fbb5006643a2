"""A frozen, faster copy of a detector for the gradient passes of the batched ``shap_gradient`` engine:
BatchNorm folded into the convolutions, ``channels_last`` weights, in-place ReLUs where autograd allows.
The copy computes the same function (checked on a probe); it is cached until the detector changes."""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn

from .base import Explained

__all__ = ["fast_detector"]

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


def _try_inplace_relu(fast: nn.Module, space: str, target, probe: torch.Tensor) -> bool:
    """Make the ReLUs of ``fast`` in-place when autograd accepts it and the input gradients do not change."""
    relus = [m for m in fast.modules() if type(m) is nn.ReLU and not m.inplace]
    if not relus:
        return False
    z = probe.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with torch.enable_grad():
        (g0,) = torch.autograd.grad(Explained(fast, space, target)(z).sum(), z)
        for m in relus:
            m.inplace = True
        try:
            (g1,) = torch.autograd.grad(Explained(fast, space, target)(z).sum(), z)
            ok = torch.equal(g0, g1)
        except RuntimeError:
            ok = False
    if not ok:
        for m in relus:
            m.inplace = False
    return ok


def fast_detector(det: nn.Module, space: str, target, probe: torch.Tensor) -> tuple[nn.Module, list]:
    """A frozen copy of ``det`` for the gradient passes, and the names of the optimizations applied.

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
    with torch.no_grad():
        ref = Explained(det, space, target)(probe)
        got = Explained(fast, space, target)(probe.contiguous(memory_format=torch.channels_last))
    tol = 1e-4 * (1.0 + float(ref.abs().max()))
    if ref.shape != got.shape or not bool(torch.isfinite(got).all()) or float((ref - got).abs().max()) > tol:
        fast, applied = det, []
    elif _try_inplace_relu(fast, space, target, probe):
        applied.append("inplace_relu")
    _FAST_CACHE[det] = (key, fast, applied)
    return fast, applied
