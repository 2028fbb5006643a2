"""Shapley (attribution) alignment score (UPSTREAM.md section 4.5).

For one fake sample with defocus map ``f``, the map ``r`` of the real it was made from, and an
attribution ``a`` of the detector's decision:

1. bin the fake's defocus values ``f`` into ``bins`` equal bins over ``value_range`` (``[0, 1]``);
2. histogram ``A``: per bin, the sum of ``|f - r|`` over the pixels in the bin;
   histogram ``B``: per bin, the sum of ``|a|`` over the same pixels;
3. L1-normalize both: ``A /= sum(A)``, ``B /= sum(B)``;
4. ``overlap = sum(min(A, B))`` (histogram intersection, in [0, 1], the paper's alignment score) and
   ``kl = KL(B + eps || A + eps)`` computed as ``scipy.stats.entropy(B + eps, A + eps)`` (scipy
   renormalizes both after adding ``eps``), the reference's direction.

High overlap means the attribution spends its mass on the defocus levels where the manipulation
changed the defocus map. UPSTREAM does not state the reference's ``eps``; we use ``1e-10`` (a
parameter). Attributions of shape (C, H, W) are reduced by ``sum_c |a_c|`` (the reference kept only
channel 0 of RGB attributions). Pixels are binned like ``numpy.histogram``: ``[e_k, e_k+1)``, the last
bin closed; a fake value outside ``value_range`` raises ``ValueError`` instead of being dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
from scipy import stats

from ._bootstrap import bootstrap_mean_ci, group_codes
from ._checks import (as_attribution_batch, as_labels, as_map_batch, as_single_map, check_confidence,
                      reduce_attribution)
from .masks import normalize_maps

__all__ = ["alignment_score", "alignment_scores", "AlignmentResult", "AlignmentSummary", "DEFAULT_EPS"]

#: Epsilon added to both histograms before the KL divergence (UPSTREAM gives no value).
DEFAULT_EPS = 1e-10


def _readonly(a) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


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


def alignment_score(fake_map, real_map, attribution, bins: int = 20, value_range=(0.0, 1.0),
                    eps: float = DEFAULT_EPS, *, normalize: bool = False) -> AlignmentResult:
    """Alignment of one attribution with where the fake's defocus map differs from its real's.

    Parameters
    ----------
    fake_map, real_map : array_like, shape (H, W) or (1, H, W)
        Defocus maps of a fake and of the real it was made from, in [0, 1] for the default
        ``value_range`` (e.g. the ``dmaps`` of an attribution store, which are min-max normalized).
    attribution : array_like, shape (H, W) or (C, H, W)
        Attribution of the detector's output for the fake; reduced to ``sum_c |a_c|``.
    bins : int
        Number of equal-width bins of the fake's defocus values (20 in the reference).
    value_range : (float, float) or None
        Range of the bins; ``None`` uses the fake map's own min and max.
    eps : float
        Added to both histograms before the KL divergence (see module docstring).
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
    >>> res = alignment_score(fake, real, np.abs(fake - real))
    >>> round(res.overlap, 6), round(res.kl, 6)
    (1.0, 0.0)
    """
    bins = _check_bins(bins)
    eps = _check_eps(eps)
    f = as_single_map(fake_map, "fake_map").astype(np.float64)
    r = as_single_map(real_map, "real_map").astype(np.float64)
    if f.shape != r.shape:
        raise ValueError(f"fake_map has shape {f.shape} but real_map has shape {r.shape}")
    if normalize:
        f, r = normalize_maps(f).astype(np.float64), normalize_maps(r).astype(np.float64)
    a_abs = reduce_attribution(attribution, "attribution", mode="abs")
    overlap, kl, A, B, edges, _ = _score(f, r, a_abs, bins, value_range, eps, "alignment_score")
    return AlignmentResult(overlap, kl, _readonly(A), _readonly(B), _readonly(edges))


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
    n_samples : int
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
    n_samples: int
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


def _constrained_derangement(codes: np.ndarray, rng: np.random.Generator, max_rounds: int = 1000
                             ) -> np.ndarray:
    """A random permutation ``p`` with ``codes[p[i]] != codes[i]`` for every i.

    Starts from a uniform permutation and repairs conflicts by random swaps that fix a conflict without
    creating one. With one code per sample this is a random derangement.
    """
    n = codes.size
    perm = rng.permutation(n)
    for _ in range(max_rounds):
        bad = np.flatnonzero(codes[perm] == codes)
        if bad.size == 0:
            return perm
        for i in rng.permutation(bad):
            if codes[perm[i]] != codes[i]:
                continue
            cand = rng.integers(0, n, size=64)
            ok = (codes[perm[cand]] != codes[i]) & (codes[perm[i]] != codes[cand])
            if ok.any():
                j = cand[np.argmax(ok)]
                perm[i], perm[j] = perm[j], perm[i]
    raise RuntimeError("could not draw a permutation that moves every attribution to another group")


def _permutation_rng(seed) -> np.random.Generator:
    """A stream for the permutations, separate from the bootstrap's (same seed, other stream)."""
    if isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed.integers(0, 2**63 - 1))
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed), 1])


