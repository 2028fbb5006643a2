"""What the three detector classes share: identity, device, probabilities, the image input convention."""

from __future__ import annotations

import torch
from torch import nn

from .._device import module_device
from .protocol import borrowed

__all__ = ["DetectorBase"]


def as_image_batch(images, device=None) -> torch.Tensor:
    """Images -> ``(B, 3, H, W)`` float32 in ``[0, 1]`` on ``device`` (the library's input convention)."""
    from .._images import as_image_batch as _convert

    return _convert(images, device=device)


class DetectorBase(nn.Module):
    """Shared by the detectors: ``identity``, ``device``, ``forward`` and ``predict_proba``.

    Subclasses set ``arch`` and implement ``prepare``, ``forward_prepared``, ``config`` and the
    ``input_size`` property (see :class:`defocus_xai.detect.protocol.Detector`).
    """

    arch: str = ""

    def _init_identity(self, **extra) -> None:
        self.identity = {"name": None, "arch": self.arch, "training_data": None, "checksum": None, **extra}

    @property
    def device(self) -> torch.device:
        """The device of the parameters."""
        return module_device(self)

    def forward(self, images) -> torch.Tensor:
        """Logits ``(B, 1)`` from images in ``[0, 1]`` (uint8 and numpy accepted)."""
        return self.forward_prepared(*self.prepare(images))

    @torch.no_grad()
    def predict_proba(self, images, *, batch_size: int | None = None) -> torch.Tensor:
        """Probability that each image is fake, ``(B,)`` float on the CPU.

        Runs in eval mode without gradients (each module's mode is restored afterwards).

        Parameters
        ----------
        images
            Anything :func:`defocus_xai._images.as_image_batch` accepts, values in ``[0, 1]`` (float)
            or ``[0, 255]`` (uint8).
        batch_size : int, optional
            Process in chunks of this size.

        Examples
        --------
        >>> from defocus_xai.detect import RGBDetector
        >>> RGBDetector().predict_proba(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2])
        """
        with borrowed(self) as det:
            x = as_image_batch(images, device=det.device)
            chunks = [x] if not batch_size else torch.split(x, int(batch_size))
            probs = [torch.sigmoid(det(c)).reshape(-1).float().cpu() for c in chunks]
        return torch.cat(probs) if probs else torch.zeros(0)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}"
