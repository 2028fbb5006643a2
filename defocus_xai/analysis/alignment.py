"""Shapley (attribution) alignment score: does an attribution weigh the defocus levels a manipulation changed?

Histograms of the fake's defocus values weighted by ``|fake - real|`` (A) and by ``|attribution|`` (B),
both L1-normalized; ``overlap = sum(min(A, B))`` and ``kl = KL(B + eps || A + eps)``. See docs/analysis.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
from scipy import stats

from ._checks import (as_attribution_batch, as_labels, as_map_batch, as_single_map, check_confidence,
                      readonly, reduce_attribution)
from ._permutation import permutation_means
from .masks import normalize_maps
from .stats import bootstrap_mean_ci, group_codes

__all__ = ["alignment_score", "alignment_scores", "AlignmentResult", "AlignmentSummary", "DEFAULT_EPS"]

#: Epsilon added to both histograms before the KL divergence (the paper's code does not state its value).
DEFAULT_EPS = 1e-10


@dataclass(frozen=True, eq=False)
class AlignmentResult:
    """Alignment of one attribution with the fake-vs-real defocus difference.

    Attributes
    ----------
    overlap : float
        ``sum(min(hist_diff, hist_attr))`` in [0, 1] (1: identical distributions over defocus bins).
    kl : float
        ``KL(hist_attr + eps || hist_diff + eps)`` (natural log), >= 0.
    hist_diff : ndarray, shape (bins,)
        L1-normalized histogram of fake defocus values weighted by ``|fake - real|``.
    hist_attr : ndarray, shape (bins,)
        L1-normalized histogram of fake defocus values weighted by the attribution magnitude.
    bin_edges : ndarray, shape (bins + 1,)
    """

    overlap: float
    kl: float
    hist_diff: np.ndarray = field(repr=False)
    hist_attr: np.ndarray = field(repr=False)
    bin_edges: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        """Fields as plain Python values (arrays become lists)."""
        return {f.name: (v.tolist() if isinstance(v := getattr(self, f.name), np.ndarray) else v)
                for f in fields(self)}


def _edges(fake: np.ndarray, bins: int, value_range) -> np.ndarray:
    if value_range is None:
        lo, hi = float(fake.min()), float(fake.max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = (float(v) for v in value_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    return np.linspace(lo, hi, int(bins) + 1)


def _bin_index(fake: np.ndarray, edges: np.ndarray, where: str) -> np.ndarray:
    """Bin of every pixel (flattened), numpy.histogram's convention; out-of-range values raise."""
    v = fake.ravel()
    outside = (v < edges[0]) | (v > edges[-1])
    if outside.any():
        raise ValueError(f"{where}: {int(outside.sum())} fake defocus value(s) lie outside value_range "
                         f"[{edges[0]}, {edges[-1]}] (min {v.min():.4g}, max {v.max():.4g}); normalize the "
                         "maps (normalize=True) or widen value_range")
    idx = np.searchsorted(edges, v, side="right") - 1
    return np.minimum(idx, edges.size - 2)


def _check_bins(bins) -> int:
    if isinstance(bins, bool) or int(bins) != bins or int(bins) < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def _score(f: np.ndarray, r: np.ndarray, a_abs: np.ndarray, bins: int, value_range, eps: float,
           where: str):
    """Core computation on one (H, W) triple; returns (overlap, kl, A, B, edges, bin index)."""
    if f.shape != r.shape or f.shape != a_abs.shape:
        raise ValueError(f"{where}: fake map {f.shape}, real map {r.shape} and attribution "
                         f"{a_abs.shape} must have the same (H, W)")
    edges = _edges(f, bins, value_range)
    idx = _bin_index(f, edges, where)
    hd = np.bincount(idx, weights=np.abs(f - r).ravel(), minlength=bins)
    ha = np.bincount(idx, weights=a_abs.ravel(), minlength=bins)
    if hd.sum() <= 0:
        raise ValueError(f"{where}: |fake - real| is zero everywhere, so the difference histogram is "
                         "empty and the alignment is undefined")
    if ha.sum() <= 0:
        raise ValueError(f"{where}: the attribution is zero everywhere, so its histogram is empty and the "
                         "alignment is undefined")
    A = hd / hd.sum()
    B = ha / ha.sum()
    overlap = float(np.minimum(A, B).sum())
    kl = float(stats.entropy(B + eps, A + eps))
    return overlap, kl, A, B, edges, idx


