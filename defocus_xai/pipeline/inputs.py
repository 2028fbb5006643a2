"""From an attribution store to what the stages read: arrays, fake/real pairs, examples, sample names.

Every stage takes the dict of arrays :func:`open_arrays` returns (the keys of ``docs/npz_format.md``);
the helpers here pair fakes with their reals and name samples the same way for every caller.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from ..analysis.pairs import fake_real_pairs, reduce_rgb
from .settings import PipelineSettings

__all__ = ["open_arrays", "store_pairs", "attribution_maps", "pick_examples", "sample_name"]


def open_arrays(store_or_pair, *, allow_legacy_pickle: bool = False) -> tuple[dict, str]:
    """The arrays of a store, and a description of where they came from.

    Parameters
    ----------
    store_or_pair : path-like, (real, fake) pair, list of stores, AttributionSet or dict of arrays
        A store folder, a single ``.npz`` file, the reference notebooks' (real file, fake file) pair,
        several stores read as one, an open :class:`~defocus_xai.store.AttributionSet`, or arrays.
    allow_legacy_pickle : bool
        Passed to :func:`~defocus_xai.store.load_attributions` for the reference's pickled files.

    Returns
    -------
    (dict, str)
        Key -> numpy array (``meta`` left out), and the source (path or description).

    Examples
    --------
    >>> arrays, source = open_arrays("exports/run")                   # doctest: +SKIP
    >>> arrays, source = open_arrays(("real.npz", "fake.npz"), allow_legacy_pickle=True)  # doctest: +SKIP
    """
    from ..store import load_attributions, load_store_arrays

    if isinstance(store_or_pair, Mapping):
        return {k: np.asarray(v) for k, v in store_or_pair.items() if k != "meta"}, "arrays"
    if isinstance(store_or_pair, list):
        store_or_pair = tuple(store_or_pair)
    if isinstance(store_or_pair, (str, os.PathLike, tuple)):
        store = load_attributions(store_or_pair, allow_legacy_pickle=allow_legacy_pickle)
    else:
        store = store_or_pair
    source = getattr(store, "source", store_or_pair)
    return load_store_arrays(store), str(source)


def require(arrays: Mapping, what: str, *keys: str) -> None:
    """Raise ``ValueError`` naming the keys ``what`` needs and the store lacks."""
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{what} needs the store keys {missing} (the store has {sorted(arrays)})")


def store_pairs(arrays: Mapping) -> tuple[np.ndarray, str]:
    """Pair each fake with its real: rows ``(fake_row, real_row)`` into the arrays, and how.

    By ``source_ids``; by source id and frame (the file name in ``paths``) when a source has several
    real frames; without ``source_ids``, by list index with a ``UserWarning`` (the reference notebook's
    pairing, which compares unrelated images unless both lists were built in matching order).

    Examples
    --------
    >>> pairs, note = store_pairs({"labels": np.array([0, 1]), "source_ids": np.array(["a", "a"])})
    >>> pairs.tolist(), note
    ([[1, 0]], 'paired by source id: 1 pairs')
    """
    require(arrays, "pairing", "labels")
    labels = np.asarray(arrays["labels"]).astype(int)
    fake_rows, real_rows = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if fake_rows.size == 0 or real_rows.size == 0:
        raise ValueError(f"the store needs real and fake samples, has {real_rows.size} real and {fake_rows.size} fake")
    if "source_ids" not in arrays:
        warnings.warn("the store has no 'source_ids': fakes and reals are paired by list index, as the reference "
                      "notebook did; unless both lists were built in matching order the pairs are unrelated images",
                      UserWarning, stacklevel=2)
        n = min(fake_rows.size, real_rows.size)
        return (np.stack([fake_rows[:n], real_rows[:n]], axis=1),
                "paired by list index (WARNING: no source_ids; pairs may be unrelated images)")
    sid = np.asarray(arrays["source_ids"]).astype(str)
    try:
        pairs, how = fake_real_pairs(labels, sid), "source id"
    except ValueError:
        if "paths" not in arrays:
            raise
        frames = np.array([Path(str(p)).stem for p in arrays["paths"]])
        pairs, how = fake_real_pairs(labels, sid, frame_ids=frames), "source id and frame (file name)"
    n_un = fake_rows.size - pairs.shape[0]
    note = f"paired by {how}: {pairs.shape[0]} pairs" + (f", {n_un} fakes without a real left out" if n_un else "")
    return pairs, note


def attribution_maps(arrays: Mapping) -> dict:
    """|attribution| per model on the map grid: ``defocus`` (``defocus_shaps``), ``rgb`` (``rgb_shaps``).

    RGB attributions are reduced by ``sum_c |a_c|`` and resampled to the map grid
    (:func:`~defocus_xai.analysis.pairs.reduce_rgb`).

    Examples
    --------
    >>> maps = attribution_maps({"dmaps": np.zeros((1, 4, 4)), "defocus_shaps": -np.ones((1, 4, 4))})
    >>> sorted(maps), float(maps["defocus"].max())
    (['defocus'], 1.0)
    """
    require(arrays, "attribution maps", "dmaps")
    grid = np.asarray(arrays["dmaps"]).shape[1:]
    out = {}
    if "defocus_shaps" in arrays:
        out["defocus"] = reduce_rgb(arrays["defocus_shaps"], grid=grid)
    if "rgb_shaps" in arrays:
        out["rgb"] = reduce_rgb(arrays["rgb_shaps"], grid=grid)
    return out


def pick_examples(pairs: np.ndarray, settings: PipelineSettings | None = None, *, arrays: Mapping | None = None,
                  family: str | None = None) -> np.ndarray:
    """Positions into ``pairs`` of the example pairs: a seeded draw of ``settings.max_examples``.

    With ``family`` (and ``arrays`` holding ``families``), the draw is among that family's fakes when it
    has any.

    Examples
    --------
    >>> pick_examples(np.array([[1, 0], [3, 2]]), PipelineSettings(max_examples=1)).shape
    (1,)
    """
    s = settings or PipelineSettings()
    candidates = np.arange(len(pairs))
    if family is not None and arrays is not None and "families" in arrays:
        fam = np.asarray(arrays["families"]).astype(str)[pairs[:, 0]]
        if (fam == family).any():
            candidates = np.flatnonzero(fam == family)
    rng = np.random.default_rng(s.seed)
    return np.sort(rng.choice(candidates, size=min(s.max_examples, candidates.size), replace=False))


def sample_name(arrays: Mapping, i: int) -> str:
    """How figures and captions name sample ``i``: index, family, source id and score when known.

    Examples
    --------
    >>> sample_name({"families": np.array(["real", "splice"]), "scores": np.array([0.1, 0.93])}, 1)
    '#1, splice, score 0.93'
    """
    parts = [f"#{int(i)}"]
    if "families" in arrays:
        parts.append(str(arrays["families"][i]))
    if "source_ids" in arrays:
        parts.append(f"source {arrays['source_ids'][i]}")
    if "scores" in arrays:
        parts.append(f"score {float(arrays['scores'][i]):.2f}")
    return ", ".join(parts)


def masked_fakes(arrays: Mapping, family: str | None = None) -> np.ndarray:
    """Rows of the fakes with a non-empty ground-truth mask (of one family if given)."""
    if "gt_masks" not in arrays:
        return np.zeros(0, dtype=np.int64)
    labels = np.asarray(arrays["labels"]).astype(int)
    keep = (labels == 1) & (np.asarray(arrays["gt_masks"]).reshape(len(labels), -1).sum(axis=1) > 0)
    if family is not None and "families" in arrays:
        keep &= np.asarray(arrays["families"]).astype(str) == family
    return np.flatnonzero(keep)
