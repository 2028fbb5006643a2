"""The two-branch detector: an RGB and a defocus-map backbone, pooled features fused, a linear head."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import backbone_features
from .base import DetectorBase, as_image_batch
from .defocus_detector import DefocusDetector
from .maps import estimator_config
from .rgb_detector import RGBDetector

__all__ = ["TwoBranchDetector", "FUSIONS"]

#: Accepted ``fusion`` values.
FUSIONS = ("concat", "product")


class TwoBranchDetector(DetectorBase):
    """Two-branch detector: an RGB backbone and a defocus-map backbone, pooled features fused, linear head.

    Fusion ``"concat"`` (default) concatenates the two feature vectors: each branch keeps its own
    evidence and the head can weigh them. ``"product"`` multiplies them element-wise as the reference's
    MultiBranch network does (both branches must have the same feature width); a product lets either
    branch veto the other, which makes the fused model harder to train and to attribute.

    It offers :class:`~defocus_xai.detect.protocol.MapDetector`, with one difference: the head reads both
    branches, so :meth:`forward_map` needs the RGB input beside the maps (``forward_map(maps, rgb)``;
    captum passes it as ``additional_forward_args``).

    Parameters
    ----------
    rgb_backbone, defocus_backbone : str
        Backbone names (see :func:`~defocus_xai.detect.create_backbone`).
    estimator, map_norm, sigma_max, map_channels, map_size
        As for :class:`~defocus_xai.detect.DefocusDetector`.
    input_size, input_norm
        As for :class:`~defocus_xai.detect.RGBDetector`.
    fusion : {"concat", "product"}
        Feature fusion.

    Examples
    --------
    >>> det = TwoBranchDetector(estimator={"size": 64})
    >>> det.forward_pair(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)).shape
    torch.Size([2, 1])
    """

    arch = "two-branch"

    def __init__(self, rgb_backbone: str = "small-cnn", defocus_backbone: str = "small-cnn", *,
                 estimator=None, map_norm: str = "minmax", sigma_max: float = 5.0, map_channels: int = 1,
                 map_size: int | None = None, input_size: int | None = None, input_norm: str = "[-1,1]",
                 fusion: str = "concat"):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        self.rgb = RGBDetector(rgb_backbone, input_size=input_size, input_norm=input_norm)
        self.defocus = DefocusDetector(defocus_backbone, estimator=estimator, map_norm=map_norm,
                                       sigma_max=sigma_max, map_channels=map_channels, map_size=map_size)
        # the branches contribute features only; drop their own classifiers
        self.rgb.backbone.reset_classifier(0)
        self.defocus.backbone.reset_classifier(0)
        d_rgb, d_def = int(self.rgb.backbone.num_features), int(self.defocus.backbone.num_features)
        if fusion == "product" and d_rgb != d_def:
            raise ValueError(f"fusion='product' needs equal feature widths, got rgb {d_rgb} vs defocus {d_def}")
        self.head = nn.Linear(d_rgb + d_def if fusion == "concat" else d_rgb, 1)
        self._init_identity(
            backbone={"rgb": rgb_backbone, "defocus": defocus_backbone},
            estimator=estimator_config(self.defocus.estimator),
            map_norm=map_norm, sigma_max=float(sigma_max), map_channels=int(map_channels),
            input_norm=input_norm, input_size=input_size, fusion=fusion,
        )

    @property
    def input_size(self) -> int | None:
        """The grid of the defocus branch's estimator (the RGB branch resizes to ``rgb.input_size``)."""
        return self.defocus.input_size

    def config(self) -> dict:
        """Constructor parameters as a JSON-able dict."""
        d, r = self.defocus.config(), self.rgb.config()
        return {
            "rgb_backbone": r["backbone"], "defocus_backbone": d["backbone"], "estimator": d["estimator"],
            "map_norm": d["map_norm"], "sigma_max": d["sigma_max"], "map_channels": d["map_channels"],
            "map_size": d["map_size"], "input_size": r["input_size"], "input_norm": r["input_norm"],
            "fusion": self.fusion,
        }

    def normalize(self, sigma: torch.Tensor) -> torch.Tensor:
        """Sigma maps in pixels -> normalized maps, as :meth:`DefocusDetector.normalize`."""
        return self.defocus.normalize(sigma)

    def map_from_images(self, images) -> torch.Tensor:
        """Normalized defocus maps, as :meth:`DefocusDetector.map_from_images`."""
        return self.defocus.map_from_images(images)

    def forward_map(self, maps: torch.Tensor, rgb: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, 1)`` from normalized maps with the RGB branch's input held fixed.

        Parameters
        ----------
        maps : torch.Tensor
            ``(B, 1, S, S)`` normalized maps (differentiable).
        rgb : torch.Tensor
            ``(B, 3, H, W)`` prepared images in ``[0, 1]`` (``prepare(images)[0]``), required.
        """
        if rgb is None:
            raise ValueError("TwoBranchDetector.forward_map needs rgb= (prepare(images)[0], the images the maps "
                             "come from): its head reads both branches")
        return self.forward_pair(rgb, maps)

    def fused_features(self, rgb: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Fused features from prepared RGB ``(B, 3, H, W)`` in ``[0, 1]`` and normalized maps."""
        f_rgb = backbone_features(self.rgb.backbone, self.rgb.normalize_input(rgb))
        f_def = self.defocus.features(maps=maps)
        if self.fusion == "concat":
            return torch.cat([f_rgb, f_def], dim=1)
        return f_rgb * f_def

    def forward_pair(self, rgb: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1)`` from prepared RGB images in ``[0, 1]`` and normalized maps (differentiable)."""
        return self.head(self.fused_features(rgb, maps))

    def features(self, images=None, *, rgb=None, maps=None) -> torch.Tensor:
        """Fused features ``(B, D)`` from images, or from prepared ``rgb=`` and ``maps=``."""
        if images is not None:
            rgb, maps = self.prepare(images)
        if rgb is None or maps is None:
            raise ValueError("features() needs images, or both rgb= and maps=")
        return self.fused_features(rgb, maps)

    def prepare(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """``(resized RGB in [0, 1], normalized map)``."""
        x = as_image_batch(images, device=self.device)
        return self.rgb.resize(x), self.defocus.map_from_images(x)

    def forward_prepared(self, rgb: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_pair`."""
        return self.forward_pair(rgb, maps)
