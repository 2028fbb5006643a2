"""Resizing a decoded image to a dataset's ``size``: torch bilinear with antialiasing, or PIL bilinear.

Internal to :mod:`defocus_xai.data.datasets`; the choice is the datasets' ``resize`` option (docs/data.md).
"""

from __future__ import annotations

import numpy as np
import torch

#: The values of the datasets' ``resize`` option.
RESIZE_METHODS = ("torch", "pil")


def _check_resize(resize: str) -> str:
    if resize not in RESIZE_METHODS:
        raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {resize!r}")
    return resize


def _resize_image(arr: np.ndarray, size: tuple[int, int] | None, resize: str) -> torch.Tensor:
    """``(H, W, 3)`` float image in ``[0, 1]`` -> ``(3, h, w)`` float32 tensor at ``size`` (``None``: as is).

    ``"torch"``: ``interpolate(mode="bilinear", antialias=True, align_corners=False)`` on the float image.
    ``"pil"``: the image rounded to 8 bits, ``PIL.Image.resize((w, h), BILINEAR)``, divided by 255: what
    ``torchvision.transforms.Resize((h, w))`` then ``ToTensor()`` give for the same PIL image.
    An image already at ``size`` is returned unchanged by both.
    """
    if size is not None and tuple(arr.shape[:2]) != tuple(size) and resize == "pil":
        from PIL import Image

        u8 = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        out = Image.fromarray(u8, "RGB").resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(out, dtype=np.float32) / np.float32(255.0)
    img = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).contiguous()
    if size is not None and tuple(img.shape[1:]) != tuple(size):
        img = torch.nn.functional.interpolate(
            img[None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0].clamp_(0.0, 1.0)
    return img
