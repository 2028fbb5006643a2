"""From an attribution store to what the stages read: arrays, fake/real pairs, examples, sample names.

Every stage takes the dict of arrays :func:`open_arrays` returns (the keys of ``docs/npz_format.md``);
the helpers here pair fakes with their reals and name samples the same way for every caller.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from ..analysis.pairs import fake_real_pairs, reduce_rgb
from .settings import PipelineSettings

__all__ = ["open_arrays", "store_pairs", "attribution_maps", "pick_examples", "sample_name", "sample_kwargs",
           "attribution_reference", "image_of"]


def open_arrays(store_or_pair, *, allow_legacy_pickle: bool = False, groups=None) -> tuple[dict, str]:
    """The arrays of a store, and a description of where they came from.

    Parameters
    ----------
    store_or_pair : path-like, (real, fake) pair, list of stores, AttributionSet or dict of arrays
        A store folder, a single ``.npz`` file, the reference notebooks' (real file, fake file) pair,
        several stores read as one, an open :class:`~defocus_xai.store.AttributionSet`, or arrays.
    allow_legacy_pickle : bool
        Passed to :func:`~defocus_xai.store.load_attributions` for the reference's pickled files.
    groups : sequence of str, optional
        Source ids of the reference files' samples (real file's, then fake file's), passed to
        :func:`~defocus_xai.store.load_attributions`; without them they are inferred from the files' FF++
        sample paths, or a ``UserWarning`` says the frames are treated as independent units. Every stage
        pairs and groups by the resulting ``source_ids``.

    Returns
    -------
    (dict, str)
        Key -> numpy array (``meta`` as its JSON string, a 0-d array, when the store has one), and the
        source (path or description).

    Examples
    --------
    >>> arrays, source = open_arrays("exports/run")                   # doctest: +SKIP
    >>> arrays, source = open_arrays(("real.npz", "fake.npz"), allow_legacy_pickle=True)  # doctest: +SKIP
    """
    from ..store import load_attributions, load_store_arrays

    if groups is not None and not isinstance(store_or_pair, (str, os.PathLike, tuple, list)):
        raise ValueError("groups=... applies to files being opened (the reference pair); arrays or an open "
                         "store carry their groups as 'source_ids'")
    if isinstance(store_or_pair, Mapping):
        return {k: np.asarray(v) if k != "meta" else _meta_array(v) for k, v in store_or_pair.items()}, "arrays"
    if isinstance(store_or_pair, list):
        store_or_pair = tuple(store_or_pair)
    if isinstance(store_or_pair, (str, os.PathLike, tuple)):
        store = load_attributions(store_or_pair, allow_legacy_pickle=allow_legacy_pickle, groups=groups)
    else:
        store = store_or_pair
    source = getattr(store, "source", store_or_pair)
    arrays = load_store_arrays(store)
    if getattr(store, "meta", None):
        arrays["meta"] = _meta_array(store.meta)
    return arrays, str(source)


def _meta_array(meta) -> np.ndarray:
    """The store's ``meta`` as one JSON string (0-d array), whether given as a dict or as the string."""
    if isinstance(meta, np.ndarray):
        meta = meta.item() if meta.ndim == 0 else str(meta)
    return np.asarray(meta if isinstance(meta, str) else json.dumps(meta, default=str))


def attribution_reference(arrays: Mapping, key: str = "defocus_shaps") -> str | None:
    """The attribution reference (background) of ``key`` as the store's ``meta`` records it, or None.

    Examples
    --------
    >>> meta = {"defocus_shaps": {"background": "zeros maps (1, 8, 8)"}}
    >>> attribution_reference({"meta": np.asarray(json.dumps(meta))})
    'zeros maps (1, 8, 8)'
    """
    if "meta" not in arrays:
        return None
    try:
        meta = json.loads(str(np.asarray(arrays["meta"]).item()))
    except (ValueError, TypeError):
        return None
    entry = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(entry, dict):
        entry = (meta.get("attributions") or {}).get(key) if isinstance(meta, dict) else None
    bg = entry.get("background") if isinstance(entry, dict) else None
    return None if bg is None else str(bg)


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


