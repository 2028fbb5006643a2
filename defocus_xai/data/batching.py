"""``collate``: the one batching function for the data sets' dict samples (files and DefocusSynth)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

__all__ = ["collate"]


def collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch dict samples for :class:`torch.utils.data.DataLoader`.

    Tensors are stacked (``image`` to ``(B, 3, H, W)``); integers (``label``, ``index``, DefocusSynth's
    ``seed`` and ``jpeg_quality``) become int64 tensors; everything else (strings, ``render_scene``'s
    ``camera`` and ``layers``) becomes a list. Unlike torch's default collate, tensors of different shapes
    (images of a data set built with ``size=None``) give an error that names the key and the shapes.

    Parameters
    ----------
    batch : sequence of dict
        Samples with the same keys, e.g. items of :class:`~defocus_xai.data.FolderDataset` or
        :class:`~defocus_xai.data.DefocusSynth`.

    Returns
    -------
    dict
        One entry per key of the first sample.

    Raises
    ------
    ValueError
        The batch is empty, or a tensor key has different shapes across samples.

    Examples
    --------
    >>> from defocus_xai.data import DefocusSynth, collate
    >>> ds = DefocusSynth(2, size=32)
    >>> b = collate([ds[0], ds[1]])
    >>> tuple(b["image"].shape), b["label"].tolist(), b["family"][0]
    ((2, 3, 32, 32), [0, 1], 'real')
    """
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key in batch[0]:
        vals = [item[key] for item in batch]
        if isinstance(vals[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in vals}
            if len(shapes) > 1:
                raise ValueError(
                    f"{key!r} tensors in the batch have different shapes {sorted(shapes)}; give the dataset a "
                    "size= (e.g. size=299) to resize images, or use batch_size=1"
                )
            out[key] = torch.stack(vals)
        elif isinstance(vals[0], (int, np.integer)) and not isinstance(vals[0], bool):
            out[key] = torch.tensor([int(v) for v in vals], dtype=torch.int64)
        else:
            out[key] = list(vals)
    return out
