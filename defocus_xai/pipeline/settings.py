"""The analysis settings every pipeline stage shares, in one frozen dataclass, with the paper's as a preset.

``demo``, ``paper_figures``, the examples and the notebooks pass one :class:`PipelineSettings` to the
stages, so a setting is written once; :meth:`PipelineSettings.paper` switches on every setting of the
paper's code. See ``docs/demo.md`` and ``docs/reproduce_paper.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..analysis.pairs import RGB_REDUCTIONS

__all__ = ["PipelineSettings", "PAPER_SETTINGS"]

_EMBED_METHODS = ("tsne", "pca", "umap")
_BORDERS = ("zeros", "reflect", "nearest", "valid")

PAPER_SETTINGS = {"variance_border": "zeros", "alignment_eps": 1e-8, "rgb_reduction": "channel0",
                  "embed_seed": 42, "threshold": 0.1, "window": 15, "alignment_bins": 20}
"""The analysis settings of the paper's code, by field name (the attribution part is
``AttributionSettings.paper()``)."""


@dataclass(frozen=True)
class PipelineSettings:
    """Settings of the analysis stages (masks, variance, embedding, alignment, localization, checks).

    Defaults follow the paper's code where its choice is a convention (eps 1e-8, t-SNE seed 42,
    threshold 0.1, 15 px window, 20 bins); where it is a flaw ours stays the default (RGB attributions
    keep every channel; the local variance mirrors the map at its border instead of counting zero padding
    as data). :meth:`paper` is the paper's code in full.

    Attributes
    ----------
    threshold : float
        Binary-mask threshold on normalized maps (the paper's 0.1).
    window : int
        Side of the local-variance window in pixels (the paper's 15).
    variance_border : {"zeros", "reflect", "nearest", "valid"}
        Border of the local variance (:func:`~defocus_xai.analysis.local_variance`): ``"reflect"``
        (ours) or ``"zeros"``, the paper's ``avg_pool2d(padding=window // 2)`` with padded zeros counted.
    alignment_eps : float
        Epsilon of the alignment's KL divergence (the paper's 1e-8).
    alignment_bins : int
        Bins of the fake's defocus values in the alignment score (the paper's 20).
    rgb_reduction : {"sum_abs", "channel0"}
        RGB attributions to one map (:func:`~defocus_xai.analysis.reduce_rgb`): ``sum_c |a_c|`` (ours)
        or ``|a_0|`` (the paper's code, which drops channels 1 and 2).
    n_boot : int
        Bootstrap replicates of every confidence interval.
    n_permutations : int
        Permutations of the alignment baseline (capped at 10 per pair).
    seed : int
        Seed of the example draw, bootstraps, permutations and random baselines.
    embed_method : {"tsne", "pca", "umap"}
        Embedding of the detector features (PCA below 10 samples).
    embed_seed : int
        Random state of the embedding (the paper's t-SNE ``random_state=42``).
    perplexity : float, optional
        t-SNE perplexity; default ``min(30, (n - 1) / 3)`` (the paper's notebook shows 5, 10, 20, 40).
    max_examples : int
        Example pairs drawn for the per-example figures.
    n_steps : int
        Steps of the deletion / insertion curves.
    attribution : AttributionSettings, optional
        The attribution part, for :func:`~defocus_xai.explain.export_attributions` (``settings=``);
        None: the exporter's defaults.

    Examples
    --------
    >>> s = PipelineSettings(n_boot=200)
    >>> s.replace(seed=3).seed, s.window, s.variance_border
    (3, 15, 'reflect')
    >>> PipelineSettings.paper().rgb_reduction
    'channel0'
    """

    threshold: float = 0.1
    window: int = 15
    variance_border: str = "reflect"
    alignment_eps: float = 1e-8
    alignment_bins: int = 20
    rgb_reduction: str = "sum_abs"
    n_boot: int = 1000
    n_permutations: int = 200
    seed: int = 0
    embed_method: str = "tsne"
    embed_seed: int = 42
    perplexity: float | None = None
    max_examples: int = 3
    n_steps: int = 10
    attribution: Any = None

    def __post_init__(self):
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold!r}")
        for name in ("window", "n_boot", "max_examples", "n_steps", "alignment_bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.n_permutations) < 0:
            raise ValueError(f"n_permutations must be >= 0, got {self.n_permutations!r}")
        choices = {"embed_method": _EMBED_METHODS, "variance_border": _BORDERS, "rgb_reduction": RGB_REDUCTIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not float(self.alignment_eps) >= 0:
            raise ValueError(f"alignment_eps must be >= 0, got {self.alignment_eps!r}")
        if self.perplexity is not None and not float(self.perplexity) > 0:
            raise ValueError(f"perplexity must be > 0 or None, got {self.perplexity!r}")
        if self.attribution is not None and not hasattr(self.attribution, "to_meta"):
            raise TypeError("attribution must be an AttributionSettings or None, got "
                            f"{type(self.attribution).__name__}")

    @classmethod
    def paper(cls, **changes) -> "PipelineSettings":
        """Every setting of the paper's code: :data:`PAPER_SETTINGS` plus ``AttributionSettings.paper()``.

        Parameters
        ----------
        **changes
            Fields to set differently (e.g. ``n_boot``), applied last.

        Examples
        --------
        >>> s = PipelineSettings.paper(n_boot=200)
        >>> s.variance_border, s.alignment_eps, s.rgb_reduction, s.embed_seed, s.n_boot
        ('zeros', 1e-08, 'channel0', 42, 200)
        >>> s.differences_from_paper()
        {}
        """
        from ..explain.settings import AttributionSettings

        return cls(**{**PAPER_SETTINGS, "attribution": AttributionSettings.paper(), **changes})

    def differences_from_paper(self) -> dict:
        """Setting name -> (this value, the paper's) for every analysis setting that differs from the paper.

        The attribution part is compared through its ``to_meta()`` (``"attribution.<field>"``); with
        ``attribution=None`` the exporter's defaults are not compared.

        Examples
        --------
        >>> PipelineSettings().differences_from_paper()["rgb_reduction"]
        ('sum_abs', 'channel0')
        """
        out = {k: (getattr(self, k), v) for k, v in PAPER_SETTINGS.items() if getattr(self, k) != v}
        if self.attribution is not None:
            from ..explain.settings import AttributionSettings

            mine, paper = self.attribution.to_meta(), AttributionSettings.paper().to_meta()
            out.update({f"attribution.{k}": (mine.get(k), v) for k, v in paper.items()
                        if k != "seed" and mine.get(k) != v})
        return out

    def replace(self, **changes) -> "PipelineSettings":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The settings as a plain dict (recorded in ``results.json``); the attribution part as its meta."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["attribution"] = None if self.attribution is None else self.attribution.to_meta()
        return out
