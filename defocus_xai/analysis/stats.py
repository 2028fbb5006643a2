"""Statistics shared by the analyses: group (cluster) bootstrap CIs, paired tests and effect sizes.

With ``groups`` the bootstrap resamples whole groups (frames of one video are not independent) and
reports the number of groups as ``n_units``; two sides that share group ids (a fake and the real it was
made from) are resampled jointly. Randomness comes only from ``numpy.random.default_rng(seed)``.
See docs/analysis.md.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ._checks import as_float_array, as_labels, check_confidence

__all__ = ["BootstrapCI", "bootstrap_mean_ci", "bootstrap_difference_ci", "paired_signed_rank", "cliffs_delta",
           "cohens_d"]

# Largest number of (replicate x unit) weights held in memory at once.
_BLOCK = 1 << 22


@dataclass(frozen=True)
class BootstrapCI:
    """A percentile bootstrap confidence interval.

    Attributes
    ----------
    estimate : float
        The statistic on the original data (a mean, or a difference of means).
    low, high : float
        Percentile bounds of the bootstrap distribution at level ``confidence``.
    confidence : float
        Two-sided level, e.g. 0.95.
    n_boot : int
        Number of bootstrap replicates.
    n_units : int
        Independent units that were resampled (groups, or samples when no groups were given); for a
        difference of two independent sides, the sum over both sides; for a paired difference (sides
        sharing group ids), the number of distinct ids.
    paired : bool
        The two sides of a difference were resampled jointly by their shared ids.
    too_few_units : bool
        The interval rests on fewer than 2 units (on a side, for an unpaired difference): ``low`` and
        ``high`` are NaN instead of a misleading zero-width interval, and a ``UserWarning`` is emitted.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_boot: int
    n_units: int
    paired: bool = False
    too_few_units: bool = False

    def to_dict(self) -> dict:
        """Plain-Python dictionary of the fields."""
        return asdict(self)


