"""Resizing image batches to the estimator's grid, and the warning for heavy upscaling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resolve_size", "resize_batch", "upscale_note"]

#: An input smaller than ``1 / UPSCALE_LIMIT`` of the grid on either axis is heavily upscaled.
UPSCALE_LIMIT = 4


def resolve_size(size) -> tuple[int, int] | None:
    """``size`` (an int, an ``(H, W)`` pair or ``None``) as an ``(H, W)`` pair of ints, or ``None``.

    Raises
    ------
    ValueError
        For a pair of the wrong length or a side under 8 pixels.

    Examples
    --------
    >>> resolve_size(64), resolve_size((32, 48)), resolve_size(None)
    ((64, 64), (32, 48), None)
    """
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"size must be an int, an (H, W) pair or None, got {size!r}")
        h, w = int(size[0]), int(size[1])
    else:
        h = w = int(size)
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size!r}")
    return h, w


def resize_batch(batch: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of a ``(B, C, H, W)`` batch to ``size``, antialiased when downscaling.

    Parameters
    ----------
    batch : torch.Tensor
        ``(B, C, H, W)`` float.
    size : int, (int, int) or None
        Target ``(H, W)`` (an int means square); ``None`` or the same size returns ``batch``.

    Returns
    -------
    torch.Tensor
        ``(B, C, h, w)``; non-square inputs resized to a square are stretched, as in the
        reference method.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.resize import resize_batch
    >>> resize_batch(torch.rand(1, 3, 100, 80), 64).shape
    torch.Size([1, 3, 64, 64])
    """
    hw = resolve_size(size)
    if hw is None or tuple(batch.shape[-2:]) == hw:
        return batch
    down = hw[0] < batch.shape[-2] or hw[1] < batch.shape[-1]
    return F.interpolate(batch, size=hw, mode="bilinear", align_corners=False, antialias=down)


def upscale_note(shape, size) -> str | None:
    """A note on heavy upscaling when an ``(H, W)`` input is under a quarter of the grid, else ``None``.

    Parameters
    ----------
    shape : (int, int)
        The input's height and width in pixels.
    size : int, (int, int) or None
        The estimator grid (``None``: the input's own size, never an upscale).

    Returns
    -------
    str or None

    Examples
    --------
    >>> upscale_note((2, 2), 299)[:45]
    'a 2 x 2 px input is upscaled to the 299 x 299'
    >>> upscale_note((128, 96), 299) is None
    True
    """
    hw = resolve_size(size)
    h, w = int(shape[0]), int(shape[1])
    if hw is None or (h * UPSCALE_LIMIT >= hw[0] and w * UPSCALE_LIMIT >= hw[1]):
        return None
    return (f"a {h} x {w} px input is upscaled to the {hw[0]} x {hw[1]} grid (more than "
            f"{UPSCALE_LIMIT}x on an axis): its map shows the interpolation, not the blur of the image")
