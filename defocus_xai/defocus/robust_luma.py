"""The gray image of ``recipe="robust"``: JPEG's luma, the one channel a JPEG file keeps at full resolution.

JPEG stores ``Y = 0.299 R + 0.587 G + 0.114 B`` at full resolution and the two chroma channels ``Cb, Cr``
at half resolution in each direction (4:2:0, the common default). The plain mean of R, G and B
(:func:`defocus_xai._images.to_gray`) is ``Y + 0.476 Cb + 0.229 Cr``: across an edge with a change of
colour, it mixes in the 2x subsampled, upsampled chroma, whose blur reads as defocus (sharp edges of
JPEG files read 0.3-0.4 px too blurry). ``Y`` carries no chroma and the same optical blur.
"""

from __future__ import annotations

import torch

__all__ = ["luma", "LUMA_WEIGHTS"]

#: ITU-R BT.601 luma weights of R, G and B (the ``Y`` of JFIF's YCbCr).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luma(batch: torch.Tensor) -> torch.Tensor:
    """JPEG's luma ``Y = 0.299 R + 0.587 G + 0.114 B`` of an RGB batch.

    Parameters
    ----------
    batch : torch.Tensor
        ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)``, same dtype and device, differentiable.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.robust_luma import luma
    >>> x = torch.zeros(1, 3, 2, 2)
    >>> x[:, 1] = 1.0                                    # pure green
    >>> round(float(luma(x)[0, 0, 0, 0]), 3)
    0.587
    """
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"luma: expected a (B, 3, H, W) tensor, got shape {tuple(batch.shape)}.")
    w = torch.tensor(LUMA_WEIGHTS, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch * w).sum(1, keepdim=True)
