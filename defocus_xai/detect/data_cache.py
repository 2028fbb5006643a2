"""Data for training and evaluation: batches of labelled images, in-memory data sets, cached model inputs.

Why and how the inputs are cached is explained in ``docs/detectors.md`` ("Training and evaluation").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._device import resolve_device
from .protocol import borrowed

__all__ = ["prepare_inputs", "PreparedData", "MemoryDataset", "materialize"]


def progress_bar(iterable, *, enabled: bool, **kwargs):
    """``iterable`` wrapped in a progress bar when ``enabled`` and someone can see it (``_progress``)."""
    from .._progress import progress

    return progress(iterable, enabled=enabled, **kwargs)


def _as_item(s, k: int) -> dict:
    """A data set item (dict with ``image`` and ``label``, or an ``(image, label)`` pair) -> a checked dict."""
    if isinstance(s, dict):
        img, lab, fam, idx = s["image"], s["label"], s.get("family"), s.get("index")
    elif isinstance(s, (tuple, list)) and len(s) >= 2:
        img, lab, fam, idx = s[0], s[1], None, None
    else:
        raise TypeError(f"data set items must be dicts with 'image' and 'label' (or (image, label) pairs), "
                        f"got {type(s).__name__}")
    lab = int(lab)
    if lab not in (0, 1):
        raise ValueError(f"label must be 0 (real) or 1 (fake), got {lab} (item {idx if idx is not None else k})")
    fam = ("real" if lab == 0 else "fake") if fam is None else str(fam)
    return {"image": torch.as_tensor(img), "label": lab, "family": fam, "index": -1 if idx is None else int(idx)}


def collate_labelled(samples: Sequence) -> dict:
    """Batch labelled items with :func:`defocus_xai.data.collate`, keeping image, label, family and index."""
    from ..data import collate

    return collate([_as_item(s, k) for k, s in enumerate(samples)])


def loader(data: Dataset, batch_size: int, *, num_workers: int = 0, **kwargs) -> DataLoader:
    """A ``DataLoader`` over labelled items (in order unless ``shuffle=True`` is given)."""
    return DataLoader(data, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_labelled, **kwargs)


class MemoryDataset(Dataset):
    """A data set held in memory: uint8 images ``(N, 3, H, W)``, labels and families.

    Made by :func:`materialize`; items are dicts ``image`` (uint8 ``(3, H, W)``), ``label``, ``family``,
    ``index``. 8-bit storage is lossless for 8-bit sources (DefocusSynth quantizes to 8 bits).

    Examples
    --------
    >>> mem = MemoryDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), [0, 1], ["real", "splice"])
    >>> mem[1]["family"], len(mem)
    ('splice', 2)
    """

    def __init__(self, images: torch.Tensor, labels, families, *, meta: dict | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.label_array = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.families = [str(f) for f in families]
        if not (len(self.images) == len(self.label_array) == len(self.families)):
            raise ValueError("images, labels and families differ in length")
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": int(self.label_array[i]), "family": self.families[i],
                "index": int(i)}


def materialize(data: Dataset, *, batch_size: int = 32, num_workers: int = 0, progress: bool = True,
                desc: str = "load") -> MemoryDataset:
    """Read a whole data set once into a :class:`MemoryDataset` (images quantized to uint8).

    Useful when several models train on one rendered DefocusSynth set: rendering happens once
    (in ``num_workers`` processes).

    Examples
    --------
    >>> from defocus_xai.data.synth import DefocusSynth          # doctest: +SKIP
    >>> mem = materialize(DefocusSynth(64, size=64), progress=False)  # doctest: +SKIP
    """
    from .._images import as_image_batch

    images, labels, families = [], [], []
    for batch in progress_bar(loader(data, batch_size, num_workers=num_workers), enabled=progress, desc=desc,
                              unit="batch"):
        x = as_image_batch(batch["image"])
        images.append((x * 255.0).round().clamp(0, 255).to(torch.uint8))
        labels.append(batch["label"])
        families += batch["family"]
    return MemoryDataset(torch.cat(images), torch.cat(labels), families, meta={"source": repr(data), "n": len(data)})


@dataclass
class PreparedData:
    """Cached model inputs (float16 on the CPU) with labels and families; see :func:`prepare_inputs`."""

    inputs: tuple
    labels: torch.Tensor
    families: list

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@torch.no_grad()
def prepare_inputs(detector: nn.Module, data: Dataset, *, batch_size: int = 64, device=None, num_workers: int = 0,
                   progress: bool = True, desc: str = "prepare", dtype=torch.float16) -> PreparedData:
    """Compute ``detector.prepare(images)`` for a whole data set once (maps and/or resized images).

    The detector is given back as it came (device and mode).

    Parameters
    ----------
    detector : detector
        A :class:`~defocus_xai.detect.DefocusDetector`, ``RGBDetector`` or ``TwoBranchDetector``.
    data : Dataset
        Items with ``image`` and ``label`` (and optionally ``family``).
    device : str or torch.device, optional
        Where to compute; default ``"cuda"`` when available, else ``"cpu"``.
    dtype : torch.dtype
        Storage dtype of the cache (float16 by default; float32 to keep full precision).

    Returns
    -------
    PreparedData
        ``inputs`` (one tensor per input of ``forward_prepared``), ``labels``, ``families``.

    Examples
    --------
    >>> from defocus_xai.data.synth import DefocusSynth
    >>> from defocus_xai.detect import RGBDetector
    >>> p = prepare_inputs(RGBDetector(input_size=32), DefocusSynth(4, size=48), progress=False)
    >>> tuple(p.inputs[0].shape), p.inputs[0].dtype, p.families
    ((4, 3, 32, 32), torch.float16, ['real', 'no_dof', 'real', 'splice'])
    """
    parts: list[list[torch.Tensor]] = []
    labels, families = [], []
    with borrowed(detector, resolve_device(device)) as det:
        batches = loader(data, batch_size, num_workers=num_workers)
        for batch in progress_bar(batches, enabled=progress, desc=desc, unit="batch"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # edgeless samples are flagged per batch
                prepared = det.prepare(batch["image"].to(det.device))
            if not parts:
                parts = [[] for _ in prepared]
            for store, t in zip(parts, prepared):
                store.append(t.detach().to("cpu", dtype))
            labels.append(batch["label"])
            families += batch["family"]
    if not labels:
        raise ValueError("the data set is empty")
    return PreparedData(tuple(torch.cat(p) for p in parts), torch.cat(labels), families)


def seeded(*parts: int) -> torch.Generator:
    """A ``torch.Generator`` seeded from integers (``(seed, epoch)`` ...)."""
    seed = int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def index_batches(n: int, batch_size: int, gen: torch.Generator | None) -> list:
    """Index batches over ``n`` items: shuffled by ``gen`` (a trailing batch of one dropped), else in order."""
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    chunks = list(torch.split(order, batch_size))
    if gen is not None and len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks = chunks[:-1]  # BatchNorm cannot train on a batch of one
    return chunks
