"""The attribution analyses as stages on store arrays: Shapley alignment, localization, example overlays.

Each ``stage_*`` takes the arrays of a store and a :class:`PipelineSettings` and returns a
:class:`StageResult`. Every alignment score is shown beside its controls (permutation baseline, map value,
uniform), every example names its sample, and compared attribution panels share one symmetric limit.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np

from .. import analysis as A
from .. import plot as P
from ..analysis.pairs import random_attributions
from ..plot import style as S
from ..plot._convert import as_image
from .inputs import attribution_maps, attribution_reference, image_of, masked_fakes, require, sample_name
from .result import StageResult
from .settings import PipelineSettings
from .stages import opt, setup

__all__ = ["stage_alignment", "stage_localization", "stage_attributions"]

_CONTROL_WORDS = {"permutation": "permutation baseline", "map_value": "map-value control",
                  "uniform": "uniform control"}


def _reference_text(arrays: Mapping) -> str:
    """``"attribution reference: ..."`` for captions (what the store's meta records, or 'not recorded')."""
    refs = {k.split("_")[0]: attribution_reference(arrays, k) for k in ("defocus_shaps", "rgb_shaps") if k in arrays}
    known = {k: v for k, v in refs.items() if v}
    if not known:
        return "attribution reference: not recorded in the store"
    if len(set(known.values())) == 1:
        return f"attribution reference: {next(iter(known.values()))}"
    return "attribution reference: " + "; ".join(f"{k} {v}" for k, v in known.items())


def _paired_difference(summaries: dict, s: PipelineSettings) -> dict:
    """Per-sample difference of the first two models' overlap and KL on the fakes both scored."""
    names = list(summaries)[:2]
    a, b = (summaries[k].per_sample.set_index("sample") for k in names)
    common = a.index.intersection(b.index)
    out = {"models": names, "n": int(len(common))}
    for metric in ("overlap", "kl"):
        d = a.loc[common, metric].to_numpy() - b.loc[common, metric].to_numpy()
        ci = A.bootstrap_mean_ci(d, n_boot=s.n_boot, seed=s.seed)
        out[metric] = {**ci.to_dict(), "win_rate": float(np.mean(d > 0))}
    return out


def controls_text(name: str, x: Mapping, *, with_mean: bool = True) -> str:
    """One model's overlap beside its controls, and whether it beats every one, in words."""
    parts = []
    for c, word in _CONTROL_WORDS.items():
        d = (x.get("control_details") or {}).get(c) or {}
        if d.get("mean_overlap") is not None:
            p = d.get("p_value")
            parts.append(f"{word} {d['mean_overlap']:.3f} (" + ("beaten" if d.get("beaten") else "not beaten")
                         + (f", p = {p:.2g}" if p is not None else "") + ")")
    verdict = "beats every control" if x.get("beats_all_controls") else "does NOT beat every control"
    mean = f"mean overlap {x['mean_overlap']:.3f}; " if with_mean else ""
    return f"{name}: {mean}" + "; ".join(parts) + f"; it {verdict}"


def _alignment_example(arrays, attrs, dm, f, r, ref, means, s):
    """One fake's alignment histograms, one panel per model on shared axes ranges, and the caption."""
    with S.house_style():
        fig, axs = S.new_figure(1, len(attrs), width="double" if len(attrs) > 1 else "single",
                                aspect=0.36 if len(attrs) > 1 else 0.65, squeeze=False, sharex=True, sharey=True)
    axs, txt, overlaps = list(axs.ravel()), [], {}
    for ax, (name, a) in zip(axs, attrs.items()):
        try:
            res = A.alignment_score(np.asarray(a)[f], real_map=dm[r], fake_map=dm[f], bins=s.alignment_bins,
                                    eps=s.alignment_eps)
        except ValueError as err:  # a degenerate pair (identical maps, zero attribution): say so, draw nothing
            ax.text(0.5, 0.5, f"not scored:\n{err}", ha="center", va="center", fontsize=7, wrap=True)
            ax.set_axis_off()
            txt.append(f"{name}: not scored ({err})")
            continue
        P.alignment_histogram(res, ax=ax, title=f"{name} model", background=ref.split(": ", 1)[1])
        overlaps[name] = res.overlap
        txt.append(f"{name}: overlap {res.overlap:.3f}, KL {res.kl:.3f}")
    for ax in axs[1:]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    with S.house_style():
        fig.suptitle(f"fake {sample_name(arrays, f)}, beside its own real #{int(r)}")
    caption = (f"Fake {sample_name(arrays, f)} (its real: #{int(r)}): share of |fake - real| and of |attribution| "
               "per bin of the fake's normalized defocus value, axes shared by the panels; overlap = sum of bin-wise "
               "minima (1 = same bins), KL(attr || diff); " + "; ".join(txt) + f"; {ref}.")
    if len(overlaps) >= 2 and all(k in means for k in overlaps):
        hi_ex, hi_all = max(overlaps, key=overlaps.get), max(means, key=means.get)
        caption += (f" One fake only: over all fakes the mean overlaps are "
                    + ", ".join(f"{k} {means[k]:.3f}" for k in overlaps)
                    + (" (the same order)." if hi_ex == hi_all else
                       " - the opposite order: this example is not representative; read alignment_comparison."))
    return fig, caption


def stage_alignment(arrays: Mapping, settings: PipelineSettings | None = None, *, pairs=None, examples=None,
                    attributions: dict | None = None) -> StageResult:
    """Shapley alignment of each model's |attribution| with |fake - real|, beside its controls.

    The controls of :func:`~defocus_xai.analysis.alignment_scores` (permutation baseline, map-value
    and uniform attributions) are in the numbers (``controls``, ``control_details``,
    ``beats_all_controls``), the figure and its caption. Degenerate pairs are skipped and counted.

    Parameters
    ----------
    attributions : dict, optional
        Model name -> (N, H, W) |attribution| on the map grid in the rows of ``arrays``; default
        :func:`attribution_maps` (``defocus`` and ``rgb``). With two or more models the paired
        difference of the first two is reported too.

    Returns
    -------
    StageResult
        Figures ``alignment_example_<k>`` and ``alignment_comparison``.

    Examples
    --------
    >>> stage_alignment(arrays).numbers["defocus"]["beats_all_controls"]   # doctest: +SKIP
    """
    s, dm, pairs, note, examples = setup(arrays, settings, pairs, examples, "stage_alignment")
    attrs = attribution_maps(arrays, rgb_reduction=s.rgb_reduction) if attributions is None else attributions
    if not attrs:
        raise ValueError("stage_alignment needs 'defocus_shaps' or 'rgb_shaps' in the store (or attributions=)")
    fi, ri = pairs[:, 0], pairs[:, 1]
    ref = _reference_text(arrays)
    summaries, numbers = {}, {}
    for name, a in attrs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summaries[name] = A.alignment_scores(
                np.asarray(a)[fi], real_maps=dm[ri], fake_maps=dm[fi], groups=opt(arrays, "source_ids", fi),
                n_boot=s.n_boot, seed=s.seed, n_permutations=min(s.n_permutations, 10 * len(fi)),
                bins=s.alignment_bins, eps=s.alignment_eps,
                on_degenerate="skip")
        numbers[name] = {k: v for k, v in summaries[name].to_dict().items() if k != "baseline_means"}
        numbers[name]["skipped"] = [int(fi[i]) for i in summaries[name].skipped]  # store rows, not pair positions
    if len(attrs) >= 2:
        numbers["paired_difference"] = _paired_difference(summaries, s)
    figures, captions = {}, {}
    means = {k: summaries[k].mean_overlap for k in attrs}
    for k, j in enumerate(examples):
        f, r = pairs[j]
        figures[f"alignment_example_{k}"], captions[f"alignment_example_{k}"] = _alignment_example(
            arrays, attrs, dm, f, r, ref, means, s)
    beaten = [k for k in attrs if summaries[k].beats_all_controls]
    verdict = (("Every model beats every control." if len(beaten) == len(attrs) else
                "Only " + " and ".join(beaten) + " beats every control.") if beaten else
               "No model beats every control: no evidence that the attributions follow the defocus change.")
    figures["alignment_comparison"] = P.alignment_comparison(summaries, background=ref.split(": ", 1)[1],
                                                             caption=verdict)
    skipped = sum(x.n_skipped for x in summaries.values())
    captions["alignment_comparison"] = (
        "Alignment score (histogram overlap) per fake for each model's attributions, with the mean and its bootstrap "
        "95% CI (sources resampled); lines: the controls' mean overlaps (permutation baseline: attributions "
        "shuffled across fakes; map-value control: |attribution| = the fake's map value; uniform control: equal "
        "weight everywhere)" + ((" (RGB: |attribution| of channel 0 only, as the paper's code" if s.rgb_reduction == "channel0" else
            " (RGB: sum of |attribution| over channels") + ", on the map grid)" if "rgb" in attrs else "")
        + f"; {ref}; n = {len(fi)} pairs" + (f", {skipped} degenerate pair(s) skipped" if skipped else "") + ". "
        + ". ".join(controls_text(k, numbers[k]) for k in attrs) + ". "
        + verdict + f" {note}".rstrip())
    return StageResult("alignment", numbers=numbers, figures=figures, captions=captions)


def _shared_limit(panels) -> float:
    return S.symmetric_limit(np.concatenate([np.ravel(_signed(a)) for a in panels]))


def _overlay_row(fig, axs, panels: dict, *, image, dmap, mask, label: str, reference: str) -> float:
    """Signed attribution panels on one symmetric limit and one colour bar; returns the limit."""
    lim = _shared_limit(panels.values())
    where = {"image": image} if image is not None else {"dmap": dmap}
    under = "the image (grey)" if image is not None else "the defocus map (grey: light = more blur)"
    for k, (ax, (name, a)) in enumerate(zip(axs, panels.items())):
        P.attribution_overlay(a, label=label, axes=[ax], limit=lim, colorbar=k == len(panels) - 1, mask=mask,
                              background=reference.split(": ", 1)[1], caption=f"Drawn over {under}; one scale "
                              f"(+-{lim:.2g}) for all panels.", **where)
        with S.house_style():
            ax.set_title(name)
    return lim


def stage_localization(arrays: Mapping, settings: PipelineSettings | None = None, *, attributions=None,
                       family: str | None = None, images=None) -> StageResult:
    """Localization of |attribution| on the fakes' ground-truth masks, against random attributions.

    Parameters
    ----------
    arrays : dict
        Store arrays with ``labels``, ``gt_masks`` and ``dmaps``.
    attributions : dict, optional
        Name -> (N, H, W) attributions in the rows of ``arrays``; default ``"<model> SHAP"`` for each
        model of :func:`attribution_maps`. A ``"random"`` baseline is added.
    family : str, optional
        Only the fakes of this family (e.g. ``"splice"``, the DefocusSynth family with local masks).
    images : sequence, optional
        Images in the rows of ``arrays`` (the example is drawn over its image; default: the file
        ``paths`` names, else the defocus map).

    Returns
    -------
    StageResult
        Figures ``localization`` and, when the store has ``defocus_shaps``, ``localization_example``.

    Examples
    --------
    >>> stage_localization(arrays, family="splice").numbers["random"]   # doctest: +SKIP
    """
    s = settings or PipelineSettings()
    require(arrays, "stage_localization", "labels", "gt_masks", "dmaps")
    rows = masked_fakes(arrays, family)
    if rows.size == 0:
        raise ValueError("stage_localization: no fake" + (f" of family {family!r}" if family else "")
                         + " has a non-empty ground-truth mask")
    masks = np.asarray(arrays["gt_masks"])[rows]
    if attributions is None:
        attributions = {f"{k} SHAP": v for k, v in attribution_maps(arrays, rgb_reduction=s.rgb_reduction).items()}
    attrs = {k: np.asarray(v)[rows] for k, v in attributions.items()}
    attrs.setdefault("random", random_attributions(masks.shape, seed=s.seed))
    sums, numbers = {}, {}
    for name, a in attrs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sums[name] = A.localization_scores(a, masks, groups=opt(arrays, "source_ids", rows), n_boot=s.n_boot,
                                               seed=s.seed)
        x = sums[name]
        numbers[name] = {"summary": x.summary.to_dict(orient="records"), "n": x.n, "n_skipped": x.n_skipped,
                         "mask_fraction": float(x.per_sample["mask_fraction"].mean()) if x.n else None}
    ref = _reference_text(arrays)
    figures = {"localization": P.localization_curves(
        sums, background=ref.split(": ", 1)[1], caption="Error bars: bootstrap 95% CI over sources.")}
    captions = {"localization": _localization_caption(numbers, rows.size, family, ref)}
    if "defocus_shaps" in arrays:
        figures["localization_example"], captions["localization_example"] = _localization_example(
            arrays, rows[0], images)
    return StageResult("localization", numbers=numbers, figures=figures, captions=captions)


def _localization_caption(numbers: dict, n: int, family, ref: str) -> str:
    r_auc = {x["metric"]: x for x in numbers["random"]["summary"]}.get("auroc", {}).get("mean", 0.5)
    above = [k for k, x in numbers.items() if k != "random" and
             ({m["metric"]: m for m in x["summary"]}.get("auroc") or {}).get("ci_low", 0.0) > r_auc]
    return (f"Localization of |attribution| against the ground-truth masks of {n} fakes"
            + (f" ({family})" if family else "") + ": pointing game, relevance mass and rank accuracy, pixel AUROC "
            "(mean, bootstrap 95% CI over sources; dotted: chance; 'random': uniform random attributions); "
            f"{ref}. " + ("AUROC CI above the random attributions': " + ", ".join(above) + "." if above else
                          "No attribution's AUROC CI lies above the random attributions': this figure does not show "
                          "that the attributions find the manipulated region."))


def _localization_example(arrays: Mapping, i: int, images=None):
    """The image (or map) with its true mask beside the signed attributions, on one limit, one mask colour."""
    dm, mask = np.asarray(arrays["dmaps"][i]), np.asarray(arrays["gt_masks"][i]) > 0
    image = image_of(arrays, i, images)
    panels = {"defocus SHAP": arrays["defocus_shaps"][i]}
    if "rgb_shaps" in arrays:
        panels["RGB SHAP (sum over channels)"] = arrays["rgb_shaps"][i]
    with S.house_style():
        fig, axs = S.new_figure(1, len(panels) + 1, width="double", aspect=0.34, squeeze=False)
    axs = list(axs.ravel())
    lim = _overlay_row(fig, axs[1:], panels, image=image, dmap=dm, mask=mask, label="SHAP value",
                       reference=_reference_text(arrays))
    with S.house_style():
        if image is not None:
            axs[0].imshow(np.clip(as_image(image), 0, 1))
        else:
            axs[0].imshow(dm, cmap="gray")
        axs[0].contour(mask.astype(float), levels=[0.5], colors=[S.MASK_COLOR], linewidths=0.8)
        axs[0].set_title(("image" if image is not None else "defocus map") + " + true mask")
        S._image_off(axs[0])
        fig.suptitle(f"fake {sample_name(arrays, i)}")
    caption = (f"Fake {sample_name(arrays, i)}: its {'image' if image is not None else 'defocus map'} with the true "
               "manipulation mask (black outline, in every panel) beside the signed attributions over the "
               f"{'image' if image is not None else 'map'}, on one diverging scale (+-{lim:.3g}: the 99th percentile "
               f"of |attribution| over both panels; red pushes towards 'fake'); {_reference_text(arrays)}.")
    return fig, caption


def stage_attributions(arrays: Mapping, settings: PipelineSettings | None = None, *, pairs=None,
                       examples=None, images=None) -> StageResult:
    """Signed attributions of example fakes, both models on one symmetric limit, over the image or map.

    Returns
    -------
    StageResult
        Figures ``attribution_<k>``.

    Examples
    --------
    >>> stage_attributions(arrays).figures                             # doctest: +SKIP
    """
    s, dm, pairs, _, examples = setup(arrays, settings, pairs, examples, "stage_attributions")
    keys = [k for k in ("defocus_shaps", "rgb_shaps") if k in arrays]
    if not keys:
        raise ValueError("stage_attributions needs 'defocus_shaps' or 'rgb_shaps' in the store")
    figures, captions = {}, {}
    for k, j in enumerate(examples):
        f = int(pairs[j][0])
        image = image_of(arrays, f, images)
        panels = {f"{key.split('_')[0]} model" + (" (sum over RGB)" if key == "rgb_shaps" else ""): arrays[key][f]
                  for key in keys}
        with S.house_style():
            fig, axs = S.new_figure(1, len(panels), width="single" if len(panels) == 1 else "double",
                                    aspect=0.5 if len(panels) == 1 else 0.4, squeeze=False)
        lim = _overlay_row(fig, list(axs.ravel()), panels, image=image, dmap=dm[f], mask=None, label="SHAP value",
                           reference=_reference_text(arrays))
        with S.house_style():
            fig.suptitle(f"fake {sample_name(arrays, f)}")
        figures[f"attribution_{k}"] = fig
        captions[f"attribution_{k}"] = (
            f"SHAP attributions for fake {sample_name(arrays, f)} on one diverging scale shared by the panels "
            f"(+-{lim:.3g}: the 99th percentile of |attribution| over both; red pushes towards 'fake'), over the "
            f"greyscale {'image' if image is not None else 'defocus map'}; {_reference_text(arrays)}.")
    return StageResult("attributions", figures=figures, captions=captions)


def _signed(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.sum(axis=0) if a.ndim == 3 else a