def group_codes(groups, n: int) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 for per-sample group labels (``None``: one group per sample).

    Returns
    -------
    codes : ndarray of int64, shape (n,)
    n_units : int
    """
    if groups is None:
        return np.arange(n, dtype=np.int64), n
    labels = as_labels(groups, "groups", n)
    if np.any(pd.isna(labels)):
        raise ValueError("groups contains missing values (None / NaN); give every sample a group id")
    codes, uniques = pd.factorize(labels, sort=True)
    return codes.astype(np.int64), int(len(uniques))


def _unit_sums(values: np.ndarray, codes: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    sums = np.bincount(codes, weights=values, minlength=n_units)
    counts = np.bincount(codes, minlength=n_units).astype(np.float64)
    return sums, counts


def _resample_weights(n_units: int, n_boot: int, rng):
    """``(rows, w)`` blocks of the ``(n_boot, n_units)`` draw counts of resampling units with replacement."""
    block = max(1, _BLOCK // max(n_units, 1))
    p = np.full(n_units, 1.0 / n_units)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        yield slice(start, stop), rng.multinomial(n_units, p, size=stop - start).astype(np.float64)


def _replicate_means(sums, counts, n_boot, rng) -> np.ndarray:
    """Pooled means of ``n_boot`` resamples of units (with replacement)."""
    out = np.empty(n_boot, dtype=np.float64)
    for rows, w in _resample_weights(sums.shape[0], n_boot, rng):
        out[rows] = (w @ sums) / (w @ counts)
    return out


def _prepare(values, groups, name):
    v = as_float_array(values, name).astype(np.float64, copy=False)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
    if v.size == 0:
        raise ValueError(f"{name} is empty: nothing to bootstrap")
    codes, n_units = group_codes(groups, v.shape[0])
    return v, codes, n_units


def _percentiles(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def bootstrap_mean_ci(values, groups=None, *, n_boot: int = 2000, confidence: float = 0.95,
                      seed=0) -> BootstrapCI:
    """Percentile bootstrap CI of the mean, resampling groups when given.

    Parameters
    ----------
    values : array_like, shape (n,)
        Per-sample values (finite).
    groups : array_like, shape (n,), optional
        Independent-unit id per sample (e.g. video id). Whole groups are resampled.
    n_boot : int
        Number of replicates (>= 1).
    confidence : float
        Two-sided level in (0, 1).
    seed : int or numpy.random.Generator
        Source of randomness.

    Returns
    -------
    BootstrapCI

    Examples
    --------
    >>> ci = bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0], groups=["a", "a", "b", "b"], n_boot=200)
    >>> ci.n_units, ci.estimate
    (2, 2.5)
    """
    confidence = check_confidence(confidence)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    v, codes, n_units = _prepare(values, groups, "values")
    if n_units < 2:
        return _too_few(float(v.mean()), confidence, n_boot, n_units, False, f"{n_units} unit")
    rng = np.random.default_rng(seed)
    sums, counts = _unit_sums(v, codes, n_units)
    reps = _replicate_means(sums, counts, int(n_boot), rng)
    lo, hi = _percentiles(reps, confidence)
    return BootstrapCI(float(v.mean()), lo, hi, confidence, int(n_boot), n_units)


def _too_few(estimate, confidence, n_boot, n_units, paired, what) -> BootstrapCI:
    warnings.warn(f"bootstrap CI rests on {what} (fewer than 2 independent units): no interval is "
                  "reported (low = high = NaN, too_few_units=True)", UserWarning, stacklevel=3)
    return BootstrapCI(estimate, float("nan"), float("nan"), confidence, int(n_boot), n_units, paired, True)


def shares_ids(groups_x, groups_y) -> bool:
    """True when both sides have group ids and at least one id occurs on both sides (a paired design)."""
    if groups_x is None or groups_y is None:
        return False
    return bool(np.intersect1d(np.asarray(groups_x).astype(str), np.asarray(groups_y).astype(str)).size)


def _joint_codes(gx, gy, nx: int, ny: int):
    """Codes of both sides over the union of their ids, and the number of distinct ids."""
    lx = as_labels(gx, "groups_x", nx)
    ly = as_labels(gy, "groups_y", ny)
    both = np.concatenate([lx.astype(str), ly.astype(str)])
    codes, uniques = pd.factorize(both, sort=True)
    return codes[:nx].astype(np.int64), codes[nx:].astype(np.int64), int(len(uniques))


def _paired_reps(vx, cx, vy, cy, n_units, n_boot, rng) -> np.ndarray:
    """Replicates of mean(y) - mean(x) with the same resampled ids on both sides (NaN: a side drawn empty)."""
    sx, nx = _unit_sums(vx, cx, n_units)
    sy, ny = _unit_sums(vy, cy, n_units)
    out = np.empty(n_boot, dtype=np.float64)
    for rows, w in _resample_weights(n_units, n_boot, rng):
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = (w @ sy) / (w @ ny) - (w @ sx) / (w @ nx)
    return out


def bootstrap_difference_ci(x, y, groups_x=None, groups_y=None, *, n_boot: int = 2000,
                            confidence: float = 0.95, seed=0) -> BootstrapCI:
    """Percentile bootstrap CI of ``mean(y) - mean(x)``, paired when the sides share group ids.

    Without shared ids the two sides are independent and each is resampled on its own (by groups where
    given); ``n_units`` is the sum over both sides. When ``groups_x`` and ``groups_y`` share ids (a fake
    and the real it was made from carry the same source id), the ids are resampled *jointly*: each
    replicate draws ids with replacement from the union of both sides' ids and takes every frame of a
    drawn id on both sides; ``n_units`` is the number of distinct ids and ``paired`` is True.

    Parameters
    ----------
    x, y : array_like, shape (n_x,), (n_y,)
        Per-sample values of the two sides (finite).
    groups_x, groups_y : array_like, optional
        Independent-unit id per sample of each side.
    n_boot, confidence, seed
        As in :func:`bootstrap_mean_ci`.

    Returns
    -------
    BootstrapCI
        ``too_few_units`` (NaN bounds and a warning) when a side of an unpaired difference, or a paired
        difference, has fewer than 2 units.

    Examples
    --------
    >>> ci = bootstrap_difference_ci([0.0, 0.1, 0.2], [1.0, 1.1, 1.2], n_boot=200)
    >>> round(ci.estimate, 6)
    1.0
    >>> bootstrap_difference_ci([0.0, 0.5, 0.2], [1.0, 1.4, 1.1], ["a", "b", "c"], ["a", "b", "c"],
    ...                         n_boot=200).n_units
    3
    """
    confidence = check_confidence(confidence)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    vx, cx, gx = _prepare(x, groups_x, "x")
    vy, cy, gy = _prepare(y, groups_y, "y")
    estimate = float(vy.mean() - vx.mean())
    rng = np.random.default_rng(seed)
    if shares_ids(groups_x, groups_y):
        cx, cy, n_units = _joint_codes(groups_x, groups_y, vx.size, vy.size)
        if n_units < 2:
            return _too_few(estimate, confidence, n_boot, n_units, True, f"{n_units} shared id")
        reps = _paired_reps(vx, cx, vy, cy, n_units, int(n_boot), rng)
        lo, hi = _percentiles(reps[np.isfinite(reps)], confidence)
        return BootstrapCI(estimate, lo, hi, confidence, int(n_boot), n_units, True)
    if min(gx, gy) < 2:
        return _too_few(estimate, confidence, n_boot, gx + gy, False, f"{gx} and {gy} units per side")
    rx = _replicate_means(*_unit_sums(vx, cx, gx), int(n_boot), rng)
    ry = _replicate_means(*_unit_sums(vy, cy, gy), int(n_boot), rng)
    lo, hi = _percentiles(ry - rx, confidence)
    return BootstrapCI(estimate, lo, hi, confidence, int(n_boot), gx + gy)


def paired_signed_rank(x, y, groups_x, groups_y, *, alternative: str = "two-sided") -> tuple:
    """Wilcoxon signed-rank test on per-id differences ``mean_y(id) - mean_x(id)`` over the shared ids.

    Each side is averaged per id first (one value per source), then the ids present on both sides are
    paired. All-zero differences give p = 1.

    Returns
    -------
    (statistic, p_value, n_pairs) : tuple
        ``(None, None, n_pairs)`` when fewer than 2 ids are shared.

    Examples
    --------
    >>> stat, p, n = paired_signed_rank([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [1.0, 1.1, 1.2, 1.3, 1.4, 1.5],
    ...                                 list("abcdef"), list("abcdef"))
    >>> n, round(p, 4)
    (6, 0.0312)
    """
    vx = np.asarray(x, dtype=np.float64).ravel()
    vy = np.asarray(y, dtype=np.float64).ravel()
    mx = pd.Series(vx).groupby(as_labels(groups_x, "groups_x", vx.size).astype(str)).mean()
    my = pd.Series(vy).groupby(as_labels(groups_y, "groups_y", vy.size).astype(str)).mean()
    shared = mx.index.intersection(my.index)
    n_pairs = int(shared.size)
    if n_pairs < 2:
        return None, None, n_pairs
    d = (my.loc[shared] - mx.loc[shared]).to_numpy()
    if not np.any(d):
        return 0.0, 1.0, n_pairs
    res = stats.wilcoxon(d, alternative=alternative)
    return float(res.statistic), float(res.pvalue), n_pairs


def cliffs_delta(x, y) -> float:
    """Cliff's delta ``P(y > x) - P(y < x)`` over all pairs, in [-1, 1] (ties count zero).

    Computed from the Mann-Whitney U statistic in O(n log n).

    Examples
    --------
    >>> cliffs_delta([1, 2], [3, 4])
    1.0
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError("cliffs_delta needs two non-empty samples")
    ranks = stats.rankdata(np.concatenate([x, y]))
    u_y = ranks[x.size:].sum() - y.size * (y.size + 1) / 2.0
    return float(2.0 * u_y / (x.size * y.size) - 1.0)


def cohens_d(x, y) -> float:
    """Cohen's d, ``(mean(y) - mean(x)) / pooled_sd`` (pooled SD with ddof 1); 0 when both are constant.

    Examples
    --------
    >>> round(cohens_d([0.0, 2.0], [2.0, 4.0]), 6)
    1.414214
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2 or y.size < 2:
        raise ValueError("cohens_d needs at least two values per sample")
    pooled = ((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1)) / (x.size + y.size - 2)
    diff = y.mean() - x.mean()
    if pooled == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / np.sqrt(pooled))
