"""The RGB baseline detector: images -> (resize) -> input normalization -> backbone -> one logit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import backbone_features, create_backbone
from .base import DetectorBase, as_image_batch

__all__ = ["RGBDetector", "INPUT_NORMS"]

#: Accepted ``input_norm`` values.
INPUT_NORMS = ("[-1,1]", "imagenet", "none")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class RGBDetector(DetectorBase):
    """RGB baseline detector: images in ``[0, 1]`` -> (resize) -> input normalization -> backbone -> logit.

    Parameters
    ----------
    backbone : str or nn.Module
        ``"small-cnn"``, a ``timm`` name (``pretrained=False``) or a ``timm``-like module.
    input_size : int, optional
        Resize images (bilinear, antialiased) to this square size; None: use them as given.
    input_norm : {"[-1,1]", "imagenet", "none"}
        ``"[-1,1]"``: ``2 x - 1`` (the reference's training transform); ``"imagenet"``: ImageNet mean and
        std; ``"none"``: as is.
    **backbone_kwargs
        Passed to :func:`~defocus_xai.detect.create_backbone`.

    Examples
    --------
    >>> det = RGBDetector("small-cnn", input_size=32)
    >>> det(torch.rand(2, 3, 64, 64)).shape, det.input_size
    (torch.Size([2, 1]), 32)
    """

    arch = "rgb"

    def __init__(self, backbone: str | nn.Module = "small-cnn", *, input_size: int | None = None,
                 input_norm: str = "[-1,1]", **backbone_kwargs):
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        self._input_size = None if input_size is None else int(input_size)
        self.input_norm = input_norm
        self.backbone_name = backbone if isinstance(backbone, str) else type(backbone).__name__
        self.backbone_kwargs = dict(backbone_kwargs)
        self.backbone = (
            create_backbone(backbone, in_chans=3, num_classes=1, **backbone_kwargs)
            if isinstance(backbone, str)
            else backbone
        )
        self.register_buffer("_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_identity(backbone=self.backbone_name, input_norm=self.input_norm,
                            input_size=self._input_size)

    @property
    def input_size(self) -> int | None:
        """The square size images are resized to (None: used as given)."""
        return self._input_size

    def config(self) -> dict:
        """Constructor parameters as a JSON-able dict."""
        return {"backbone": self.backbone_name, "input_size": self.input_size, "input_norm": self.input_norm,
                **self.backbone_kwargs}

    def resize(self, images) -> torch.Tensor:
        """Images -> ``(B, 3, S, S)`` float32 in ``[0, 1]`` on the model's device (resized if needed)."""
        x = as_image_batch(images, device=self.device)
        size = self.input_size
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True).clamp(0.0, 1.0)
        return x

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``input_norm`` to ``(B, 3, H, W)`` images in ``[0, 1]`` (out of place)."""
        if self.input_norm == "[-1,1]":
            return x * 2.0 - 1.0
        if self.input_norm == "imagenet":
            return (x - self._mean) / self._std
        return x

    def forward_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1)`` from prepared images ``(B, 3, H, W)`` in ``[0, 1]`` (differentiable)."""
        if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"forward_rgb expects a (B, 3, H, W) tensor, got {shape}")
        return self.backbone(self.normalize_input(x))

    def features(self, images) -> torch.Tensor:
        """Pooled penultimate features ``(B, D)``."""
        return backbone_features(self.backbone, self.normalize_input(self.resize(images)))

    def prepare(self, images) -> tuple[torch.Tensor]:
        """``(images in [0, 1], resized)``: the input of :meth:`forward_prepared`."""
        return (self.resize(images),)

    def forward_prepared(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_rgb`."""
        return self.forward_rgb(x)
