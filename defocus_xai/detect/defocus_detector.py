"""The defocus-map detector: images -> defocus map -> scaling to ``[0, 1]`` -> backbone -> one logit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import backbone_features, create_backbone
from .base import DetectorBase, as_image_batch
from .maps import MAP_NORMS, build_estimator, check_maps, estimator_config, scale_sigma_maps, square_size

__all__ = ["DefocusDetector"]


class DefocusDetector(DetectorBase):
    """Defocus-map detector: images -> defocus map -> normalization -> backbone -> one logit.

    The defocus estimator has no trainable parameter; its settings are part of the model (recorded in
    ``identity["estimator"]`` and in every saved checkpoint) because a detector only works on maps made
    the way it was trained on. It offers :class:`~defocus_xai.detect.protocol.MapDetector`.

    Parameters
    ----------
    backbone : str or nn.Module
        ``"small-cnn"``, a ``timm`` model name (created with ``pretrained=False``) or a module following
        the ``timm`` interface (``forward_features``, ``forward_head``).
    estimator : None, DefocusEstimator or dict
        The map estimator, or its parameters (``DefocusEstimator.config()``); None: the defaults.
    map_norm : {"minmax", "fixed"}
        Map normalization (:func:`~defocus_xai.detect.scale_sigma_maps`; the trade-off is in
        ``docs/detectors.md``): ``"minmax"`` per sample as the reference, ``"fixed"`` ``sigma / sigma_max``
        clamped to ``[0, 1]``.
    sigma_max : float
        Blur in pixels mapped to 1 by ``map_norm="fixed"``.
    map_channels : {1, 3}
        Channels the backbone receives; with 3 the normalized map is repeated (as the reference feeds
        Xception).
    map_size : int, optional
        Resize maps (bilinear) to this size before normalization; default: the estimator's output.
    **backbone_kwargs
        Passed to :func:`~defocus_xai.detect.create_backbone`.

    Examples
    --------
    >>> det = DefocusDetector("small-cnn", estimator={"size": 64})
    >>> det.input_size
    64
    >>> det.forward_map(torch.rand(2, 1, 64, 64)).shape
    torch.Size([2, 1])
    """

    arch = "defocus"

    def __init__(
        self,
        backbone: str | nn.Module = "small-cnn",
        *,
        estimator=None,
        map_norm: str = "minmax",
        sigma_max: float = 5.0,
        map_channels: int = 1,
        map_size: int | None = None,
        **backbone_kwargs,
    ):
        super().__init__()
        if map_norm not in MAP_NORMS:
            raise ValueError(f"map_norm must be one of {MAP_NORMS}, got {map_norm!r}")
        if map_channels not in (1, 3):
            raise ValueError(f"map_channels must be 1 or 3, got {map_channels!r}")
        if not float(sigma_max) > 0:
            raise ValueError(f"sigma_max must be > 0, got {sigma_max!r}")
        self.map_norm = map_norm
        self.sigma_max = float(sigma_max)
        self.map_channels = int(map_channels)
        self.map_size = None if map_size is None else int(map_size)
        self.backbone_name = backbone if isinstance(backbone, str) else type(backbone).__name__
        self.backbone_kwargs = dict(backbone_kwargs)
        self.backbone = (
            create_backbone(backbone, in_chans=self.map_channels, num_classes=1, **backbone_kwargs)
            if isinstance(backbone, str)
            else backbone
        )
        self.estimator = build_estimator(estimator)
        self._init_identity(
            backbone=self.backbone_name,
            estimator=estimator_config(self.estimator),
            map_norm=self.map_norm,
            sigma_max=self.sigma_max,
            map_channels=self.map_channels,
        )

    @property
    def input_size(self) -> int | None:
        """The square grid the estimator resizes images to (None: the images' own size)."""
        return square_size(self.estimator.settings.size)

    def config(self) -> dict:
        """Constructor parameters as a JSON-able dict (``DefocusDetector(**config)`` rebuilds it)."""
        return {
            "backbone": self.backbone_name,
            "estimator": estimator_config(self.estimator),
            "map_norm": self.map_norm,
            "sigma_max": self.sigma_max,
            "map_channels": self.map_channels,
            "map_size": self.map_size,
            **self.backbone_kwargs,
        }

    def normalize(self, sigma: torch.Tensor) -> torch.Tensor:
        """Resize (if ``map_size``) and scale sigma maps ``(B, 1, H, W)`` in pixels to ``[0, 1]``."""
        sigma = check_maps(sigma, "DefocusDetector.normalize")
        if self.map_size is not None and tuple(sigma.shape[-2:]) != (self.map_size, self.map_size):
            sigma = F.interpolate(sigma, size=(self.map_size, self.map_size), mode="bilinear",
                                  align_corners=False)
        return scale_sigma_maps(sigma, self.map_norm, sigma_max=self.sigma_max)

    def estimate(self, images):
        """Run the estimator on images; return its ``DefocusResult`` (sigma in pixels)."""
        x = as_image_batch(images, device=self.device)
        with torch.no_grad():
            return self.estimator(x)

    def map_from_images(self, images) -> torch.Tensor:
        """Normalized defocus maps ``(B, 1, S, S)`` in ``[0, 1]`` from images in ``[0, 1]``.

        The estimator is run without gradients (it is not differentiable: edge detection and
        thresholds); attribute in map space with :meth:`forward_map`.
        """
        return self.normalize(self.estimate(images).dense.float())

    def _expand(self, maps: torch.Tensor) -> torch.Tensor:
        maps = check_maps(maps, "DefocusDetector.forward_map")
        return maps.repeat(1, self.map_channels, 1, 1) if self.map_channels > 1 else maps

    def forward_map(self, maps: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1)`` from normalized maps ``(B, 1, S, S)`` in ``[0, 1]`` (differentiable)."""
        return self.backbone(self._expand(maps))

    def features(self, images=None, *, maps: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled penultimate features ``(B, D)`` from images or from normalized ``maps``."""
        if (images is None) == (maps is None):
            raise ValueError("features() needs exactly one of images or maps=")
        if maps is None:
            maps = self.map_from_images(images)
        return backbone_features(self.backbone, self._expand(maps))

    def prepare(self, images) -> tuple[torch.Tensor]:
        """``(normalized map,)``: the input of :meth:`forward_prepared`."""
        return (self.map_from_images(images),)

    def forward_prepared(self, maps: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_map`."""
        return self.forward_map(maps)
