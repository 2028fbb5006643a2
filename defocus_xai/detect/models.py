"""Detectors: defocus-map, RGB and two-branch classifiers giving one real/fake logit.

All detectors are plain ``nn.Module`` s that run on any device, take images in ``[0, 1]`` (any input
accepted by :func:`defocus_xai._images.as_image_batch`: torch or numpy, uint8 or float, CHW or HWC) and
return one logit per image (positive means *fake*). Every detector also exposes the two hooks that
training, caching and attribution use:

* ``prepare(images) -> tuple of tensors``: the model's inputs computed from images (the normalized
  defocus map, the resized RGB image, or both). They carry no trainable parameter, so they can be
  cached.
* ``forward_prepared(*inputs) -> (B, 1)`` logits from those inputs.

``forward(images) == forward_prepared(*prepare(images))``.

Defocus-map normalization
-------------------------
The estimator returns blur in pixels (sigma). Before the backbone the map is scaled to ``[0, 1]``:

``"minmax"`` (the reference's choice)
    per-sample ``(m - min) / (max - min)``. The classifier sees only the *relative* layout of blur
    in the image: a uniformly sharp picture and a uniformly blurred one look alike, and the absolute
    scale (how much blur, in pixels) is lost. Robust to a different camera or resolution, blind to
    "no depth of field at all". A constant map gives zeros.
``"fixed"``
    ``clamp(sigma / sigma_max, 0, 1)`` with one constant for all images. Keeps the absolute blur
    scale (an all-sharp image stays near 0), so a detector can use how much blur there is, at the cost
    of depending on image resolution and on the estimator's calibration (retrain when they change).
"""

from __future__ import annotations

import copy
import inspect
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import backbone_features, create_backbone
from .._device import module_device

__all__ = ["DefocusDetector", "RGBDetector", "TwoBranchDetector", "normalize_maps"]

MAP_NORMS = ("minmax", "fixed")
INPUT_NORMS = ("[-1,1]", "imagenet", "none")
FUSIONS = ("concat", "product")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_image_batch(images, device=None) -> torch.Tensor:
    """Images -> (B, 3, H, W) float32 in [0, 1] on ``device`` (the library's input convention)."""
    from .._images import as_image_batch

    return as_image_batch(images, device=device)



def _check_maps(maps: torch.Tensor, where: str) -> torch.Tensor:
    if not torch.is_tensor(maps):
        raise TypeError(f"{where}: maps must be a torch.Tensor (B, 1, H, W), got {type(maps).__name__}")
    if maps.ndim == 3:
        maps = maps.unsqueeze(1)
    if maps.ndim != 4 or maps.shape[1] != 1:
        raise ValueError(f"{where}: maps must have shape (B, 1, H, W), got {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"{where}: maps must be floating point, got dtype {maps.dtype}")
    return maps


def normalize_maps(sigma: torch.Tensor, method: str = "minmax", *, sigma_max: float = 5.0,
                   eps: float = 1e-8) -> torch.Tensor:
    """Scale defocus maps (sigma in pixels) to ``[0, 1]``.

    Parameters
    ----------
    sigma : torch.Tensor
        ``(B, 1, H, W)`` maps in pixels.
    method : {"minmax", "fixed"}
        ``"minmax"``: per-sample ``(m - min) / (max - min)`` (a constant map gives zeros);
        ``"fixed"``: ``clamp(m / sigma_max, 0, 1)``.
    sigma_max : float
        The blur (pixels) mapped to 1 by ``"fixed"``.
    eps : float
        A per-sample range at or below ``eps`` counts as constant.

    Returns
    -------
    torch.Tensor
        Same shape, float, in ``[0, 1]``.

    Examples
    --------
    >>> m = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    >>> normalize_maps(m, "minmax").flatten().tolist()
    [0.0, 0.25, 0.5, 1.0]
    >>> normalize_maps(m, "fixed", sigma_max=2.0).flatten().tolist()
    [0.0, 0.5, 1.0, 1.0]
    """
    if method == "fixed":
        if not sigma_max > 0:
            raise ValueError(f"sigma_max must be > 0, got {sigma_max!r}")
        return torch.clamp(sigma / float(sigma_max), 0.0, 1.0)
    if method != "minmax":
        raise ValueError(f"map_norm must be one of {MAP_NORMS}, got {method!r}")
    flat = sigma.flatten(1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (sigma.ndim - 1)))
    hi = flat.max(dim=1).values.view(-1, *([1] * (sigma.ndim - 1)))
    rng = hi - lo
    ok = rng > eps
    out = (sigma - lo) / torch.where(ok, rng, torch.ones_like(rng))
    return torch.where(ok, out, torch.zeros_like(out))


