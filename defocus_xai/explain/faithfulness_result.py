"""The result of :func:`~defocus_xai.explain.deletion_insertion`: curves, areas and their summary."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

__all__ = ["CurveSet", "FaithfulnessResult"]


@dataclass(frozen=True)
class CurveSet:
    """One family of curves in the form :func:`defocus_xai.plot.deletion_curves` reads (``result=``).

    Attributes
    ----------
    fractions : numpy.ndarray, (K,)
    scores : numpy.ndarray, (N, K)
        Probability of fake per sample and fraction.
    auc : float
        Mean area under the curves.
    """

    fractions: np.ndarray
    scores: np.ndarray
    auc: float


@dataclass(frozen=True)
class FaithfulnessResult:
    """Deletion / insertion curves and their areas, for the attribution and for a random ranking.

    Attributes
    ----------
    fractions : numpy.ndarray, (n_steps + 1,) float64
        Fraction of pixels deleted (inserted) at each step, from 0 to 1.
    deletion, insertion : numpy.ndarray, (N, n_steps + 1) float64
        The model's probability of fake (or logit, with ``score="logit"``) along the curves.
        ``deletion[:, 0]`` is the score on the original map and ``deletion[:, -1]`` on the baseline;
        ``insertion`` runs the other way.
    deletion_auc, insertion_auc : numpy.ndarray, (N,) float64
        Trapezoid areas over the fraction in ``[0, 1]`` (lower deletion, higher insertion = better).
    random_deletion, random_insertion : numpy.ndarray or None, (N, n_steps + 1)
        The same with a seeded random ranking of the pixels (None when ``random_baseline=False``).
    random_deletion_auc, random_insertion_auc : numpy.ndarray or None, (N,)
    baseline : str
        Description of the baseline map (``"blur (sigma 1.6 px)"``, ``"zero"``, ``"mean"``, ``"0.5"``,
        ``"given"``).
    n_steps : int
        Steps between no pixel and all pixels changed.
    seed : int
        Seed of the random rankings (sample ``i`` uses ``(seed, i)``).
    score : str
        ``"probability"`` (of fake) or ``"logit"``: what the curves record.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    random_deletion: np.ndarray | None
    random_insertion: np.ndarray | None
    random_deletion_auc: np.ndarray | None
    random_insertion_auc: np.ndarray | None
    baseline: str
    n_steps: int
    seed: int
    score: str = "probability"

    def __len__(self) -> int:
        return int(self.deletion.shape[0])

    def to_dict(self) -> dict:
        """Fields as plain Python values (arrays become lists)."""
        return {f.name: (v.tolist() if isinstance(v := getattr(self, f.name), np.ndarray) else v)
                for f in fields(self)}

    def curves(self, kind: str = "deletion") -> dict[str, CurveSet]:
        """``{"attribution": CurveSet, "random": CurveSet}`` for ``plot.deletion_curves(result=...)``.

        Examples
        --------
        >>> from defocus_xai.plot import deletion_curves                        # doctest: +SKIP
        >>> deletion_curves(result=res.curves("insertion"), kind="insertion")   # doctest: +SKIP
        """
        if kind not in ("deletion", "insertion"):
            raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
        out = {"attribution": CurveSet(self.fractions, getattr(self, kind),
                                       float(np.mean(getattr(self, f"{kind}_auc"))))}
        rnd = getattr(self, f"random_{kind}")
        if rnd is not None:
            out["random"] = CurveSet(self.fractions, rnd, float(np.mean(getattr(self, f"random_{kind}_auc"))))
        return out

    def summary(self) -> pd.DataFrame:
        """Mean, standard deviation and standard error of each area over samples.

        Rows: ``deletion_auc``, ``insertion_auc``, ``insertion_minus_deletion`` (per-sample difference,
        higher = better), ``score_original`` and ``score_baseline`` (the model's score on the original
        and on the baseline map: when they are close, no ranking can make a curve move) and, when
        computed, the ``random_`` counterparts and ``*_vs_random`` (attribution minus random per
        sample: negative is better for deletion, positive for insertion) with the fraction of samples
        where the attribution beats chance (``win_rate``).
        """
        rows = {"deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc,
                "insertion_minus_deletion": self.insertion_auc - self.deletion_auc,
                "score_original": self.deletion[:, 0], "score_baseline": self.deletion[:, -1]}
        wins = {}
        if self.random_deletion_auc is not None:
            rows["random_deletion_auc"] = self.random_deletion_auc
            rows["random_insertion_auc"] = self.random_insertion_auc
            rows["deletion_vs_random"] = self.deletion_auc - self.random_deletion_auc
            rows["insertion_vs_random"] = self.insertion_auc - self.random_insertion_auc
            wins["deletion_vs_random"] = float(np.mean(rows["deletion_vs_random"] < 0))
            wins["insertion_vs_random"] = float(np.mean(rows["insertion_vs_random"] > 0))
        recs = []
        for name, v in rows.items():
            v = np.asarray(v, dtype=np.float64)
            n = v.size
            sd = float(v.std(ddof=1)) if n > 1 else float("nan")
            recs.append({"metric": name, "mean": float(v.mean()), "std": sd,
                         "sem": sd / math.sqrt(n) if n > 1 else float("nan"), "n": n,
                         "win_rate": wins.get(name, float("nan"))})
        return pd.DataFrame.from_records(recs)
