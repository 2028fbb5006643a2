"""Shapley (attribution) alignment score of one sample: does an attribution weigh the defocus levels a
manipulation changed?

Histograms of the fake's defocus values weighted by ``|fake - real|`` (A) and by ``|attribution|`` (B),
both L1-normalized; ``overlap = sum(min(A, B))`` and ``kl = KL(B + eps || A + eps)``. Many samples with
controls: :mod:`.alignment_summary`. See docs/analysis.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ._checks import as_single_map, readonly, reduce_attribution
from ._results import plain_dict
from .masks import normalize_maps

__all__ = ["alignment_score", "AlignmentResult", "DEFAULT_EPS"]

#: Epsilon added to both histograms before the KL divergence (the paper's code uses 1e-8).
DEFAULT_EPS = 1e-8


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
        return plain_dict(self)


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
        Added to both histograms before the KL divergence (``DEFAULT_EPS`` = 1e-8, the paper's). The
        histograms are normalized exactly (the paper's code also adds ``eps`` to their sums).
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
