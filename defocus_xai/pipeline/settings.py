"""The analysis settings every pipeline stage shares, in one frozen dataclass.

``demo``, ``paper_figures``, the examples and the notebooks pass one :class:`PipelineSettings` to the
stages, so a setting is written once. See ``docs/demo.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["PipelineSettings"]

_EMBED_METHODS = ("tsne", "pca", "umap")


@dataclass(frozen=True)
class PipelineSettings:
    """Settings of the analysis stages (masks, variance, embedding, alignment, localization, checks).

    Attributes
    ----------
    threshold : float
        Binary-mask threshold on normalized maps (the paper's 0.1).
    window : int
        Side of the local-variance window in pixels (the paper's 15).
    n_boot : int
        Bootstrap replicates of every confidence interval.
    n_permutations : int
        Permutations of the alignment baseline (capped at 10 per pair).
    seed : int
        Seed of the example draw, bootstraps, permutations, the embedding and random baselines.
    embed_method : {"tsne", "pca", "umap"}
        Embedding of the detector features (PCA below 10 samples).
    max_examples : int
        Example pairs drawn for the per-example figures.
    n_steps : int
        Steps of the deletion / insertion curves.

    Examples
    --------
    >>> s = PipelineSettings(n_boot=200)
    >>> s.replace(seed=3).seed, s.window
    (3, 15)
    """

    threshold: float = 0.1
    window: int = 15
    n_boot: int = 1000
    n_permutations: int = 200
    seed: int = 0
    embed_method: str = "tsne"
    max_examples: int = 3
    n_steps: int = 10

    def __post_init__(self):
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold!r}")
        for name in ("window", "n_boot", "max_examples", "n_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.n_permutations) < 0:
            raise ValueError(f"n_permutations must be >= 0, got {self.n_permutations!r}")
        if self.embed_method not in _EMBED_METHODS:
            raise ValueError(f"embed_method must be one of {_EMBED_METHODS}, got {self.embed_method!r}")

    def replace(self, **changes) -> "PipelineSettings":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The settings as a plain dict (recorded in ``results.json``)."""
        return dataclasses.asdict(self)
