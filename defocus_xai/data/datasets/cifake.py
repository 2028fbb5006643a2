"""``CIFAKEDataset``: the CIFAKE layout (``root/<split>/REAL`` and ``root/<split>/FAKE``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..io import DEFAULT_MAX_PIXELS
from .base import ImageDataset
from .files import IMAGE_EXTENSIONS, _find_child_dir, _normalize_extensions, _scan_real_fake

__all__ = ["CIFAKEDataset"]


class CIFAKEDataset(ImageDataset):
    """The CIFAKE layout: ``root/<split>/REAL/*.jpg`` (label 0) and ``root/<split>/FAKE/*.jpg`` (label 1).

    CIFAKE's real images are CIFAR-10 photographs and its fakes were generated with Stable Diffusion v1.4,
    32 x 32 pixels; fakes were not made from particular real images, so every image is its own ``source_id``
    (``<split>/REAL/<name>`` without extension). ``family`` is ``"real"`` or ``"stable_diffusion_v1_4"``.
    Folder names match case-insensitively.

    Parameters
    ----------
    root : str or os.PathLike
        Folder holding ``train/`` and ``test/``.
    split : {"train", "test"}, optional
    size : int, (int, int) or None, optional
        Output size; default 32 (CIFAKE's native size, so no resampling).
    resize, on_error, max_pixels, fill, progress, extensions
        As in :class:`FolderDataset`.

    Examples
    --------
    >>> ds = CIFAKEDataset("cifake", split="test")   # doctest: +SKIP
    >>> ds[0]["image"].shape                         # doctest: +SKIP
    torch.Size([3, 32, 32])
    """

    FAKE_FAMILY = "stable_diffusion_v1_4"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str = "train",
        size: int | tuple[int, int] | None = 32,
        resize: str = "torch",
        on_error: str = "raise",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fill: Sequence[float] | None = (1.0, 1.0, 1.0),
        progress: bool = False,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"CIFAKE split must be 'train' or 'test', got {split!r}")
        root = Path(root)
        split_dir = _find_child_dir(root, split)
        if split_dir is None:
            raise ValueError(f"CIFAKE root {str(root)!r} has no '{split}/' folder")
        self.root = str(root)
        self.split = split
        records = _scan_real_fake(split_dir, _normalize_extensions(extensions), real_family="real",
                                  fake_family=self.FAKE_FAMILY, family_from_subdir=False)
        for r in records:
            r.source_id = f"{split}/{r.source_id}"
        self._setup(records, size=size, resize=resize, on_error=on_error, max_pixels=max_pixels, fill=fill,
                    progress=progress)