def attribution_maps(arrays: Mapping, *, rgb_reduction: str = "sum_abs") -> dict:
    """|attribution| per model on the map grid: ``defocus`` (``defocus_shaps``), ``rgb`` (``rgb_shaps``).

    RGB attributions are reduced by ``sum_c |a_c|`` (``rgb_reduction="channel0"``: ``|a_0|``, the paper's
    code) and resampled to the map grid (:func:`~defocus_xai.analysis.pairs.reduce_rgb`).

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
        out["rgb"] = reduce_rgb(arrays["rgb_shaps"], grid=grid, method=rgb_reduction)
    return out


def pick_examples(pairs: np.ndarray, settings: PipelineSettings | None = None, *, arrays: Mapping | None = None,
                  family: str | None = None) -> np.ndarray:
    """Positions into ``pairs`` of the example pairs: a seeded draw of ``settings.max_examples``.

    With ``arrays``, degenerate pairs (identical maps: nothing to show) are never drawn, and with
    ``family`` (and ``families`` in ``arrays``) the draw is among that family's fakes when it has any.

    Examples
    --------
    >>> pick_examples(np.array([[1, 0], [3, 2]]), PipelineSettings(max_examples=1)).shape
    (1,)
    """
    s = settings or PipelineSettings()
    ok = np.ones(len(pairs), dtype=bool)
    if arrays is not None and "dmaps" in arrays:
        dm = np.asarray(arrays["dmaps"])
        ok = np.array([bool(np.any(dm[f] != dm[r])) for f, r in pairs], dtype=bool)
    candidates = np.flatnonzero(ok) if ok.any() else np.arange(len(pairs))
    if family is not None and arrays is not None and "families" in arrays:
        fam = np.asarray(arrays["families"]).astype(str)[pairs[candidates, 0]]
        if (fam == family).any():
            candidates = candidates[fam == family]
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


def sample_kwargs(arrays: Mapping, i: int) -> dict:
    """The keyword arguments that name sample ``i`` in a plot: ``sample_id``, ``family``, ``source_id``, ``score``.

    Examples
    --------
    >>> sample_kwargs({"families": np.array(["real", "splice"])}, 1)
    {'sample_id': 1, 'family': 'splice', 'source_id': None, 'score': None}
    """
    return {"sample_id": int(i),
            "family": str(arrays["families"][i]) if "families" in arrays else None,
            "source_id": str(arrays["source_ids"][i]) if "source_ids" in arrays else None,
            "score": float(arrays["scores"][i]) if "scores" in arrays else None}


def image_of(arrays: Mapping, i: int, images=None):
    """The image of sample ``i``: ``images[i]`` when given, else the file ``paths[i]`` names, else None.

    Examples
    --------
    >>> image_of({"paths": np.array(["synth:1:0"])}, 0) is None
    True
    """
    if images is not None:
        return np.asarray(images[int(i)])
    if "paths" not in arrays or not os.path.isfile(str(arrays["paths"][i])):
        return None
    from PIL import Image

    try:
        with Image.open(str(arrays["paths"][i])) as im:
            return np.asarray(im.convert("RGB"))
    except OSError:
        return None


def masked_fakes(arrays: Mapping, family: str | None = None) -> np.ndarray:
    """Rows of the fakes with a non-empty ground-truth mask (of one family if given)."""
    if "gt_masks" not in arrays:
        return np.zeros(0, dtype=np.int64)
    labels = np.asarray(arrays["labels"]).astype(int)
    keep = (labels == 1) & (np.asarray(arrays["gt_masks"]).reshape(len(labels), -1).sum(axis=1) > 0)
    if family is not None and "families" in arrays:
        keep &= np.asarray(arrays["families"]).astype(str) == family
    return np.flatnonzero(keep)
