"""Preparing store arrays for the analyses: fake/real pairing, RGB reduction, random controls.

A fake is paired with the real it was made from (same source id, and same frame when frame ids are
given); index pairing, the reference notebook's, is opt-in and warns. See docs/analysis.md.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._checks import as_float_array, as_labels
from ._grid import to_grid

__all__ = ["pair_by_source", "fake_real_pairs", "reduce_rgb", "RGB_REDUCTIONS", "random_attributions"]


def _keys(ids, frames):
    return ids.tolist() if frames is None else list(zip(ids.tolist(), frames.tolist()))


def pair_by_source(*, real_ids, fake_ids, real_frames=None, fake_frames=None,
                   warn_unmatched: bool = True) -> np.ndarray:
    """Pair each fake with the real it was made from.

    A fake matches the real sample with the same source id (FF++: the fake video ``<target>_<source>``
    is made from the real video ``<target>``, so pass ``<target>`` as the fake's id). When frame ids are
    given for both sides, the key is (source id, frame id), i.e. frame-level pairing.

    Parameters
    ----------
    real_ids : array_like, shape (N_real,)
    fake_ids : array_like, shape (N_fake,)
    real_frames, fake_frames : array_like, optional
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
    >>> pair_by_source(real_ids=["a", "b"], fake_ids=["b", "a", "c"], warn_unmatched=False)
    array([[0, 1],
           [1, 0]])
    """
    rid = np.asarray(real_ids)
    fid = np.asarray(fake_ids)
    if fid.ndim != 1 or rid.ndim != 1:
        raise ValueError(f"real_ids and fake_ids must be 1-D, got shapes {rid.shape} and {fid.shape}")
    if (fake_frames is None) != (real_frames is None):
        raise ValueError("give frame ids for both sides (real_frames and fake_frames) or for neither")
    framed = fake_frames is not None
    rkeys = _keys(rid, as_labels(real_frames, "real_frames", rid.shape[0]) if framed else None)
    fkeys = _keys(fid, as_labels(fake_frames, "fake_frames", fid.shape[0]) if framed else None)
    lookup: dict = {}
    for j, key in enumerate(rkeys):
        if key in lookup:
            hint = "" if framed else " (several frames per video? pass real_frames/fake_frames)"
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


def fake_real_pairs(labels, source_ids, *, frame_ids=None) -> np.ndarray:
    """Pair the fakes of one store with their reals: rows ``(fake_row, real_row)`` into the full arrays.

    Parameters
    ----------
    labels : array_like, shape (N,)
        0 = real, 1 = fake (a store's ``labels``).
    source_ids : array_like, shape (N,)
        A fake and the real it was made from share one (a store's ``source_ids``).
    frame_ids : array_like, shape (N,), optional
        Frame id per sample, for frame-level pairing when a source has several real frames.

    Returns
    -------
    ndarray of int64, shape (n_pairs, 2)
        Fakes without a real are left out silently (see :func:`pair_by_source` to count them).

    Examples
    --------
    >>> fake_real_pairs([0, 1, 0, 1], ["a", "b", "b", "a"])
    array([[1, 2],
           [3, 0]])
    """
    lab = np.asarray(labels).astype(int)
    sid = as_labels(np.asarray(source_ids).astype(str), "source_ids", lab.shape[0])
    frames = None if frame_ids is None else as_labels(np.asarray(frame_ids), "frame_ids", lab.shape[0])
    fake_rows, real_rows = np.flatnonzero(lab == 1), np.flatnonzero(lab == 0)
    p = pair_by_source(real_ids=sid[real_rows], fake_ids=sid[fake_rows],
                       real_frames=None if frames is None else frames[real_rows],
                       fake_frames=None if frames is None else frames[fake_rows], warn_unmatched=False)
    return np.stack([fake_rows[p[:, 0]], real_rows[p[:, 1]]], axis=1)


RGB_REDUCTIONS = ("sum_abs", "channel0")
"""Ways :func:`reduce_rgb` turns (N, 3, H, W) attributions into one map: ours and the paper's."""


def reduce_rgb(attributions, *, grid=None, method: str = "sum_abs") -> np.ndarray:
    """RGB attributions to one relevance map per sample, optionally resampled.

    Parameters
    ----------
    attributions : array_like, shape (N, 3, H, W) or (N, H, W)
        (N, H, W) is the reference's RGB layout (channel 0 only); it is taken as one channel.
    grid : (int, int), optional
        Target (height, width), e.g. the defocus maps' grid; bilinear resampling when it differs.
    method : {"sum_abs", "channel0"}
        ``"sum_abs"`` (default): ``sum_c |a_c|``, every channel counts. ``"channel0"``: ``|a_0|``, the
        paper's code (it keeps channel 0 of the RGB attribution and drops the evidence in G and B).

    Returns
    -------
    ndarray of float64, shape (N, H, W) or (N, *grid)

    Examples
    --------
    >>> a = np.ones((2, 3, 4, 4)); a[:, 1] = -1.0
    >>> reduce_rgb(a, grid=(2, 2)).shape, float(reduce_rgb(a)[0, 0, 0])
    ((2, 2, 2), 3.0)
    >>> float(reduce_rgb(a, method="channel0")[0, 0, 0])
    1.0
    """
    if method not in RGB_REDUCTIONS:
        raise ValueError(f"method must be one of {RGB_REDUCTIONS}, got {method!r}")
    a = np.abs(as_float_array(attributions, "attributions").astype(np.float64))
    if a.ndim not in (3, 4):
        raise ValueError(f"attributions must have shape (N, 3, H, W) or (N, H, W), got {a.shape}")
    if a.ndim == 4:
        a = a[:, 0] if method == "channel0" else a.sum(axis=1)
    if grid is None or a.shape[1:] == tuple(grid):
        return a
    return np.stack([to_grid(x, tuple(grid)) for x in a])


def random_attributions(shape, seed: int = 0) -> np.ndarray:
    """Uniform random attributions of ``shape`` (float32): the chance level of every localization metric.

    Examples
    --------
    >>> random_attributions((2, 4, 4), seed=1).shape
    (2, 4, 4)
    """
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def resolve_pairs(n_real: int, n_fake: int, *, pairs, real_ids, fake_ids, real_frames, fake_frames,
                  allow_index_pairing: bool) -> tuple[np.ndarray, str, int]:
    """The ``(fake_index, real_index)`` rows that :func:`~defocus_xai.analysis.mask_activation` uses.

    Returns the rows, how they were made ("explicit", "source_id", "frame" or "index") and the number of
    fakes left without a real.
    """
    if pairs is not None:
        if fake_ids is not None or real_ids is not None:
            raise ValueError("give either pairs or real_ids/fake_ids, not both")
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
            raise ValueError("give both real_ids and fake_ids")
        as_labels(real_ids, "real_ids", n_real)
        as_labels(fake_ids, "fake_ids", n_fake)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = pair_by_source(real_ids=real_ids, fake_ids=fake_ids, real_frames=real_frames,
                               fake_frames=fake_frames)
        n_unmatched = n_fake - len(np.unique(p[:, 0]))
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=3)
        return p, ("frame" if fake_frames is not None else "source_id"), n_unmatched
    if not allow_index_pairing:
        raise ValueError("no pairing given: pass real_ids/fake_ids (source ids, optionally frame ids) or "
                         "explicit pairs; index pairing (the reference's behaviour) compares unrelated "
                         "images and needs allow_index_pairing=True")
    if n_fake != n_real:
        raise ValueError(f"index pairing needs as many fake as real maps, got {n_fake} and {n_real}")
    warnings.warn("pairing fake and real maps by list index, as the reference notebook did: unless the two "
                  "lists were built in matching order, the i-th fake and the i-th real are unrelated images "
                  "and the mask measures scene differences, not the manipulation. Prefer real_ids/fake_ids "
                  "or pairs.", UserWarning, stacklevel=3)
    idx = np.arange(n_fake, dtype=np.int64)
    return np.stack([idx, idx], axis=1), "index", 0
