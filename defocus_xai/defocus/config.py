"""The estimator's settings, written once: :class:`EstimatorConfig` (a frozen, validated dataclass).

Bundled and saved detectors record ``EstimatorConfig.to_dict()`` with their weights; the keys and values
of that dict are part of the saved-model format.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from .edges import DEFAULT_HIGH, DEFAULT_LOW, DEFAULT_MIN_CONTRAST
from .resize import resolve_size

__all__ = ["EstimatorConfig", "PROPAGATIONS", "RECIPES", "DEFAULT_SIZE", "DEFAULT_SIGMA_MAX"]

PROPAGATIONS = ("guided", "matting", "none")
RECIPES = ("ours", "robust", "reference")
REFERENCE_INPUT_RANGES = ("[-1,1]", "[0,1]")
DEFAULT_SIZE = 299
DEFAULT_SIGMA_MAX = 5.0
#: The re-blur pair ``(std1, std2)`` each recipe uses when none is given.
RECIPE_STDS = {"ours": (1.5, 2.0), "robust": (1.0, 1.5), "reference": (2.0, 2.5)}
_INTS = ("guided_radius", "subsample")
_NOT_FLOATS = ("recipe", "size", "propagation", "reference_input_range")


@dataclass(frozen=True, kw_only=True)
class EstimatorConfig:
    """Every setting of the defocus estimator (the recipe of its maps), validated at construction.

    Parameters
    ----------
    recipe : {"ours", "robust", "reference"}
        ``"ours"``: the corrected estimator. ``"robust"``: the same, made robust on real textures
        (JPEG's luma as gray, noise-aware edge thresholds and gradient energies, a multi-edge fit of
        the gradient profile, a local median of the edge values and occlusion-boundary and
        persistence weights carried into the propagation; 6-8x slower on typical images, up to 20x
        on edge-dense ones; see ``docs/estimator.md``). ``"reference"``: the published
        research code's recipe, reproduced for its checkpoints (see ``docs/reference_recipe.md``).
    size : int, (int, int) or None
        Images are resized to ``size x size`` (bilinear, antialiased when downscaling) before
        estimation; sigma is in pixels of that grid. ``None`` keeps the input size.
    std1, std2 : float, optional
        The re-blur pair (``0 < std1 < std2``, pixels). ``None``: 1.5 / 2.0 for ``"ours"``,
        1.0 / 1.5 for ``"robust"`` (less interference from neighbouring edges), 2.0 / 2.5 for
        ``"reference"``; the resolved values are stored.
    edge_sigma : float
        Scale (px) of the Canny gradient.
    propagation : {"guided", "matting", "none"}
        How sparse edge sigma becomes a dense map (``"reference"``: ``"guided"`` only, its own filter).
    sigma_max : float
        Upper clamp of sigma in pixels (``"ours"``, ``"robust"``; the reference recipe clamps at 5).
    low_threshold, high_threshold : float
        Canny thresholds as fractions of each image's 99th percentile of gradient magnitude.
    min_contrast : float
        Contrast of the weakest sharp step that can be an edge (floor of both thresholds).
    fill_std : float
        Std (px) of the normalized convolution of ``"guided"`` propagation.
    guided_radius : int
        Window half-width (px) of the guided filter.
    guided_eps : float
        Regularization of the guided filter.
    structure_scale : float
        ``"guided"``: edge pixels are weighted by ``exp(-(rho / structure_scale)^2)``, ``rho``
        measuring how far the image departs from a straight edge there; ``0`` weights all equally
        (``"ours"`` only; ``"robust"`` weights edges by its boundary test).
    subsample : int
        ``"guided"``: the propagation runs on a grid subsampled by this factor (fast guided filter);
        ``1`` = exact.
    matting_lambda, matting_eps : float, optional
        Data-term weight and covariance regularization of ``"matting"`` propagation (``None``: the
        defaults of :mod:`defocus_xai.defocus.matting`, 0.5 and 1e-3).
    reference_input_range : {"[-1,1]", "[0,1]"}
        ``"reference"`` only: the range the caller's ``[0, 1]`` image is mapped to (the training
        convention of the published checkpoints is ``"[-1,1]"``).

    Raises
    ------
    ValueError
        For an unknown recipe or propagation, or a value out of its range.

    Examples
    --------
    >>> from defocus_xai.defocus import EstimatorConfig
    >>> cfg = EstimatorConfig(size=128, recipe="reference")
    >>> cfg.std1, cfg.std2
    (2.0, 2.5)
    >>> EstimatorConfig(**cfg.to_dict()) == cfg
    True
    """

    recipe: str = "ours"
    size: int | tuple[int, int] | None = DEFAULT_SIZE
    std1: float | None = None
    std2: float | None = None
    edge_sigma: float = 1.5
    propagation: str = "guided"
    sigma_max: float = DEFAULT_SIGMA_MAX
    low_threshold: float = DEFAULT_LOW
    high_threshold: float = DEFAULT_HIGH
    min_contrast: float = DEFAULT_MIN_CONTRAST
    fill_std: float = 2.0
    guided_radius: int = 4
    guided_eps: float = 1e-3
    structure_scale: float = 0.2
    subsample: int = 2
    matting_lambda: float | None = None
    matting_eps: float | None = None
    reference_input_range: str = "[-1,1]"

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        if self.propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {self.propagation!r}")
        d1, d2 = RECIPE_STDS[self.recipe]
        std1 = float(d1 if self.std1 is None else self.std1)
        std2 = float(d2 if self.std2 is None else self.std2)
        if not 0 < std1 < std2:
            raise ValueError(f"need 0 < std1 < std2, got std1={std1}, std2={std2}")
        if not self.edge_sigma > 0:
            raise ValueError(f"edge_sigma must be > 0, got {self.edge_sigma}")
        if not self.sigma_max > 0:
            raise ValueError(f"sigma_max must be > 0, got {self.sigma_max}")
        if not 0 <= self.low_threshold <= self.high_threshold:
            raise ValueError(f"need 0 <= low_threshold <= high_threshold, got {self.low_threshold}, "
                             f"{self.high_threshold}")
        if self.recipe == "reference" and self.propagation != "guided":
            raise ValueError("recipe='reference' has its own propagation (a guided filter over the "
                             f"zero-filled sparse map); propagation={self.propagation!r} is not available")
        if self.reference_input_range not in REFERENCE_INPUT_RANGES:
            raise ValueError("reference_input_range must be '[-1,1]' or '[0,1]', got "
                             f"{self.reference_input_range!r}")
        if int(self.subsample) < 1:
            raise ValueError(f"subsample must be >= 1, got {self.subsample}")
        from .matting import DEFAULT_EPS, DEFAULT_LAMBDA

        hw = resolve_size(self.size)
        size = None if hw is None else (hw if isinstance(self.size, (tuple, list)) else hw[0])
        resolved = dict(
            size=size, std1=std1, std2=std2,
            matting_lambda=DEFAULT_LAMBDA if self.matting_lambda is None else self.matting_lambda,
            matting_eps=DEFAULT_EPS if self.matting_eps is None else self.matting_eps)
        for f in dataclasses.fields(self):
            value = resolved.get(f.name, getattr(self, f.name))
            if f.name in _INTS:
                value = int(value)
            elif f.name not in _NOT_FLOATS:
                value = float(value)
            object.__setattr__(self, f.name, value)

    @property
    def grid(self) -> tuple[int, int] | None:
        """The ``(H, W)`` grid the maps are computed on (``None``: the input's own size).

        Examples
        --------
        >>> from defocus_xai.defocus import EstimatorConfig
        >>> EstimatorConfig(size=64).grid
        (64, 64)
        """
        return resolve_size(self.size)

    def to_dict(self) -> dict:
        """The settings as a JSON-able dict (``size`` pairs as lists); ``EstimatorConfig(**d)`` rebuilds it.

        Returns
        -------
        dict

        Examples
        --------
        >>> from defocus_xai.defocus import EstimatorConfig
        >>> d = EstimatorConfig(size=(96, 128)).to_dict()
        >>> d["recipe"], d["size"], d["std1"]
        ('ours', [96, 128], 1.5)
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(out["size"], tuple):
            out["size"] = list(out["size"])
        json.dumps(out)
        return out
