"""Backbones for the detectors: a small built-in CNN and any ``timm`` model by name.

Every backbone returned by :func:`create_backbone` follows the ``timm`` interface that the detectors
rely on:

* ``forward(x) -> (B, num_classes)`` logits;
* ``forward_features(x) -> (B, C, h, w)`` the last feature map;
* ``forward_head(x, pre_logits=False)`` global pooling (and the classifier unless ``pre_logits``);
* ``num_features`` the width of the pooled features; ``reset_classifier(num_classes)``.

All backbones are made *attributable*: activations are modules, never
functional calls, and no activation module works in place, so captum's DeepLift and shap's
DeepExplainer can hook them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["SmallCNN", "create_backbone", "make_attributable", "backbone_features", "TIMM_LOADING_KEYS"]

#: ``timm.create_model`` arguments that download or read weights, or change what the model returns:
#: :func:`create_backbone` refuses them, whatever their value.
TIMM_LOADING_KEYS = frozenset({
    "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "checkpoint_path",
    "cache_dir", "features_only", "feature_cfg", "feature_cls", "out_indices", "scriptable", "exportable",
    "no_jit",
})


class SmallCNN(nn.Module):
    """A small convolutional network for defocus maps or RGB images of about 128 x 128 pixels.

    Four stages of two 3x3 convolutions (each followed by ``BatchNorm2d`` and a separate,
    non-in-place ``nn.ReLU`` module); every stage halves the resolution with its first convolution.
    A global average pool and a linear layer give ``num_classes`` logits. With the default widths
    it has about 0.29 M parameters and costs about 52 M multiply-adds on a 128 x 128 input.

    Parameters
    ----------
    in_chans : int
        Number of input channels (1 for a defocus map, 3 for RGB).
    num_classes : int
        Number of outputs; 0 makes the classifier an identity (the forward then returns features).
    widths : sequence of int
        Channels of the stages.
    drop_rate : float
        Dropout probability before the classifier (``nn.Dropout`` module, not in place).

    Examples
    --------
    >>> net = SmallCNN(in_chans=1)
    >>> net(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 1])
    >>> net.forward_head(net.forward_features(torch.zeros(2, 1, 64, 64)), pre_logits=True).shape
    torch.Size([2, 128])
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 1,
        *,
        widths: Sequence[int] = (16, 32, 64, 128),
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if int(in_chans) < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans!r}")
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {widths!r}")
        self.in_chans = int(in_chans)
        self.widths = widths
        layers = []
        c_in = self.in_chans
        for c in widths:
            layers += [
                nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=False),
                nn.Conv2d(c, c, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=False),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.num_features = widths[-1]
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.drop_rate = float(drop_rate)
        self.drop = nn.Dropout(self.drop_rate, inplace=False)
        self.num_classes = int(num_classes)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last feature map, ``(B, num_features, H / 16, W / 16)``."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"SmallCNN expects (B, {self.in_chans}, H, W) input, got shape {tuple(x.shape)}"
            )
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool a feature map to ``(B, num_features)``; apply the classifier unless ``pre_logits``."""
        x = self.global_pool(x)
        if pre_logits:
            return x
        return self.fc(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, global_pool=None) -> None:
        """Replace the classifier (``num_classes=0``: identity), as ``timm`` models do."""
        self.num_classes = int(num_classes)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def make_attributable(module: nn.Module) -> nn.Module:
    """Switch off ``inplace`` on every submodule that has it (ReLU, Dropout, ...); return ``module``.

    In-place activations break the forward hooks of DeepLift-style attribution methods. The change
    does not alter any output.

    Examples
    --------
    >>> m = make_attributable(nn.Sequential(nn.ReLU(inplace=True)))
    >>> m[0].inplace
    False
    """
    for sub in module.modules():
        if isinstance(getattr(sub, "inplace", None), bool) and sub.inplace:
            sub.inplace = False
    return module


def create_backbone(name: str, in_chans: int = 3, num_classes: int = 1, **kwargs) -> nn.Module:
    """Create a backbone by name, with random weights.

    Parameters
    ----------
    name : str
        ``"small-cnn"`` for :class:`SmallCNN`, or any ``timm`` model name (e.g. ``"legacy_xception"``,
        ``"resnet18"``). ``timm`` models are always created with ``pretrained=False``: nothing is
        downloaded and no file is read.
    in_chans : int
        Input channels.
    num_classes : int
        Number of logits (1 for the detectors; 0 for a feature extractor).
    **kwargs
        Passed to :class:`SmallCNN` or to ``timm.create_model``; the loading arguments
        (:data:`TIMM_LOADING_KEYS`: ``pretrained``, ``checkpoint_path``, ``pretrained_cfg``, ...) are refused.

    Returns
    -------
    torch.nn.Module
        The backbone, with every in-place activation switched off (:func:`make_attributable`).

    Examples
    --------
    >>> create_backbone("small-cnn", in_chans=1).num_features
    128
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"backbone name must be a non-empty string, got {name!r}")
    loading = sorted(set(kwargs) & TIMM_LOADING_KEYS)
    if loading:
        raise ValueError(
            f"backbone arguments {loading} are refused: defocus_xai never downloads weights nor lets timm read "
            "a file; load a checkpoint with defocus_xai.detect.load_detector instead"
        )
    if name in ("small-cnn", "small_cnn", "smallcnn"):
        model = SmallCNN(in_chans=in_chans, num_classes=num_classes, **kwargs)
    else:
        import timm

        if not timm.is_model(name):
            raise ValueError(f"unknown backbone {name!r}: use 'small-cnn' or a timm model name")
        model = timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs
        )
    return make_attributable(model)


def backbone_features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled penultimate features ``(B, D)`` of a backbone (``forward_head(..., pre_logits=True)``)."""
    feats = backbone.forward_head(backbone.forward_features(x), pre_logits=True)
    return feats.flatten(1)
