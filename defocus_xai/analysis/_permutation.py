"""The permutation baseline of the alignment score (private).

Attributions are shuffled across samples (a derangement; with groups, every attribution moves to a
sample of another group) and the mean overlap recomputed, giving the score's chance level.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__: list[str] = []


def constrained_derangement(codes: np.ndarray, rng: np.random.Generator, max_rounds: int = 1000) -> np.ndarray:
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


def permutation_rng(seed) -> np.random.Generator:
    """A stream for the permutations, separate from the bootstrap's (same seed, other stream)."""
    if isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed.integers(0, 2**63 - 1))
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed), 1])


def permutation_overlaps(diff_hist: Callable[[int], tuple], attributions: np.ndarray, codes: np.ndarray, *,
                         bins: int, n_permutations: int, seed) -> np.ndarray:
    """Overlap of every sample under each of ``n_permutations`` shuffles of attributions across samples.

    ``diff_hist(i)`` gives sample ``i``'s pixel bin index and L1-normalized difference histogram;
    ``attributions`` is the (m, H * W) array of reduced attributions. Per sample, only the attributions
    that the permutations assign to it are histogrammed.
    """
    m = codes.size
    if m < 2:
        raise ValueError("the permutation baseline needs at least 2 scored samples "
                         "(set n_permutations=0 to skip it)")
    largest = int(np.bincount(codes).max())
    if 2 * largest > m:
        raise ValueError(f"the largest group holds {largest} of {m} samples: attributions cannot all be "
                         "moved to a sample of another group (set n_permutations=0 or check groups)")
    rng = permutation_rng(seed)
    perms = np.stack([constrained_derangement(codes, rng) for _ in range(int(n_permutations))])
    perm_ov = np.empty(perms.shape, dtype=np.float64)
    for i in range(m):
        idx, A = diff_hist(i)
        js, inv = np.unique(perms[:, i], return_inverse=True)
        # histogram of sample i's fake values weighted by each attribution j assigned to it
        H = np.empty((bins, js.size))
        for k, j in enumerate(js):
            H[:, k] = np.bincount(idx, weights=attributions[j], minlength=bins)
        tot = H.sum(axis=0)
        B = H / np.where(tot > 0, tot, 1.0)
        ov_js = np.minimum(A[:, None], B).sum(axis=0)
        ov_js[tot <= 0] = 0.0  # attribution with no mass on this sample's pixels: no overlap
        perm_ov[:, i] = ov_js[inv.ravel()]
    return perm_ov