def _build_estimator(estimator):
    """None | DefocusEstimator | dict (its ``config()`` or constructor kwargs) -> DefocusEstimator."""
    from ..defocus.estimator import DefocusEstimator

    if estimator is None:
        return DefocusEstimator()
    if isinstance(estimator, DefocusEstimator):
        return estimator
    if isinstance(estimator, dict):
        params = inspect.signature(DefocusEstimator).parameters
        has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in estimator.items() if has_var_kw or k in params}
        dropped = sorted(set(estimator) - set(kwargs))
        if dropped and set(dropped) - {"class", "version", "type", "name", "library_version"}:
            warnings.warn(f"estimator config keys not understood by DefocusEstimator and ignored: {dropped}")
        return DefocusEstimator(**kwargs)
    raise TypeError(
        f"estimator must be None, a DefocusEstimator or a dict of its parameters, got {type(estimator).__name__}"
    )


def _estimator_config(estimator) -> dict:
    cfg = estimator.config() if hasattr(estimator, "config") else {}
    return dict(cfg)


class _DetectorBase(nn.Module):
    """Shared helpers: device, probability, identity."""

    arch: str = ""

    def _init_identity(self, **extra) -> None:
        self.identity = {
            "name": None,
            "arch": self.arch,
            "training_data": None,
            "checksum": None,
            **extra,
        }

    @property
    def device(self) -> torch.device:
        """The device of the parameters."""
        return module_device(self)

    def forward(self, images) -> torch.Tensor:  # noqa: D401 - documented in subclasses
        return self.forward_prepared(*self.prepare(images))

    @torch.no_grad()
    def predict_proba(self, images, *, batch_size: int | None = None) -> torch.Tensor:
        """Probability that each image is fake, ``(B,)`` float on the CPU.

        Runs in eval mode without gradients (the mode is restored afterwards).

        Parameters
        ----------
        images
            Anything :func:`defocus_xai._images.as_image_batch` accepts, values in ``[0, 1]`` (float)
            or ``[0, 255]`` (uint8).
        batch_size : int, optional
            Process in chunks of this size.
        """
        was_training = self.training
        self.eval()
        try:
            x = _as_image_batch(images, device=self.device)
            chunks = [x] if not batch_size else torch.split(x, int(batch_size))
            probs = [torch.sigmoid(self(c)).reshape(-1).float().cpu() for c in chunks]
        finally:
            self.train(was_training)
        return torch.cat(probs) if probs else torch.zeros(0)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}"


