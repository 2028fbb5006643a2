"""Binary difference masks between paired fake and real defocus maps.

A pixel is *activated* when the normalized maps of a fake and of the real it was made from differ by
more than a threshold, ``|fake - real| > t``. See docs/analysis.md for the differences from the
paper's code (pairing, normalization, dependent frames).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._checks import as_float_array, as_labels, as_map_batch, check_confidence
from .pairs import resolve_pairs
from .stats import bootstrap_mean_ci, group_codes

__all__ = ["normalize_maps", "binary_mask", "mask_activation", "DEFAULT_THRESHOLDS"]

#: The threshold sweep of the reference notebook.
DEFAULT_THRESHOLDS = (0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001)


def normalize_maps(maps, method: str = "minmax") -> np.ndarray:
    """Normalize defocus maps per sample; the one normalization every analysis uses.

    Parameters
    ----------
    maps : array_like
        One map (H, W), or a batch whose first axis indexes samples: (N, H, W) or (N, 1, H, W).
        Any real dtype; NaN and inf are rejected with ``ValueError``.
    method : {"minmax", "none"}
        ``"minmax"``: ``(x - min) / (max - min)`` over each sample, giving values in [0, 1] (the
        reference's normalization before the classifier and in its analyses). A constant sample has
        no range; it maps to all zeros (documented choice: no NaN, no division by zero).
        ``"none"``: a float copy of the input.

    Returns
    -------
    ndarray
        New array of the same shape; float32 for float32 / float16 input, float64 otherwise. The input
        is never modified.

    Examples
    --------
    >>> normalize_maps(np.array([[1.0, 3.0], [2.0, 5.0]]))
    array([[0.  , 0.5 ],
           [0.25, 1.  ]])
    >>> float(normalize_maps(np.full((1, 2, 2), 7.0)).max())
    0.0
    """
    arr = as_float_array(maps, "maps")
    dtype = np.float32 if arr.dtype in (np.float16, np.float32) else np.float64
    if method == "none":
        return arr.astype(dtype, copy=True)
    if method != "minmax":
        raise ValueError(f"method must be 'minmax' or 'none', got {method!r}")
    if arr.ndim < 2:
        raise ValueError(f"maps must be (H, W) or a batch (N, ...), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"maps is empty (shape {arr.shape})")
    work = arr.astype(np.float64)
    axes = tuple(range(arr.ndim)) if arr.ndim == 2 else tuple(range(1, arr.ndim))
    lo = work.min(axis=axes, keepdims=True)
    span = work.max(axis=axes, keepdims=True) - lo
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (work - lo) / safe, 0.0)
    return out.astype(dtype, copy=False)


def binary_mask(*, real_map, fake_map, threshold: float = 0.1, normalize: bool = True) -> np.ndarray:
    """Pixels where a fake map and its real map differ: ``|fake - real| > threshold``.

    Parameters
    ----------
    real_map, fake_map : array_like
        Same shape: one map (H, W) or a batch (N, H, W) / (N, 1, H, W) of already paired maps.
    threshold : float
        Strict threshold on the absolute difference (non-negative).
    normalize : bool
        Min-max normalize each map (each sample) with :func:`normalize_maps` first (default, as the
        reference). With ``False`` the threshold is in the maps' own units (sigma in pixels).

    Returns
    -------
    ndarray of bool, same shape as the inputs.

    Examples
    --------
    >>> real = np.array([[0.0, 0.1], [1.0, 0.25]])
    >>> fake = np.array([[0.0, 0.5], [1.0, 0.2]])
    >>> binary_mask(real_map=real, fake_map=fake, threshold=0.1, normalize=False)
    array([[False,  True],
           [False, False]])
    """
    r = as_float_array(real_map, "real_map")
    f = as_float_array(fake_map, "fake_map")
    if f.shape != r.shape:
        raise ValueError(f"real_map has shape {r.shape} but fake_map has shape {f.shape}; they must match")
    t = float(threshold)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"threshold must be a finite non-negative number, got {threshold!r}")
    if normalize:
        f, r = normalize_maps(f), normalize_maps(r)
    return np.abs(f.astype(np.float64) - r.astype(np.float64)) > t


def _activated_counts(rl, fk, p, thr, normalize: bool, chunk_size: int) -> np.ndarray:
    """(P, T) activated-pixel counts of the pairs ``p`` (rows (fake, real)) at each threshold."""
    counts = np.empty((p.shape[0], thr.size), dtype=np.int64)
    step = max(1, int(chunk_size))
    for start in range(0, p.shape[0], step):
        sel = p[start:start + step]
        f = fk[sel[:, 0]]
        r = rl[sel[:, 1]]
        if normalize:
            f, r = normalize_maps(f), normalize_maps(r)
        diff = np.abs(f.astype(np.float64) - r.astype(np.float64)).reshape(len(sel), -1)
        for k, t in enumerate(thr):
            counts[start:start + len(sel), k] = np.count_nonzero(diff > t, axis=1)
    return counts


def _degenerate_pairs(rl, fk, p, normalize: bool) -> list:
    """``(row, reason)`` of the pairs without information: identical maps, or a constant map to normalize."""
    out = []
    for k, (fi, ri) in enumerate(p):
        f, r = fk[fi], rl[ri]
        if np.array_equal(f, r):
            out.append((k, "identical_maps"))
        elif normalize and (f.min() == f.max() or r.min() == r.max()):
            out.append((k, "constant_map"))
    return out


def _skip_degenerate(rl, fk, p, normalize: bool, on_degenerate: str) -> tuple[np.ndarray, list]:
    """The informative pairs, and a record per skipped pair (fake, real, reason)."""
    if on_degenerate not in ("raise", "skip"):
        raise ValueError(f"on_degenerate must be 'raise' or 'skip', got {on_degenerate!r}")
    bad = _degenerate_pairs(rl, fk, p, normalize)
    if not bad:
        return p, []
    named = [{"fake": int(p[k, 0]), "real": int(p[k, 1]), "reason": why} for k, why in bad]
    text = ", ".join(f"fake {d['fake']} / real {d['real']} ({d['reason']})" for d in named[:10])
    if on_degenerate == "raise":
        raise ValueError(f"{len(bad)} degenerate pair(s): {text}")
    if len(bad) == len(p):
        raise ValueError(f"all {len(p)} pairs are degenerate: {text}")
    warnings.warn(f"mask_activation skipped {len(bad)} of {len(p)} degenerate pairs: {text}", UserWarning,
                  stacklevel=3)
    keep = np.ones(len(p), dtype=bool)
    keep[[k for k, _ in bad]] = False
    return p[keep], named


def _activation_rows(counts, thr, pair_methods, pair_groups, n_pix, *, n_boot, confidence, seed) -> list:
    """One summary row per (method, threshold)."""
    rows = []
    for method in pd.unique(pair_methods):
        in_m = pair_methods == method
        g = None if pair_groups is None else pair_groups[in_m]
        _, n_units = group_codes(g, int(in_m.sum()))
        for k, t in enumerate(thr):
            c = counts[in_m, k].astype(np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # flagged in the too_few_units column
                ci = bootstrap_mean_ci(c, g, n_boot=n_boot, confidence=confidence, seed=seed)
            rows.append({
                "threshold": float(t), "method": method, "n_pairs": int(c.size), "n_units": n_units,
                "mean": float(c.mean()), "std": float(c.std(ddof=1)) if c.size > 1 else 0.0,
                "min": float(c.min()), "max": float(c.max()), "median": float(np.median(c)),
                "mean_fraction": float(c.mean() / n_pix), "ci_low": ci.low, "ci_high": ci.high,
                "too_few_units": ci.too_few_units,
            })
    return rows


def mask_activation(*, real_maps, fake_maps, thresholds=DEFAULT_THRESHOLDS, pairs=None, real_ids=None,
                    fake_ids=None, groups=None, methods=None, allow_index_pairing: bool = False,
                    real_frames=None, fake_frames=None, normalize: bool = True, n_boot: int = 2000,
                    confidence: float = 0.95, seed=0, chunk_size: int = 64,
                    on_degenerate: str = "skip") -> pd.DataFrame:
    """Activated-pixel statistics of binary difference masks over a threshold sweep.

    For each pair (fake, the real it was made from) and each threshold ``t``, the number of pixels
    with ``|fake - real| > t`` after per-sample min-max normalization of both maps.

    Parameters
    ----------
    real_maps : array_like, shape (N_real, H, W) or (N_real, 1, H, W)
    fake_maps : array_like, shape (N_fake, H, W) or (N_fake, 1, H, W)
        Same H, W as the reals.
    thresholds : sequence of float
        Default: the reference sweep ``(0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001)``.
    pairs : array_like of int, shape (P, 2), optional
        Explicit ``(fake_index, real_index)`` rows.
    real_ids, fake_ids : array_like, optional
        Source ids; each fake is paired with the real having the same id (see
        :func:`~defocus_xai.analysis.pair_by_source`; add ``real_frames``/``fake_frames`` for
        frame-level pairing). Fakes with no real are left out with a warning; their count is in
        ``df.attrs["n_unmatched"]``.
    groups : array_like, shape (N_fake,), optional
        Independent unit per *fake* sample (e.g. fake video id). Default: ``fake_ids`` when given,
        otherwise every pair is its own unit. Drives ``n_units`` and the bootstrap CI.
    methods : array_like, shape (N_fake,), optional
        Manipulation method per fake sample; statistics are given per method (``"all"`` when omitted).
    allow_index_pairing : bool
        Pair the i-th fake with the i-th real when nothing else is given. Emits a ``UserWarning``: two
        unrelated lists paired by index compare different scenes.
    normalize : bool
        Per-sample min-max normalization (:func:`normalize_maps`) of both maps before differencing.
    n_boot, confidence, seed
        Bootstrap of the mean activated count (groups resampled).
    chunk_size : int
        Pairs processed at once (memory bound: about ``chunk_size * H * W`` floats).
    on_degenerate : {"skip", "raise"}
        A pair whose two maps are identical, or (with ``normalize``) one of whose maps is constant (its
        min-max normalization is undefined), carries no information: "skip" (default) leaves it out with a
        warning and names it in ``df.attrs["skipped"]``; "raise" raises ``ValueError`` naming it.

    Returns
    -------
    pandas.DataFrame
        One row per (method, threshold), columns ``threshold, method, n_pairs, n_units, mean, std, min,
        max, median, mean_fraction, ci_low, ci_high, too_few_units`` (counts in pixels; CI bounds NaN and
        ``too_few_units`` True when they would rest on fewer than 2 units; ``mean_fraction`` is ``mean /
        (H * W)``; ``std`` across pairs, ddof 1, 0 for a single pair). ``df.attrs`` holds ``n_pixels``,
        ``pairing`` ("explicit", "source_id", "frame" or "index"), ``n_unmatched``, ``normalize``,
        ``confidence``, ``n_skipped`` and ``skipped`` (records ``fake, real, reason``: ``"identical_maps"``
        or ``"constant_map"``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> real = rng.random((4, 8, 8)); fake = real.copy(); fake[:, :2, :2] += 2.0
    >>> df = mask_activation(real_maps=real, fake_maps=fake, thresholds=(0.1,), real_ids=list("abcd"),
    ...                      fake_ids=list("abcd"), n_boot=100)
    >>> int(df.loc[0, "min"]) >= 4
    True
    """
    rl = as_map_batch(real_maps, "real_maps")
    fk = as_map_batch(fake_maps, "fake_maps")
    if fk.shape[1:] != rl.shape[1:]:
        raise ValueError(f"real_maps has maps of shape {rl.shape[1:]} (array {rl.shape}) but fake_maps "
                         f"has {fk.shape[1:]} (array {fk.shape}); they must match")
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    if thr.size == 0 or not np.all(np.isfinite(thr)) or np.any(thr < 0):
        raise ValueError(f"thresholds must be a non-empty sequence of finite non-negative numbers, got {thresholds!r}")
    confidence = check_confidence(confidence)
    n_real, n_fake = rl.shape[0], fk.shape[0]
    p, how, n_unmatched = resolve_pairs(n_real, n_fake, pairs=pairs, real_ids=real_ids, fake_ids=fake_ids,
                                        real_frames=real_frames, fake_frames=fake_frames,
                                        allow_index_pairing=allow_index_pairing)
    if groups is None and fake_ids is not None:
        groups = fake_ids
    group_per_fake = None if groups is None else as_labels(groups, "groups", n_fake)
    method_per_fake = (np.full(n_fake, "all", dtype=object) if methods is None
                       else as_labels(methods, "methods", n_fake))
    p, skipped = _skip_degenerate(rl, fk, p, normalize, on_degenerate)
    n_pix = int(fk.shape[1] * fk.shape[2])
    counts = _activated_counts(rl, fk, p, thr, normalize, chunk_size)
    rows = _activation_rows(counts, thr, method_per_fake[p[:, 0]],
                            None if group_per_fake is None else group_per_fake[p[:, 0]], n_pix,
                            n_boot=n_boot, confidence=confidence, seed=seed)
    df = pd.DataFrame(rows)
    df.attrs.update({"n_pixels": n_pix, "pairing": how, "n_unmatched": int(n_unmatched),
                     "normalize": bool(normalize), "confidence": confidence, "n_skipped": len(skipped),
                     "skipped": skipped})
    return df