def alignment_scores(fake_maps, real_maps, attributions, *, groups=None, bins: int = 20,
                     value_range=(0.0, 1.0), eps: float = DEFAULT_EPS, normalize: bool = False,
                     n_boot: int = 2000, seed=0, n_permutations: int = 200, confidence: float = 0.95,
                     on_degenerate: str = "raise") -> AlignmentSummary:
    """Alignment scores of many fake samples, their mean with a CI, and a permutation baseline.

    Parameters
    ----------
    fake_maps, real_maps : array_like, shape (N, H, W) or (N, 1, H, W)
        Already paired: ``real_maps[i]`` is the real that ``fake_maps[i]`` was made from (see
        :func:`~defocus_xai.analysis.pair_by_source` to build the pairing).
    attributions : array_like, shape (N, H, W) or (N, C, H, W)
        Attribution for each fake; channels reduced by ``sum_c |a_c|``.
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
    >>> s = alignment_scores(fake, real, np.abs(fake - real), n_boot=200, n_permutations=50)
    >>> s.mean_overlap > s.baseline_mean_overlap
    True
    """
    bins = _check_bins(bins)
    eps = _check_eps(eps)
    confidence = check_confidence(confidence)
    if on_degenerate not in ("raise", "skip"):
        raise ValueError(f"on_degenerate must be 'raise' or 'skip', got {on_degenerate!r}")
    if int(n_permutations) < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    fk = as_map_batch(fake_maps, "fake_maps")
    rl = as_map_batch(real_maps, "real_maps")
    at = as_attribution_batch(attributions, "attributions")
    if fk.shape != rl.shape:
        raise ValueError(f"fake_maps has shape {fk.shape} but real_maps has shape {rl.shape}; pass paired "
                         "maps (same N, H, W)")
    if at.shape[0] != fk.shape[0] or at.shape[-2:] != fk.shape[1:]:
        raise ValueError(f"attributions has shape {at.shape}, incompatible with maps of shape {fk.shape} "
                         "(need (N, H, W) or (N, C, H, W) with the maps' N, H, W)")
    n = fk.shape[0]
    if n == 0:
        raise ValueError("no samples given")
    group_labels = None if groups is None else as_labels(groups, "groups", n)

    keep, overlaps, kls, skipped = [], [], [], []
    a_abs_rows = []
    for i in range(n):
        f, r = fk[i].astype(np.float64), rl[i].astype(np.float64)
        if normalize:
            f, r = normalize_maps(f).astype(np.float64), normalize_maps(r).astype(np.float64)
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
        if n_permutations:
            a_abs_rows.append(a_abs.ravel().astype(np.float32))
    if not keep:
        raise ValueError(f"all {n} samples are degenerate (empty difference or attribution histograms)")

    keep_arr = np.asarray(keep, dtype=np.int64)
    ov_arr = np.asarray(overlaps)
    kl_arr = np.asarray(kls)
    g_kept = None if group_labels is None else group_labels[keep_arr]
    codes, n_units = group_codes(g_kept, keep_arr.size)
    ci_ov = bootstrap_mean_ci(ov_arr, g_kept, n_boot=n_boot, confidence=confidence, seed=seed)
    ci_kl = bootstrap_mean_ci(kl_arr, g_kept, n_boot=n_boot, confidence=confidence, seed=seed)

    base_means = np.empty(0)
    base_mean = base_std = p_val = None
    if n_permutations:
        m = keep_arr.size
        if m < 2:
            raise ValueError("the permutation baseline needs at least 2 scored samples "
                             "(set n_permutations=0 to skip it)")
        largest = int(np.bincount(codes).max())
        if 2 * largest > m:
            raise ValueError(f"the largest group holds {largest} of {m} samples: attributions cannot all be "
                             "moved to a sample of another group (set n_permutations=0 or check groups)")
        rng = _permutation_rng(seed)
        perms = np.stack([_constrained_derangement(codes, rng) for _ in range(int(n_permutations))])
        A_mat = np.stack(a_abs_rows)  # (m, HW) float32
        perm_ov = np.empty(perms.shape, dtype=np.float64)
        for i in range(m):
            f_i = fk[keep_arr[i]].astype(np.float64)
            r_i = rl[keep_arr[i]].astype(np.float64)
            if normalize:
                f_i, r_i = normalize_maps(f_i).astype(np.float64), normalize_maps(r_i).astype(np.float64)
            idx = _bin_index(f_i, _edges(f_i, bins, value_range), f"sample {keep_arr[i]}")
            hd = np.bincount(idx, weights=np.abs(f_i - r_i).ravel(), minlength=bins)
            A = hd / hd.sum()
            js, inv = np.unique(perms[:, i], return_inverse=True)
            # histogram of sample i's fake values weighted by each attribution j assigned to it
            H = np.empty((bins, js.size))
            for k, j in enumerate(js):
                H[:, k] = np.bincount(idx, weights=A_mat[j], minlength=bins)
            tot = H.sum(axis=0)
            B = H / np.where(tot > 0, tot, 1.0)
            ov_js = np.minimum(A[:, None], B).sum(axis=0)
            ov_js[tot <= 0] = 0.0  # attribution with no mass on this sample's pixels: no overlap
            perm_ov[:, i] = ov_js[inv.ravel()]
        base_means = perm_ov.mean(axis=1)
        base_mean = float(base_means.mean())
        base_std = float(base_means.std(ddof=1)) if base_means.size > 1 else 0.0
        p_val = float((1 + np.count_nonzero(base_means >= ov_arr.mean())) / (1 + base_means.size))

    per = pd.DataFrame({"sample": keep_arr, "overlap": ov_arr, "kl": kl_arr})
    if g_kept is not None:
        per.insert(1, "group", g_kept)
    std = (lambda v: float(v.std(ddof=1)) if v.size > 1 else 0.0)
    return AlignmentSummary(
        per_sample=per, mean_overlap=float(ov_arr.mean()), std_overlap=std(ov_arr), ci_low=ci_ov.low,
        ci_high=ci_ov.high, mean_kl=float(kl_arr.mean()), std_kl=std(kl_arr), kl_ci_low=ci_kl.low,
        kl_ci_high=ci_kl.high, confidence=confidence, n_samples=int(keep_arr.size), n_units=n_units,
        n_skipped=len(skipped), skipped=tuple(int(s) for s in skipped), baseline_mean_overlap=base_mean,
        baseline_std_overlap=base_std, p_value=p_val, n_permutations=int(n_permutations),
        baseline_means=_readonly(base_means), bins=bins,
        value_range=None if value_range is None else tuple(float(v) for v in value_range), eps=eps)