class DefocusDetector(_DetectorBase):
    """Defocus-map detector: images -> defocus map -> normalization -> backbone -> one logit.

    The defocus estimator has no trainable parameter; its settings are part of the model (recorded in
    ``identity["estimator"]`` and in every saved checkpoint) because a detector only works on maps made
    the way it was trained on.

    Parameters
    ----------
    backbone : str or nn.Module
        ``"small-cnn"``, a ``timm`` model name (created with ``pretrained=False``) or a module following
        the ``timm`` interface (``forward_features``, ``forward_head``).
    estimator : None, DefocusEstimator or dict
        The map estimator, or its parameters (``DefocusEstimator.config()``); None: the defaults.
    map_norm : {"minmax", "fixed"}
        Map normalization (see the module documentation for the trade-off): ``"minmax"`` per sample as
        the reference, ``"fixed"`` ``sigma / sigma_max`` clamped to ``[0, 1]``.
    sigma_max : float
        Blur in pixels mapped to 1 by ``map_norm="fixed"``.
    map_channels : {1, 3}
        Channels the backbone receives; with 3 the normalized map is repeated (as the reference feeds
        Xception).
    map_size : int, optional
        Resize maps (bilinear) to this size before normalization; default: the estimator's output.
    **backbone_kwargs
        Passed to :func:`create_backbone`.

    Examples
    --------
    >>> det = DefocusDetector("small-cnn", estimator={"size": 64})   # doctest: +SKIP
    >>> det(torch.rand(2, 3, 64, 64)).shape                           # doctest: +SKIP
    torch.Size([2, 1])
    >>> det.forward_map(torch.rand(2, 1, 64, 64)).shape               # doctest: +SKIP
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
        self.estimator = _build_estimator(estimator)
        self._init_identity(
            backbone=self.backbone_name,
            estimator=_estimator_config(self.estimator),
            map_norm=self.map_norm,
            sigma_max=self.sigma_max,
            map_channels=self.map_channels,
        )

    def config(self) -> dict:
        """Constructor parameters as a JSON-able dict (``DefocusDetector(**config)`` rebuilds it)."""
        return {
            "backbone": self.backbone_name,
            "estimator": _estimator_config(self.estimator),
            "map_norm": self.map_norm,
            "sigma_max": self.sigma_max,
            "map_channels": self.map_channels,
            "map_size": self.map_size,
            **self.backbone_kwargs,
        }

    def normalize(self, sigma: torch.Tensor) -> torch.Tensor:
        """Resize (if ``map_size``) and normalize sigma maps ``(B, 1, H, W)`` to ``[0, 1]``."""
        sigma = _check_maps(sigma, "DefocusDetector.normalize")
        if self.map_size is not None and tuple(sigma.shape[-2:]) != (self.map_size, self.map_size):
            sigma = F.interpolate(sigma, size=(self.map_size, self.map_size), mode="bilinear",
                                  align_corners=False)
        return normalize_maps(sigma, self.map_norm, sigma_max=self.sigma_max)

    def estimate(self, images):
        """Run the estimator on images; return its ``DefocusResult`` (sigma in pixels)."""
        x = _as_image_batch(images, device=self.device)
        with torch.no_grad():
            return self.estimator(x)

    def map_from_images(self, images) -> torch.Tensor:
        """Normalized defocus maps ``(B, 1, S, S)`` in ``[0, 1]`` from images in ``[0, 1]``.

        The estimator is run without gradients (it is not differentiable: edge detection and
        thresholds); attribute in map space with :meth:`forward_map`.
        """
        return self.normalize(self.estimate(images).dense.float())

    def _expand(self, maps: torch.Tensor) -> torch.Tensor:
        maps = _check_maps(maps, "DefocusDetector.forward_map")
        return maps.repeat(1, self.map_channels, 1, 1) if self.map_channels > 1 else maps

    def forward_map(self, maps: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1)`` from normalized maps ``(B, 1, S, S)`` in ``[0, 1]``."""
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

    def forward(self, images) -> torch.Tensor:
        """Logits ``(B, 1)`` from images ``(B, 3, H, W)`` in ``[0, 1]`` (uint8 and numpy accepted)."""
        return self.forward_map(self.map_from_images(images))


