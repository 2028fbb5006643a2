"""Binary difference masks between paired fake and real defocus maps (UPSTREAM.md section 4.2).

A pixel is *activated* when the normalized defocus values of a fake image and of the real image it was
made from differ by more than a threshold: ``|fake - real| > t``. Counting activated pixels per pair and
summarizing over pairs tells how much of the depth-of-field signal a manipulation changes.

Differences from the reference notebook:

* Pairing. The reference pairs the i-th fake with the i-th real of two unrelated lists, so the mask
  compares different scenes. Here a fake is paired with the real it was made from (same source id, and
  same frame when frame ids are given), or by explicit ``pairs``. Index pairing is available only with
  ``allow_index_pairing=True`` and emits a ``UserWarning``.
* Normalization. Both maps of a pair go through the same :func:`normalize_maps` (per-sample min-max to
  [0, 1]) before differencing, so the threshold means the same thing on both sides.
* Dependence. Frames of one video are not independent; ``groups`` (default: the source ids) gives the
  number of independent units and a bootstrap CI that resamples whole groups.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._bootstrap import bootstrap_mean_ci, group_codes
from ._checks import as_float_array, as_labels, as_map_batch, check_confidence

__all__ = ["normalize_maps", "binary_mask", "pair_by_source", "mask_activation", "DEFAULT_THRESHOLDS"]

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


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match")


def binary_mask(fake_map, real_map, threshold: float = 0.1, normalize: bool = True) -> np.ndarray:
    """Pixels where a fake map and its real map differ: ``|fake - real| > threshold``.

    Parameters
    ----------
    fake_map, real_map : array_like
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
    >>> f = np.array([[0.0, 0.5], [1.0, 0.2]])
    >>> r = np.array([[0.0, 0.1], [1.0, 0.25]])
    >>> binary_mask(f, r, threshold=0.1, normalize=False)
    array([[False,  True],
           [False, False]])
    """
    f = as_float_array(fake_map, "fake_map")
    r = as_float_array(real_map, "real_map")
    _check_same_shape(f, r, "fake_map", "real_map")
    t = float(threshold)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"threshold must be a finite non-negative number, got {threshold!r}")
    if normalize:
        f, r = normalize_maps(f), normalize_maps(r)
    return np.abs(f.astype(np.float64) - r.astype(np.float64)) > t


def pair_by_source(fake_ids, real_ids, fake_frames=None, real_frames=None, *, warn_unmatched: bool = True
                   ) -> np.ndarray:
    """Pair each fake with the real it was made from.

    A fake matches the real sample with the same source id (FF++: the fake video ``<target>_<source>``
    is made from the real video ``<target>``, so pass ``<target>`` as the fake's id). When frame ids are
    given for both sides, the key is (source id, frame id), i.e. frame-level pairing.

    Parameters
    ----------
    fake_ids : array_like, shape (N_fake,)
    real_ids : array_like, shape (N_real,)
    fake_frames, real_frames : array_like, optional
        Frame ids (e.g. frame file names or indices); give both or neither.
    warn_unmatched : bool
        Emit a ``UserWarning`` with the count of fakes that have no real (they are left out).

    Returns
    -------
    ndarray of int64, shape (P, 2)
        Rows ``(fake_index, real_index)`` in fake order.

    Raises
    ------
    ValueError
        When a key occurs more than once among the reals (ambiguous: give frame ids), when only one
        side has frame ids, or when nothing matches.

    Examples
    --------
    >>> pair_by_source(["b", "a", "c"], ["a", "b"], warn_unmatched=False)
    array([[0, 1],
           [1, 0]])
    """
    fid = np.asarray(fake_ids)
    rid = np.asarray(real_ids)
    if fid.ndim != 1 or rid.ndim != 1:
        raise ValueError(f"fake_ids and real_ids must be 1-D, got shapes {fid.shape} and {rid.shape}")
    if (fake_frames is None) != (real_frames is None):
        raise ValueError("give frame ids for both sides (fake_frames and real_frames) or for neither")
    if fake_frames is not None:
        ff = as_labels(fake_frames, "fake_frames", fid.shape[0])
        rf = as_labels(real_frames, "real_frames", rid.shape[0])
        fkeys = list(zip(fid.tolist(), ff.tolist()))
        rkeys = list(zip(rid.tolist(), rf.tolist()))
    else:
        fkeys, rkeys = fid.tolist(), rid.tolist()
    lookup: dict = {}
    for j, key in enumerate(rkeys):
        if key in lookup:
            hint = "" if fake_frames is not None else " (several frames per video? pass fake_frames/real_frames)"
            raise ValueError(f"real key {key!r} occurs more than once (real samples {lookup[key]} and {j}): "
                             f"pairing is ambiguous{hint}")
        lookup[key] = j
    rows = [(i, lookup[key]) for i, key in enumerate(fkeys) if key in lookup]
    n_unmatched = len(fkeys) - len(rows)
    if not rows:
        raise ValueError(f"no fake sample has a matching real sample (checked {len(fkeys)} fakes against "
                         f"{len(rkeys)} reals)")
    if n_unmatched and warn_unmatched:
        warnings.warn(f"{n_unmatched} of {len(fkeys)} fake samples have no matching real sample and are "
                      "left out", UserWarning, stacklevel=2)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def _resolve_pairs(n_fake, n_real, pairs, fake_ids, real_ids, fake_frames, real_frames,
                   allow_index_pairing) -> tuple[np.ndarray, str, int]:
    if pairs is not None:
        if fake_ids is not None or real_ids is not None:
            raise ValueError("give either pairs or fake_ids/real_ids, not both")
        p = np.asarray(pairs)
        if p.ndim != 2 or p.shape[1] != 2 or not np.issubdtype(p.dtype, np.integer):
            raise ValueError(f"pairs must be an integer array of shape (P, 2), got {p.shape} {p.dtype}")
        if p.shape[0] == 0:
            raise ValueError("pairs is empty")
        if p[:, 0].min() < 0 or p[:, 0].max() >= n_fake or p[:, 1].min() < 0 or p[:, 1].max() >= n_real:
            raise ValueError(f"pairs has indices out of range for {n_fake} fake and {n_real} real maps")
        return p.astype(np.int64), "explicit", 0
    if fake_ids is not None or real_ids is not None:
        if fake_ids is None or real_ids is None:
            raise ValueError("give both fake_ids and real_ids")
        as_labels(fake_ids, "fake_ids", n_fake)
        as_labels(real_ids, "real_ids", n_real)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = pair_by_source(fake_ids, real_ids, fake_frames, real_frames)
        n_unmatched = n_fake - len(np.unique(p[:, 0]))
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=3)
        return p, ("frame" if fake_frames is not None else "source_id"), n_unmatched
    if not allow_index_pairing:
        raise ValueError("no pairing given: pass fake_ids/real_ids (source ids, optionally frame ids) or "
                         "explicit pairs; index pairing (the reference's behaviour) compares unrelated "
                         "images and needs allow_index_pairing=True")
    if n_fake != n_real:
        raise ValueError(f"index pairing needs as many fake as real maps, got {n_fake} and {n_real}")
    warnings.warn("pairing fake and real maps by list index, as the reference notebook did: unless the two "
                  "lists were built in matching order, the i-th fake and the i-th real are unrelated images "
                  "and the mask measures scene differences, not the manipulation. Prefer fake_ids/real_ids "
                  "or pairs.", UserWarning, stacklevel=3)
    idx = np.arange(n_fake, dtype=np.int64)
    return np.stack([idx, idx], axis=1), "index", 0


def mask_activation(fake_maps, real_maps, thresholds=DEFAULT_THRESHOLDS, pairs=None, fake_ids=None,
                    real_ids=None, groups=None, methods=None, allow_index_pairing: bool = False, *,
                    fake_frames=None, real_frames=None, normalize: bool = True, n_boot: int = 2000,
                    confidence: float = 0.95, seed=0, chunk_size: int = 64) -> pd.DataFrame:
    """Activated-pixel statistics of binary difference masks over a threshold sweep.

    For each pair (fake, the real it was made from) and each threshold ``t``, the number of pixels
    with ``|fake - real| > t`` after per-sample min-max normalization of both maps.

    Parameters
    ----------
    fake_maps : array_like, shape (N_fake, H, W) or (N_fake, 1, H, W)
    real_maps : array_like, shape (N_real, H, W) or (N_real, 1, H, W)
        Same H, W as the fakes.
    thresholds : sequence of float
        Default: the reference sweep ``(0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001)``.
    pairs : array_like of int, shape (P, 2), optional
        Explicit ``(fake_index, real_index)`` rows.
    fake_ids, real_ids : array_like, optional
        Source ids; each fake is paired with the real having the same id (see :func:`pair_by_source`;
        add ``fake_frames``/``real_frames`` for frame-level pairing). Fakes with no real are left out
        with a warning; their count is in ``df.attrs["n_unmatched"]``.
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

    Returns
    -------
    pandas.DataFrame
        One row per (method, threshold), columns ``threshold, method, n_pairs, n_units, mean, std, min,
        max, median, mean_fraction, ci_low, ci_high`` (counts in pixels; ``mean_fraction`` is ``mean /
        (H * W)``; ``std`` across pairs, ddof 1, 0 for a single pair). ``df.attrs`` holds ``n_pixels``,
        ``pairing`` ("explicit", "source_id", "frame" or "index"), ``n_unmatched``, ``normalize``,
        ``confidence``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> real = rng.random((4, 8, 8)); fake = real.copy(); fake[:, :2, :2] += 2.0
    >>> df = mask_activation(fake, real, thresholds=(0.1,), fake_ids=list("abcd"),
    ...                      real_ids=list("abcd"), n_boot=100)
    >>> int(df.loc[0, "min"]) >= 4
    True
    """
    fk = as_map_batch(fake_maps, "fake_maps")
    rl = as_map_batch(real_maps, "real_maps")
    if fk.shape[1:] != rl.shape[1:]:
        raise ValueError(f"fake_maps has maps of shape {fk.shape[1:]} (array {fk.shape}) but real_maps "
                         f"has {rl.shape[1:]} (array {rl.shape}); they must match")
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    if thr.size == 0 or not np.all(np.isfinite(thr)) or np.any(thr < 0):
        raise ValueError(f"thresholds must be a non-empty sequence of finite non-negative numbers, got {thresholds!r}")
    confidence = check_confidence(confidence)
    n_fake, n_real = fk.shape[0], rl.shape[0]
    p, how, n_unmatched = _resolve_pairs(n_fake, n_real, pairs, fake_ids, real_ids, fake_frames,
                                         real_frames, allow_index_pairing)
    if groups is None and fake_ids is not None:
        groups = fake_ids
    group_per_fake = None if groups is None else as_labels(groups, "groups", n_fake)
    method_per_fake = (np.full(n_fake, "all", dtype=object) if methods is None
                       else as_labels(methods, "methods", n_fake))

    n_pix = int(fk.shape[1] * fk.shape[2])
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

    pair_methods = method_per_fake[p[:, 0]]
    pair_groups = None if group_per_fake is None else group_per_fake[p[:, 0]]
    rows = []
    for method in pd.unique(pair_methods):
        in_m = pair_methods == method
        g = None if pair_groups is None else pair_groups[in_m]
        _, n_units = group_codes(g, int(in_m.sum()))
        for k, t in enumerate(thr):
            c = counts[in_m, k].astype(np.float64)
            ci = bootstrap_mean_ci(c, g, n_boot=n_boot, confidence=confidence, seed=seed)
            rows.append({
                "threshold": float(t), "method": method, "n_pairs": int(c.size), "n_units": n_units,
                "mean": float(c.mean()), "std": float(c.std(ddof=1)) if c.size > 1 else 0.0,
                "min": float(c.min()), "max": float(c.max()), "median": float(np.median(c)),
                "mean_fraction": float(c.mean() / n_pix), "ci_low": ci.low, "ci_high": ci.high,
            })
    df = pd.DataFrame(rows)
    df.attrs.update({"n_pixels": n_pix, "pairing": how, "n_unmatched": int(n_unmatched),
                     "normalize": bool(normalize), "confidence": confidence})
    return df
