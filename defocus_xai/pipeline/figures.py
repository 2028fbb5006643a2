"""``paper_figures``: every figure the paper's analyses need, from one attribution store, with an index.

It runs the stages of :mod:`defocus_xai.pipeline.stages` that the store's keys allow and writes their
figures plus ``figures.md`` (captions and numbers); see ``docs/figures.md``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .inputs import masked_fakes, open_arrays, pick_examples, store_pairs
from .result import StageResult
from .settings import PipelineSettings
from .attribution_stages import controls_text, stage_alignment, stage_attributions, stage_localization
from .stages import stage_embedding, stage_masks, stage_variance

__all__ = ["paper_figures"]

_ATTRS = ("defocus_shaps", "rgb_shaps")


def _summary(result: StageResult) -> str:
    """One line of the stage's headline numbers for the index."""
    n = result.numbers
    if result.name == "masks":
        return "; ".join(f"{r['method']}: mean {r['mean']:,.0f} px [{r['ci_low']:,.0f}, {r['ci_high']:,.0f}] at "
                         f"t={n['threshold']:g} (n={r['n_pairs']} pairs, {r['n_units']} units)" for r in n["at_threshold"])
    if result.name == "variance":
        return (f"{n['headline']}; mean real {n['mean_real']:.4g}, fake {n['mean_fake']:.4g}; difference "
                f"{n['mean_difference']:.3g} [{n['ci_low']:.3g}, {n['ci_high']:.3g}]; Cliff's delta "
                f"{n['cliffs_delta']:.3f}; n = {n['n_real']} real, {n['n_fake']} fake maps")
    if result.name == "embedding":
        return "; ".join(f"{k}: silhouette {x['silhouette']:.3f}, kNN accuracy {x['knn_accuracy']:.3f} (chance "
                         f"{x['chance_accuracy']:.3f}; {x['cv']} CV, {x['n_units']} units) on the "
                         f"{x['n_features']}-d features" for k, x in n.items() if "knn_accuracy" in x)
    if result.name == "alignment":
        return "; ".join(f"{k}: mean overlap {x['mean_overlap']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}], n = "
                         f"{x['n']} ({x['n_units']} units, {x['n_skipped']} degenerate skipped"
                         + (f": rows {x['skipped']}" if x["n_skipped"] else "") + "); "
                         + controls_text(k, x, with_mean=False).split(": ", 1)[1]
                         for k, x in n.items() if k != "paired_difference")
    if result.name == "localization":
        return "; ".join(f"{k}: " + ", ".join(f"{s['metric']} {s['mean']:.3f}" for s in x["summary"])
                         + f" (n={x['n']}, {x['n_skipped']} skipped)" for k, x in n.items())
    return ""


def _run_stages(arrays: dict, s: PipelineSettings) -> tuple[list[StageResult], list[str], str]:
    """Every stage the keys allow (results, what was left out and why, the pairing note)."""
    pairs, note = store_pairs(arrays)
    ex = pick_examples(pairs, s, arrays=arrays)
    results = [stage_masks(arrays, s, pairs=pairs, examples=ex), stage_variance(arrays, s, pairs=pairs, examples=ex)]
    skipped = []
    if "features" in arrays:
        results.append(stage_embedding(arrays, s))
    else:
        skipped.append("embedding: no 'features' key")
    if any(k in arrays for k in _ATTRS):
        results += [stage_alignment(arrays, s, pairs=pairs, examples=ex),
                    stage_attributions(arrays, s, pairs=pairs, examples=ex)]
    else:
        skipped += ["alignment and attribution overlays: no 'defocus_shaps' or 'rgb_shaps' key"]
    if "gt_masks" in arrays and any(k in arrays for k in _ATTRS) and masked_fakes(arrays).size:
        results.append(stage_localization(arrays, s))
    else:
        skipped.append("localization: needs 'gt_masks' with a non-empty mask of a fake, and an attribution key")
    return results, skipped, note