class RGBDetector(_DetectorBase):
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
        Passed to :func:`create_backbone`.

    Examples
    --------
    >>> det = RGBDetector("small-cnn")
    >>> det(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 1])
    """

    arch = "rgb"

    def __init__(self, backbone: str | nn.Module = "small-cnn", *, input_size: int | None = None,
                 input_norm: str = "[-1,1]", **backbone_kwargs):
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        self.input_size = None if input_size is None else int(input_size)
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
                            input_size=self.input_size)

    def config(self) -> dict:
        """Constructor parameters as a JSON-able dict."""
        return {"backbone": self.backbone_name, "input_size": self.input_size, "input_norm": self.input_norm,
                **self.backbone_kwargs}

    def resize(self, images) -> torch.Tensor:
        """Images -> ``(B, 3, S, S)`` float32 in ``[0, 1]`` on the model's device (resized if needed)."""
        x = _as_image_batch(images, device=self.device)
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True).clamp(0.0, 1.0)
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
            raise ValueError(f"forward_rgb expects a (B, 3, H, W) tensor, got {getattr(x, 'shape', type(x))}")
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

    def forward(self, images) -> torch.Tensor:
        """Logits ``(B, 1)`` from images in ``[0, 1]`` (uint8 and numpy accepted)."""
        return self.forward_rgb(self.resize(images))


class TwoBranchDetector(_DetectorBase):
    """Two-branch detector: an RGB backbone and a defocus-map backbone, pooled features fused, linear head.

    Fusion ``"concat"`` (default) concatenates the two feature vectors: each branch keeps its own
    evidence and the head can weigh them. ``"product"`` multiplies them element-wise as the reference's
    MultiBranch network does (both branches must have the same feature width); a product lets either
    branch veto the other (a zero feature silences its partner), which makes the fused model harder to
    train and to attribute, hence not our default.

    Parameters
    ----------
    rgb_backbone, defocus_backbone : str
        Backbone names (see :func:`create_backbone`).
    estimator, map_norm, sigma_max, map_channels, map_size
        As for :class:`DefocusDetector`.
    input_size, input_norm
        As for :class:`RGBDetector`.
    fusion : {"concat", "product"}
        Feature fusion.

    Examples
    --------
    >>> det = TwoBranchDetector(estimator={"size": 64})                          # doctest: +SKIP
    >>> det.forward_pair(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)).shape  # doctest: +SKIP
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
            estimator=_estimator_config(self.defocus.estimator),
            map_norm=map_norm, sigma_max=float(sigma_max), map_channels=int(map_channels),
            input_norm=input_norm, input_size=input_size, fusion=fusion,
        )

    def config(self) -> dict:
        """Constructor parameters as a JSON-able dict."""
        d, r = self.defocus.config(), self.rgb.config()
        return {
            "rgb_backbone": r["backbone"], "defocus_backbone": d["backbone"], "estimator": d["estimator"],
            "map_norm": d["map_norm"], "sigma_max": d["sigma_max"], "map_channels": d["map_channels"],
            "map_size": d["map_size"], "input_size": r["input_size"], "input_norm": r["input_norm"],
            "fusion": self.fusion,
        }

    def map_from_images(self, images) -> torch.Tensor:
        """Normalized defocus maps, as :meth:`DefocusDetector.map_from_images`."""
        return self.defocus.map_from_images(images)

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
        x = _as_image_batch(images, device=self.device)
        return self.rgb.resize(x), self.defocus.map_from_images(x)

    def forward_prepared(self, rgb: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_pair`."""
        return self.forward_pair(rgb, maps)

    def forward(self, images) -> torch.Tensor:
        """Logits ``(B, 1)`` from images in ``[0, 1]``."""
        return self.forward_pair(*self.prepare(images))


def build_detector(arch: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a detector from its architecture name and ``config()`` dict."""
    config = copy.deepcopy(dict(config))
    if arch == "defocus":
        return DefocusDetector(**config)
    if arch == "rgb":
        return RGBDetector(**config)
    if arch == "two-branch":
        return TwoBranchDetector(**config)
    raise ValueError(f"unknown detector architecture {arch!r}: expected 'defocus', 'rgb' or 'two-branch'")
