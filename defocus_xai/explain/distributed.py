"""The exporter under ``torchrun``: the device of a rank, the process group and its barriers.

Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set, ``WORLD_SIZE > 1``) each rank exports the shard of
its rank; a process group is initialized (``gloo`` on the CPU, ``nccl`` on CUDA) when none exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from .._device import resolve_device

__all__ = ["DistInfo", "rank_device", "dist_setup", "barrier", "dist_teardown"]


@dataclass(frozen=True)
class DistInfo:
    """The rank of this process, the number of processes, and whether we created the process group."""

    rank: int
    world_size: int
    created: bool


def rank_device(device: Any = None) -> torch.device:
    """``device`` resolved with :func:`~defocus_xai._device.resolve_device`; a bare ``cuda`` becomes
    ``cuda:LOCAL_RANK`` under ``torchrun``.

    Examples
    --------
    >>> rank_device("cpu")
    device(type='cpu')
    """
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def dist_setup(device: torch.device, distributed: bool | None) -> DistInfo | None:
    """Initialize torch.distributed from torchrun's environment (unless ``distributed`` is False).

    Returns None outside ``torchrun``; ``distributed=True`` there is an error.
    """
    if distributed is False:
        return None
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) < 2:
        if distributed:
            raise ValueError("distributed=True but RANK / WORLD_SIZE are not set (run under torchrun)")
        return None
    import torch.distributed as dist

    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), created)


def barrier(device: torch.device) -> None:
    """Wait for every rank."""
    import torch.distributed as dist

    if device.type == "cuda":
        dist.barrier(device_ids=[device.index or 0])
    else:
        dist.barrier()


def dist_teardown(info: DistInfo) -> None:
    """Destroy the process group if :func:`dist_setup` created it."""
    if info.created:
        import torch.distributed as dist

        dist.destroy_process_group()