def _index(path: Path, results: list[StageResult], skipped: list[str], head: str, formats: Sequence[str]) -> None:
    lines = ["# Figures", "", head, ""]
    for r in results:
        summary = _summary(r)
        for stem in r.figures:
            lines += [f"## {stem}", "", "Files: " + ", ".join(f"`{stem}.{f}`" for f in formats), "",
                      r.captions.get(stem, ""), ""]
            if summary and not stem[-1].isdigit():  # the stage's numbers go with its first summary figure
                lines += [f"Numbers: {summary}", ""]
                summary = ""
            if "png" in formats:
                lines += [f"![{stem}]({stem}.png)", ""]
    if skipped:
        lines += ["## Not produced", ""] + [f"- {s}" for s in skipped] + [""]
    path.write_text("\n".join(lines))


def paper_figures(store_or_pair, out_dir, *, settings: PipelineSettings | None = None,
                  formats: Sequence[str] = ("png", "pdf"), dpi: int = 300,
                  allow_legacy_pickle: bool = False) -> list[Path]:
    """Write every figure the store's keys allow, plus a ``figures.md`` index with captions and numbers.

    Figures (file stems; each in every format of ``formats``): ``mask_example_<k>``, ``activation_curve``
    (needs ``dmaps``, ``labels``; fakes paired with their real by ``source_ids``, by source and frame (file
    name in ``paths``) when a source has several frames, else by list index with a warning);
    ``variance_example_<k>``, ``variance_distributions``; ``embedding`` (needs ``features``);
    ``alignment_example_<k>``, ``alignment_comparison`` and ``attribution_<k>`` (need ``defocus_shaps``
    and/or ``rgb_shaps``); ``localization`` and ``localization_example`` (need ``gt_masks``). Every example
    names its samples (index, family, source id, score).

    Parameters
    ----------
    store_or_pair : path-like, (real, fake) pair, list, AttributionSet or dict of arrays
        A store folder, a single ``.npz`` file, the reference notebooks' pair of files, several stores
        read as one, an open store, or arrays (see :func:`~defocus_xai.pipeline.inputs.open_arrays`).
    out_dir : path-like
        Created if needed.
    settings : PipelineSettings, optional
        Threshold, window, bootstrap, permutations, seed, embedding and the number of examples.
    formats : sequence of str
        Matplotlib formats, e.g. ``("png", "pdf")``.
    dpi : int
        Resolution of raster formats.
    allow_legacy_pickle : bool
        Read the reference's pickled files (trusted files only: unpickling runs code from the file).

    Returns
    -------
    list of pathlib.Path
        Every file written, ``figures.md`` last.

    Examples
    --------
    >>> import defocus_xai as dx
    >>> paths = dx.paper_figures("export_dir", "figures/")                        # doctest: +SKIP
    >>> paths = dx.paper_figures(("shap_data_real.npz", "shap_data_fake_Deepfakes.npz"), "figs/",
    ...                          allow_legacy_pickle=True)                        # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    s = settings or PipelineSettings()
    arrays, source = open_arrays(store_or_pair, allow_legacy_pickle=allow_legacy_pickle)
    for k in ("dmaps", "labels"):
        if k not in arrays:
            raise ValueError(f"paper_figures: the store has no {k!r} key (keys: {sorted(arrays)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    open_before = set(plt.get_fignums())
    written: list[Path] = []
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*fakes? without a real.*")
            results, skipped, note = _run_stages(arrays, s)
        for r in results:
            written += r.save_figures(out, formats=formats, dpi=dpi)
    finally:
        for num in set(plt.get_fignums()) - open_before:  # figures left by an error
            plt.close(num)
    labels = np.asarray(arrays["labels"]).astype(int)
    head = (f"Source: `{source}`; {len(labels)} samples ({int((labels == 0).sum())} real, "
            f"{int((labels == 1).sum())} fake); {note}.")
    _index(out / "figures.md", results, skipped, head, formats)
    return written + [out / "figures.md"]