def _check_eps(eps) -> float:
    e = float(eps)
    if not (np.isfinite(e) and e >= 0):
        raise ValueError(f"eps must be a finite non-negative number, got {eps!r}")
    return e


def _prepared(f: np.ndarray, r: np.ndarray, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """The (fake, real) pair as float64, min-max normalized (in float64) when asked."""
    f, r = f.astype(np.float64), r.astype(np.float64)
    if normalize:
        return normalize_maps(f).astype(np.float64), normalize_maps(r).astype(np.float64)
    return f, r


def alignment_score(attribution, *, real_map, fake_map, bins: int = 20, value_range=(0.0, 1.0),
                    eps: float = DEFAULT_EPS, normalize: bool = False) -> AlignmentResult:
    """Alignment of one attribution with where the fake's defocus map differs from its real's.

    Parameters
    ----------
    attribution : array_like, shape (H, W) or (C, H, W)
        Attribution of the detector's output for the fake; reduced to ``sum_c |a_c|``.
    real_map, fake_map : array_like, shape (H, W) or (1, H, W)
        Defocus maps of the real and of the fake made from it, in [0, 1] for the default
        ``value_range`` (e.g. the ``dmaps`` of an attribution store, which are min-max normalized).
    bins : int
        Number of equal-width bins of the fake's defocus values (20 in the reference).
    value_range : (float, float) or None
        Range of the bins; ``None`` uses the fake map's own min and max.
    eps : float
        Added to both histograms before the KL divergence (``DEFAULT_EPS`` = 1e-10).
    normalize : bool
        Min-max normalize both maps first (:func:`normalize_maps`); use it for raw sigma maps.

    Returns
    -------
    AlignmentResult

    Raises
    ------
    ValueError
        Shapes differ, values fall outside ``value_range``, or a histogram is empty (``|fake - real|``
        or the attribution is zero everywhere): the score would be 0/0, and it is never returned as NaN.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> real = rng.random((16, 16)); fake = real.copy(); fake[:4] = rng.random((4, 16))
    >>> res = alignment_score(np.abs(fake - real), real_map=real, fake_map=fake)
    >>> round(res.overlap, 6), round(res.kl, 6)
    (1.0, 0.0)
    """
    bins = _check_bins(bins)
    eps = _check_eps(eps)
    r = as_single_map(real_map, "real_map")
    f = as_single_map(fake_map, "fake_map")
    if f.shape != r.shape:
        raise ValueError(f"real_map has shape {r.shape} but fake_map has shape {f.shape}")
    f, r = _prepared(f, r, normalize)
    a_abs = reduce_attribution(attribution, "attribution", mode="abs")
    overlap, kl, A, B, edges, _ = _score(f, r, a_abs, bins, value_range, eps, "alignment_score")
    return AlignmentResult(overlap, kl, readonly(A), readonly(B), readonly(edges))


@dataclass(frozen=True, eq=False)
class AlignmentSummary:
    """Alignment scores over a data set, with uncertainty and a chance baseline.

    Attributes
    ----------
    per_sample : pandas.DataFrame
        Columns ``sample`` (index into the inputs), ``group`` (when groups were given), ``overlap``,
        ``kl``; skipped samples are absent.
    mean_overlap, std_overlap : float
        Mean and standard deviation (ddof 1; 0 for one sample) of per-sample overlap.
    ci_low, ci_high : float
        Bootstrap CI of the mean overlap (groups resampled when given).
    mean_kl, std_kl, kl_ci_low, kl_ci_high : float
        The same for the KL divergence.
    confidence : float
    n : int
        Samples scored.
    n_units : int
        Independent units among them (groups, or samples).
    n_skipped : int
    skipped : tuple of int
        Indices of samples skipped as degenerate (``on_degenerate="skip"``).
    baseline_mean_overlap : float or None
        Mean over permutations of the mean overlap with attributions shuffled across samples (a
        derangement; with groups, each attribution moves to a sample of another group). ``None``
        when ``n_permutations == 0``.
    baseline_std_overlap : float or None
        Standard deviation of the permutation means.
    p_value : float or None
        One-sided permutation p-value ``(1 + #{perm mean >= observed mean}) / (1 + n_permutations)``.
    n_permutations : int
    baseline_means : ndarray
        Mean overlap of each permutation (read-only; empty without permutations).
    bins : int
    value_range : tuple or None
    eps : float
    """

    per_sample: pd.DataFrame = field(repr=False)
    mean_overlap: float
    std_overlap: float
    ci_low: float
    ci_high: float
    mean_kl: float
    std_kl: float
    kl_ci_low: float
    kl_ci_high: float
    confidence: float
    n: int
    n_units: int
    n_skipped: int
    skipped: tuple
    baseline_mean_overlap: float | None
    baseline_std_overlap: float | None
    p_value: float | None
    n_permutations: int
    baseline_means: np.ndarray = field(repr=False)
    bins: int = 20
    value_range: tuple | None = (0.0, 1.0)
    eps: float = DEFAULT_EPS

    def to_dict(self, include_per_sample: bool = False) -> dict:
        """Summary fields as plain Python values; the per-sample table as a list of records on request."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "per_sample":
                if include_per_sample:
                    out[f.name] = v.to_dict(orient="records")
            elif isinstance(v, np.ndarray):
                out[f.name] = v.tolist()
            else:
                out[f.name] = v
        return out


def _check_scores_args(rl, fk, at, on_degenerate, n_permutations) -> None:
    if on_degenerate not in ("raise", "skip"):
        raise ValueError(f"on_degenerate must be 'raise' or 'skip', got {on_degenerate!r}")
    if int(n_permutations) < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    if fk.shape != rl.shape:
        raise ValueError(f"real_maps has shape {rl.shape} but fake_maps has shape {fk.shape}; pass paired "
                         "maps (same N, H, W)")
    if at.shape[0] != fk.shape[0] or at.shape[-2:] != fk.shape[1:]:
        raise ValueError(f"attributions has shape {at.shape}, incompatible with maps of shape {fk.shape} "
                         "(need (N, H, W) or (N, C, H, W) with the maps' N, H, W)")
    if fk.shape[0] == 0:
        raise ValueError("no samples given")


def _score_samples(at, rl, fk, *, bins, value_range, eps, normalize, on_degenerate, keep_attributions):
    """Per-sample (overlap, kl) of the non-degenerate samples.

    Returns kept indices, overlaps, kls, skipped indices and the kept reduced attributions as an
    (m, H * W) float32 array (``None`` unless ``keep_attributions``).
    """
    keep, overlaps, kls, skipped, rows = [], [], [], [], []
    for i in range(fk.shape[0]):
        f, r = _prepared(fk[i], rl[i], normalize)
        a_abs = reduce_attribution(at[i], f"attributions[{i}]", mode="abs")
        try:
            ov, kl, _, _, _, _ = _score(f, r, a_abs, bins, value_range, eps, f"sample {i}")
        except ValueError as exc:
            if on_degenerate == "skip" and "is zero everywhere" in str(exc):
                skipped.append(i)
                continue
            raise
        keep.append(i)
        overlaps.append(ov)
        kls.append(kl)
        if keep_attributions:
            rows.append(a_abs.ravel().astype(np.float32))
    if not keep:
        raise ValueError(f"all {fk.shape[0]} samples are degenerate (empty difference or attribution histograms)")
    return (np.asarray(keep, dtype=np.int64), np.asarray(overlaps), np.asarray(kls), skipped,
            np.stack(rows) if keep_attributions else None)


def _baseline(rl, fk, keep, a_mat, codes, *, bins, value_range, normalize, n_permutations, seed):
    """Permutation means of the mean overlap (read-only array, empty without permutations)."""
    if not n_permutations:
        return readonly(np.empty(0))

    def diff_hist(i):
        f, r = _prepared(fk[keep[i]], rl[keep[i]], normalize)
        idx = _bin_index(f, _edges(f, bins, value_range), f"sample {keep[i]}")
        hd = np.bincount(idx, weights=np.abs(f - r).ravel(), minlength=bins)
        return idx, hd / hd.sum()

    return readonly(permutation_means(diff_hist, a_mat, codes, bins=bins, n_permutations=n_permutations,
                                      seed=seed))


def _std(v: np.ndarray) -> float:
    return float(v.std(ddof=1)) if v.size > 1 else 0.0


def alignment_scores(attributions, *, real_maps, fake_maps, groups=None, bins: int = 20,
                     value_range=(0.0, 1.0), eps: float = DEFAULT_EPS, normalize: bool = False,
                     n_boot: int = 2000, seed=0, n_permutations: int = 200, confidence: float = 0.95,
                     on_degenerate: str = "raise") -> AlignmentSummary:
    """Alignment scores of many fake samples, their mean with a CI, and a permutation baseline.

    Parameters
    ----------
    attributions : array_like, shape (N, H, W) or (N, C, H, W)
        Attribution for each fake; channels reduced by ``sum_c |a_c|``.
    real_maps, fake_maps : array_like, shape (N, H, W) or (N, 1, H, W)
        Already paired: ``real_maps[i]`` is the real that ``fake_maps[i]`` was made from (see
        :func:`~defocus_xai.analysis.pair_by_source` to build the pairing).
    groups : array_like, shape (N,), optional
        Independent unit per sample (video id): the bootstrap resamples groups, ``n_units`` counts
        them, and the permutation baseline only gives a sample an attribution from another group
        (frames of one video have near-identical attributions, which would inflate the baseline).
    bins, value_range, eps, normalize
        As in :func:`alignment_score`.
    n_boot : int
        Bootstrap replicates for the CIs.
    seed : int or numpy.random.Generator
        Randomness of the bootstrap and of the permutations.
    n_permutations : int
        Random shuffles of attributions across samples for the chance baseline (0 disables it).
    confidence : float
    on_degenerate : {"raise", "skip"}
        What to do with a sample whose difference or attribution histogram is empty: raise
        ``ValueError`` naming the sample (default), or leave it out and report it in ``skipped``.

    Returns
    -------
    AlignmentSummary

    Notes
    -----
    The baseline needs, for each sample ``i``, the histogram of ``i``'s fake values weighted by another
    sample's attribution. Per sample, only the attributions that the permutations assign to it are
    histogrammed (at most ``min(N - 1, n_permutations)`` bincounts of H * W pixels); the reduced
    attributions are held as an (N, H * W) float32 array.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> real = rng.random((12, 16, 16)); fake = real.copy()
    >>> fake[:, :6] = np.clip(fake[:, :6] * 0.3, 0, 1)
    >>> s = alignment_scores(np.abs(fake - real), real_maps=real, fake_maps=fake, n_boot=200,
    ...                      n_permutations=50)
    >>> s.mean_overlap > s.baseline_mean_overlap
    True
    """
    bins = _check_bins(bins)
    eps = _check_eps(eps)
    confidence = check_confidence(confidence)
    rl = as_map_batch(real_maps, "real_maps")
    fk = as_map_batch(fake_maps, "fake_maps")
    at = as_attribution_batch(attributions, "attributions")
    _check_scores_args(rl, fk, at, on_degenerate, n_permutations)
    group_labels = None if groups is None else as_labels(groups, "groups", fk.shape[0])
    keep, ov, kl, skipped, a_mat = _score_samples(at, rl, fk, bins=bins, value_range=value_range, eps=eps,
                                                  normalize=normalize, on_degenerate=on_degenerate,
                                                  keep_attributions=bool(n_permutations))
    g_kept = None if group_labels is None else group_labels[keep]
    codes, n_units = group_codes(g_kept, keep.size)
    ci_ov = bootstrap_mean_ci(ov, g_kept, n_boot=n_boot, confidence=confidence, seed=seed)
    ci_kl = bootstrap_mean_ci(kl, g_kept, n_boot=n_boot, confidence=confidence, seed=seed)
    base = _baseline(rl, fk, keep, a_mat, codes, bins=bins, value_range=value_range, normalize=normalize,
                     n_permutations=int(n_permutations), seed=seed)
    per = pd.DataFrame({"sample": keep, "overlap": ov, "kl": kl})
    if g_kept is not None:
        per.insert(1, "group", g_kept)
    return AlignmentSummary(
        per_sample=per, mean_overlap=float(ov.mean()), std_overlap=_std(ov), ci_low=ci_ov.low,
        ci_high=ci_ov.high, mean_kl=float(kl.mean()), std_kl=_std(kl), kl_ci_low=ci_kl.low,
        kl_ci_high=ci_kl.high, confidence=confidence, n=int(keep.size), n_units=n_units,
        n_skipped=len(skipped), skipped=tuple(int(s) for s in skipped),
        baseline_mean_overlap=float(base.mean()) if base.size else None,
        baseline_std_overlap=_std(base) if base.size else None,
        p_value=float((1 + np.count_nonzero(base >= ov.mean())) / (1 + base.size)) if base.size else None,
        n_permutations=int(n_permutations), baseline_means=base, bins=bins,
        value_range=None if value_range is None else tuple(float(v) for v in value_range), eps=eps)
