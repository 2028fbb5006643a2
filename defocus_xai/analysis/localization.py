"""Localization of attributions against ground-truth manipulation masks (beyond the paper).

Pointing game, relevance mass and rank accuracy and pixel AUROC, as defined by Quantus, on arrays;
``mode`` turns an attribution into relevance the same way for every metric. See docs/analysis.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._checks import as_attribution_batch, as_float_array, as_labels, check_confidence, reduce_attribution
from ._results import plain_dict
from .stats import bootstrap_mean_ci, group_codes

__all__ = ["pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "attribution_auroc",
           "localization_scores", "LocalizationSummary", "LOCALIZATION_METRICS"]

#: Column names of the per-sample localization table, in order.
LOCALIZATION_METRICS = ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "auroc")


def _mask(mask, shape, name="mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.shape != shape:
        raise ValueError(f"{name} has shape {np.asarray(mask).shape}; expected {shape} (the attribution's H, W)")
    if m.dtype != bool:
        m = as_float_array(m, name) != 0
    return m


def _prepare(attribution, mask, mode, *, allow_full=False):
    rel = reduce_attribution(attribution, "attribution", mode=mode)
    m = _mask(mask, rel.shape)
    n_in = int(m.sum())
    if n_in == 0:
        raise ValueError("mask is empty: localization is undefined")
    if n_in == m.size and not allow_full:
        raise ValueError("mask covers the whole image: localization is trivial")
    if rel.max() == rel.min():
        raise ValueError(f"relevance (mode={mode!r}) is constant over the image: it points nowhere")
    return rel, m


def _dilate(m: np.ndarray, tolerance: float) -> np.ndarray:
    if tolerance <= 0:
        return m
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~m) <= tolerance


def pointing_game(attribution, mask, *, tolerance: float = 0.0, weighted: bool = False,
                  mode: str = "abs") -> float:
    """1.0 when the most relevant pixel lies inside the mask, else 0.0.

    Parameters
    ----------
    attribution : array_like, shape (H, W) or (C, H, W)
    mask : array_like, shape (H, W) or (1, H, W)
        Ground truth; nonzero = manipulated.
    tolerance : float
        Also count a maximum within this Euclidean distance (pixels) of the mask.
    weighted : bool
        Score a hit ``1 - mask_area / image_area`` instead of 1 (Quantus' ``weighted``).
    mode : {"abs", "positive", "raw"}
        How relevance is formed: ``"abs"`` ``sum_c |a_c|``, ``"positive"`` ``max(sum_c a_c, 0)``,
        ``"raw"`` ``sum_c a_c``.

    Examples
    --------
    >>> a = np.zeros((4, 4)); a[1, 2] = 5.0
    >>> m = np.zeros((4, 4), bool); m[1, 2] = True
    >>> pointing_game(a, m)
    1.0
    >>> pointing_game(a, np.roll(m, 2, axis=0)), pointing_game(a, np.roll(m, 2, axis=0), tolerance=2)
    (0.0, 1.0)
    """
    rel, m = _prepare(attribution, mask, mode, allow_full=True)
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite non-negative number, got {tolerance!r}")
    hit = bool(np.any(_dilate(m, float(tolerance))[rel == rel.max()]))
    if not hit:
        return 0.0
    return float(1.0 - m.sum() / m.size) if weighted else 1.0


def relevance_mass_accuracy(attribution, mask, *, mode: str = "abs") -> float:
    """Share of the total relevance that falls inside the mask, in [0, 1] for "abs" / "positive".

    With ``mode="raw"`` negative relevance is kept (as given); a non-positive total raises.

    Examples
    --------
    >>> a = np.array([[3.0, 1.0], [0.0, 0.0]])
    >>> relevance_mass_accuracy(a, np.array([[1, 0], [0, 0]]))
    0.75
    """
    rel, m = _prepare(attribution, mask, mode, allow_full=True)
    total = rel.sum()
    if total <= 0:
        raise ValueError(f"total relevance is {total:.4g} (mode={mode!r}); the mass ratio is undefined")
    return float(rel[m].sum() / total)


def relevance_rank_accuracy(attribution, mask, *, mode: str = "abs") -> float:
    """Fraction of the K most relevant pixels inside the mask, K = number of mask pixels.

    Ties at the K-th relevance value are counted by their expected share.

    Examples
    --------
    >>> a = np.array([[4.0, 3.0], [2.0, 1.0]])
    >>> relevance_rank_accuracy(a, np.array([[1, 0], [1, 0]]))
    0.5
    """
    rel, m = _prepare(attribution, mask, mode, allow_full=True)
    r = rel.ravel()
    inside = m.ravel()
    k = int(inside.sum())
    kth = np.partition(r, r.size - k)[r.size - k]  # K-th largest value
    above = r > kth
    tie = r == kth
    slots = k - int(above.sum())
    hits = float(np.count_nonzero(above & inside)) + slots * np.count_nonzero(tie & inside) / np.count_nonzero(tie)
    return float(hits / k)


def attribution_auroc(attribution, mask, *, mode: str = "abs") -> float:
    """ROC AUC of relevance as a pixel score for membership of the mask (0.5 = chance).

    Examples
    --------
    >>> a = np.array([[0.9, 0.8], [0.1, 0.2]])
    >>> attribution_auroc(a, np.array([[1, 1], [0, 0]]))
    1.0
    """
    from sklearn.metrics import roc_auc_score

    rel, m = _prepare(attribution, mask, mode)
    return float(roc_auc_score(m.ravel(), rel.ravel()))


@dataclass(frozen=True, eq=False)
class LocalizationSummary:
    """Localization metrics over a data set.

    Attributes
    ----------
    per_sample : pandas.DataFrame
        Columns ``sample``, ``group`` (when given), ``pointing_game``, ``relevance_mass_accuracy``,
        ``relevance_rank_accuracy``, ``auroc``, ``mask_fraction`` (mask area / image area, the chance
        level of the mass and rank accuracies); scored samples only.
    summary : pandas.DataFrame
        One row per metric: ``metric, mean, std, ci_low, ci_high, n, n_units, too_few_units`` (CI bounds
        NaN when they would rest on fewer than 2 units).
    skipped : pandas.DataFrame
        Columns ``sample, reason`` (``"empty_mask"``, ``"full_mask"``, ``"constant_attribution"``,
        ``"nonpositive_relevance"``).
    n, n_units, n_skipped : int
        Samples scored, independent units among them, samples skipped.
    mode : str
    tolerance : float
    confidence : float
    text : str
        The result in words: units, and the skipped samples named with their reasons.
    """

    per_sample: pd.DataFrame = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    skipped: pd.DataFrame = field(repr=False)
    n: int
    n_units: int
    n_skipped: int
    mode: str
    tolerance: float
    confidence: float
    text: str

    def to_dict(self, include_per_sample: bool = False) -> dict:
        """Plain-Python dictionary: summary rows, skipped samples, and per-sample rows on request."""
        return plain_dict(self, optional=("per_sample",), include_optional=include_per_sample)


def _skip_reason(rel: np.ndarray, m: np.ndarray) -> str | None:
    """Why a sample cannot be scored, or ``None``."""
    n_in = int(m.sum())
    if n_in == 0:
        return "empty_mask"
    if n_in == m.size:
        return "full_mask"
    if rel.max() == rel.min():
        return "constant_attribution"
    if rel.sum() <= 0:
        return "nonpositive_relevance"
    return None


def _score_samples(at, ms, *, mode, tolerance) -> tuple[list, list]:
    """Per-sample metric rows of the scorable samples, and (sample, reason) of the skipped ones."""
    from sklearn.metrics import roc_auc_score

    rows, skipped = [], []
    for i in range(at.shape[0]):
        rel = reduce_attribution(at[i], f"attributions[{i}]", mode=mode)
        m = _mask(ms[i], rel.shape, f"masks[{i}]")
        reason = _skip_reason(rel, m)
        if reason is not None:
            skipped.append((i, reason))
            continue
        rows.append({
            "sample": i,
            "pointing_game": pointing_game(rel, m, tolerance=tolerance, mode="raw"),
            "relevance_mass_accuracy": relevance_mass_accuracy(rel, m, mode="raw"),
            "relevance_rank_accuracy": relevance_rank_accuracy(rel, m, mode="raw"),
            "auroc": float(roc_auc_score(m.ravel(), rel.ravel())),
            "mask_fraction": float(m.sum()) / m.size,
        })
    return rows, skipped


def _metric_summary(per: pd.DataFrame, groups, n_units: int, *, n_boot, confidence, seed) -> pd.DataFrame:
    rows = []
    for name in LOCALIZATION_METRICS:
        v = per[name].to_numpy(dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # flagged in the too_few_units column
            ci = bootstrap_mean_ci(v, groups, n_boot=n_boot, confidence=confidence, seed=seed)
        rows.append({"metric": name, "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                     "ci_low": ci.low, "ci_high": ci.high, "n": int(v.size), "n_units": n_units,
                     "too_few_units": ci.too_few_units})
    return pd.DataFrame(rows)


def localization_scores(attributions, masks, *, mode: str = "abs", tolerance: float = 0.0,
                        groups=None, n_boot: int = 2000, seed=0, confidence: float = 0.95
                        ) -> LocalizationSummary:
    """All four localization metrics for a batch, with means, bootstrap CIs and reported skips.

    Parameters
    ----------
    attributions : array_like, shape (N, H, W) or (N, C, H, W)
    masks : array_like, shape (N, H, W) or (N, 1, H, W)
        Ground-truth manipulation masks (nonzero inside).
    mode : {"abs", "positive", "raw"}
        Relevance from attribution, as in :func:`pointing_game`.
    tolerance : float
        Pointing-game tolerance in pixels.
    groups : array_like, shape (N,), optional
        Independent unit per sample; the bootstrap resamples groups.
    n_boot, seed, confidence
        Bootstrap of each metric's mean.

    Returns
    -------
    LocalizationSummary
        Degenerate samples (empty or full mask, constant or non-positive relevance) are skipped, counted
        and named (``skipped``, ``text``) with a ``UserWarning``; only when none is left is a
        ``ValueError`` raised.

    Examples
    --------
    >>> m = np.zeros((3, 8, 8)); m[:, 2:4, 2:4] = 1
    >>> a = m * 5 + np.random.default_rng(0).random((3, 8, 8))
    >>> s = localization_scores(a, m, n_boot=100)
    >>> float(s.summary.set_index("metric").loc["pointing_game", "mean"])
    1.0
    """
    confidence = check_confidence(confidence)
    at = as_attribution_batch(attributions, "attributions")
    ms = np.asarray(masks)
    if ms.ndim == 4 and ms.shape[1] == 1:
        ms = ms[:, 0]
    if ms.ndim != 3 or ms.shape[0] != at.shape[0] or ms.shape[1:] != at.shape[-2:]:
        raise ValueError(f"masks has shape {np.asarray(masks).shape}, incompatible with attributions of "
                         f"shape {at.shape} (need (N, H, W) with the attributions' N, H, W)")
    n = at.shape[0]
    group_labels = None if groups is None else as_labels(groups, "groups", n)
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite non-negative number, got {tolerance!r}")
    rows, skipped = _score_samples(at, ms, mode=mode, tolerance=tolerance)
    skipped_df = pd.DataFrame(skipped, columns=["sample", "reason"])
    if skipped:
        counts = skipped_df["reason"].value_counts().to_dict()
        warnings.warn(f"localization_scores skipped {len(skipped)} of {n} samples: {counts}", UserWarning,
                      stacklevel=2)
    if not rows:
        raise ValueError(f"no sample could be scored ({len(skipped)} skipped: "
                         f"{skipped_df['reason'].value_counts().to_dict()})")
    per = pd.DataFrame(rows)
    g_kept = None
    if group_labels is not None:
        g_kept = group_labels[per["sample"].to_numpy()]
        per.insert(1, "group", g_kept)
    _, n_units = group_codes(g_kept, len(per))
    summary = _metric_summary(per, g_kept, n_units, n_boot=n_boot, confidence=confidence, seed=seed)
    text = f"{len(per)} samples scored ({n_units} {'groups' if g_kept is not None else 'units'})."
    if skipped:
        named = ", ".join(f"{i} ({why})" for i, why in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        text += f" {len(skipped)} degenerate sample(s) skipped: {named}."
    if summary["too_few_units"].any():
        text += " Too few units for a CI (bounds NaN)."
    return LocalizationSummary(per_sample=per, summary=summary, skipped=skipped_df, n=len(per),
                               n_units=n_units, n_skipped=len(skipped), mode=mode, tolerance=float(tolerance),
                               confidence=confidence, text=text)
