"""The paper's analyses as stages on store arrays: masks, local variance, embedding, alignment, localization.

Each ``stage_*`` takes the arrays of a store (:func:`~defocus_xai.pipeline.inputs.open_arrays`) and a
:class:`PipelineSettings` and returns a :class:`StageResult`; ``demo`` and ``paper_figures`` call the same
functions.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np

from .. import analysis as A
from .. import plot as P
from ..analysis.pairs import random_attributions
from ..plot import style as S
from .inputs import attribution_maps, masked_fakes, pick_examples, require, sample_name, store_pairs
from .result import StageResult
from .settings import PipelineSettings

__all__ = ["stage_masks", "stage_variance", "stage_embedding", "stage_alignment", "stage_localization",
           "stage_attributions"]


def _setup(arrays, settings, pairs, examples, what):
    """Settings, maps, pairs (and their note) and example positions of a paired stage."""
    require(arrays, what, "dmaps", "labels")
    s = settings or PipelineSettings()
    note = ""
    if pairs is None:
        pairs, note = store_pairs(arrays)
    pairs = np.asarray(pairs, dtype=np.int64)
    if examples is None:
        examples = pick_examples(pairs, s)
    return s, np.asarray(arrays["dmaps"], dtype=np.float64), pairs, note, [int(j) for j in examples]


def _opt(arrays: Mapping, key: str, rows):
    return np.asarray(arrays[key]).astype(str)[rows] if key in arrays else None


def stage_masks(arrays: Mapping, settings: PipelineSettings | None = None, *, pairs=None,
                examples=None) -> StageResult:
    """Binary difference masks of fake/real pairs: activation vs threshold per family, example triptychs.

    Parameters
    ----------
    arrays : dict
        Store arrays with ``dmaps`` and ``labels`` (``source_ids`` for pairing and groups, ``families``).
    settings : PipelineSettings, optional
        ``threshold``, ``n_boot``, ``seed``, ``max_examples``.
    pairs : ndarray (P, 2), optional
        Rows ``(fake_row, real_row)``; default :func:`store_pairs`.
    examples : sequence of int, optional
        Positions into ``pairs`` drawn as examples; default :func:`pick_examples`.

    Returns
    -------
    StageResult
        Figures ``mask_example_<k>`` and ``activation_curve``; the table is the activation per threshold.

    Examples
    --------
    >>> r = stage_masks(arrays, PipelineSettings(n_boot=200))          # doctest: +SKIP
    >>> r.numbers["at_threshold"]                                      # doctest: +SKIP
    """
    s, dm, pairs, note, examples = _setup(arrays, settings, pairs, examples, "stage_masks")
    fi, ri = pairs[:, 0], pairs[:, 1]
    figures, captions = {}, {}
    for k, j in enumerate(examples):
        f, r = pairs[j]
        stem = f"mask_example_{k}"
        figures[stem] = P.mask_triptych(real_map=dm[r], fake_map=dm[f], threshold=s.threshold,
                                        title=f"fake {sample_name(arrays, f)}\nvs its real {sample_name(arrays, r)}")
        n_act = int(A.binary_mask(real_map=dm[r], fake_map=dm[f], threshold=s.threshold).sum())
        captions[stem] = (f"Normalized defocus maps of fake {sample_name(arrays, f)} and its real "
                          f"{sample_name(arrays, r)} on one colour scale, and the mask |fake - real| > {s.threshold:g}: "
                          f"{n_act:,} of {dm[f].size:,} pixels activated.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        act = A.mask_activation(real_maps=dm[ri], fake_maps=dm[fi], pairs=np.stack([np.arange(len(fi))] * 2, axis=1),
                                groups=_opt(arrays, "source_ids", fi), methods=_opt(arrays, "families", fi),
                                n_boot=s.n_boot, seed=s.seed)
    figures["activation_curve"] = P.activation_curve(act)
    captions["activation_curve"] = (
        "Mean activated pixels per fake/real pair versus threshold (reversed log axis), one line per manipulation "
        f"method; band: bootstrap 95% CI of the mean (sources resampled); n = {len(fi)} pairs. {note}".strip())
    at_t = act[np.isclose(act["threshold"], s.threshold)]
    numbers = {"threshold": s.threshold, "n_pairs": int(len(fi)), "pairing": note,
               "at_threshold": at_t[["method", "mean", "ci_low", "ci_high", "n_pairs", "n_units"]]
               .to_dict(orient="records")}
    return StageResult("masks", numbers=numbers, figures=figures, captions=captions, table=act)


def stage_variance(arrays: Mapping, settings: PipelineSettings | None = None, *, pairs=None,
                   examples=None) -> StageResult:
    """Local variance of real vs fake maps: KS test (groups = source ids), distributions, example pairs.

    Returns
    -------
    StageResult
        Numbers of :class:`~defocus_xai.analysis.VarianceTestResult`; figures ``variance_example_<k>`` and
        ``variance_distributions``.

    Examples
    --------
    >>> stage_variance(arrays).numbers["p_value"]                      # doctest: +SKIP
    """
    s, dm, pairs, _, examples = _setup(arrays, settings, pairs, examples, "stage_variance")
    figures, captions = {}, {}
    for k, j in enumerate(examples):
        f, r = pairs[j]
        stem = f"variance_example_{k}"
        figures[stem] = P.variance_pair(real_map=dm[r], fake_map=dm[f], window=s.window)
        lv_r, lv_f = (float(np.ravel(A.mean_local_variance(dm[i], window=s.window))[0]) for i in (r, f))
        captions[stem] = (f"Local variance ({s.window}x{s.window} window) of the normalized defocus maps of real "
                          f"{sample_name(arrays, r)} and fake {sample_name(arrays, f)}, one colour scale; mean local "
                          f"variance real {lv_r:.3g}, fake {lv_f:.3g}.")
    labels = np.asarray(arrays["labels"]).astype(int)
    real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    vt = A.variance_test(real_maps=dm[real], fake_maps=dm[fake], window=s.window,
                         real_groups=_opt(arrays, "source_ids", real), fake_groups=_opt(arrays, "source_ids", fake),
                         n_boot=s.n_boot, seed=s.seed)
    figures["variance_distributions"] = P.variance_distributions(vt)
    captions["variance_distributions"] = (
        f"Per-image mean local variance of {vt.n_real} real and {vt.n_fake} fake maps: histograms and empirical "
        "CDFs; the KS statistic D is the largest vertical gap between the CDFs.")
    return StageResult("variance", numbers=vt.to_dict(include_values=False), figures=figures, captions=captions)


def _embed(feats: np.ndarray, labels: np.ndarray, s: PipelineSettings):
    """(2-D embedding, numbers) of one feature set; separability on the features themselves."""
    n = feats.shape[0]
    method = s.embed_method if n >= 10 else "pca"
    kw = {"perplexity": float(min(30.0, max(2.0, (n - 1) / 3.0)))} if method == "tsne" else {}
    emb = A.embed(feats, method=method, seed=s.seed, **kw)
    numbers = {"method": method, **kw, "n_features": int(feats.shape[1])}
    min_class = int(min((labels == 0).sum(), (labels == 1).sum()))
    sep = None
    if min_class >= 2:
        sep = A.separability(feats, labels, k=max(1, min(5, min_class - 1)), seed=s.seed,
                             n_splits=max(2, min(5, min_class)))
        numbers.update(sep.to_dict())
    return emb, sep, numbers


def stage_embedding(arrays: Mapping, settings: PipelineSettings | None = None, *, features=None) -> StageResult:
    """Embedding (t-SNE by default) of detector features, with separability computed on the features.

    Parameters
    ----------
    arrays : dict
        Store arrays with ``labels`` (``families`` colours the fakes per family; ``features`` is the
        default feature set).
    features : dict, optional
        Detector name -> (N, D) features in the rows of ``arrays`` (several detectors side by side).

    Examples
    --------
    >>> stage_embedding(arrays, features={"defocus": f1, "rgb": f2})   # doctest: +SKIP
    """
    s = settings or PipelineSettings()
    require(arrays, "stage_embedding", "labels")
    if features is None:
        require(arrays, "stage_embedding", "features")
        features = {"detector": arrays["features"]}
    labels = np.asarray(arrays["labels"]).astype(int)
    fam = np.asarray(arrays["families"]).astype(str) if "families" in arrays else None
    numbers, panels = {}, {}
    for name, f in features.items():
        feats = np.asarray(f, dtype=np.float64).reshape(len(labels), -1)
        emb, sep, numbers[name] = _embed(feats, labels, s)
        panels[name] = (emb, sep)
    n = len(panels)
    with S.house_style():
        fig, axs = S.new_figure(1, n, width="double" if n > 1 else "single", aspect=0.5 if n > 1 else 0.9,
                                squeeze=False)
    names = {"tsne": "t-SNE", "pca": "PCA", "umap": "UMAP"}
    for ax, (name, (emb, sep)) in zip(axs.ravel(), panels.items()):
        P.embedding_scatter(emb, labels, separability=sep, families=fam, method=names[numbers[name]["method"]],
                            seed=s.seed, ax=ax, title=f"{name} detector" if n > 1 else None)
    handles, labs = axs.ravel()[0].get_legend_handles_labels()
    for ax in axs.ravel():
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    with S.house_style():
        fig.legend(handles, labs, loc="outside lower center", ncols=min(5, len(labs)), markerscale=2,
                   handletextpad=0.3, columnspacing=1.0)
    how = "; ".join(f"{k}: {names[x['method']]}" + (f", perplexity {x['perplexity']:g}" if "perplexity" in x else "")
                    for k, x in numbers.items())
    caption = (f"2-D embedding of the detectors' pooled features ({how}; seed {s.seed}), {len(labels)} samples, "
               "real vs fake" + (" (fakes per family)" if fam is not None else "") + "; silhouette and kNN "
               "accuracy are computed on the features, not on the 2-D picture.")
    return StageResult("embedding", numbers=numbers, figures={"embedding": fig}, captions={"embedding": caption})


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


def stage_alignment(arrays: Mapping, settings: PipelineSettings | None = None, *, pairs=None, examples=None,
                    attributions: dict | None = None) -> StageResult:
    """Shapley alignment of each model's |attribution| with |fake - real|: CIs, permutation baseline.

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
    >>> stage_alignment(arrays).numbers["defocus"]["mean_overlap"]      # doctest: +SKIP
    """
    s, dm, pairs, note, examples = _setup(arrays, settings, pairs, examples, "stage_alignment")
    attrs = attribution_maps(arrays) if attributions is None else attributions
    if not attrs:
        raise ValueError("stage_alignment needs 'defocus_shaps' or 'rgb_shaps' in the store (or attributions=)")
    fi, ri = pairs[:, 0], pairs[:, 1]
    summaries, numbers = {}, {}
    for name, a in attrs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summaries[name] = A.alignment_scores(
                np.asarray(a)[fi], real_maps=dm[ri], fake_maps=dm[fi], groups=_opt(arrays, "source_ids", fi),
                n_boot=s.n_boot, seed=s.seed, n_permutations=min(s.n_permutations, 10 * len(fi)),
                on_degenerate="skip")
        numbers[name] = {k: v for k, v in summaries[name].to_dict().items() if k != "baseline_means"}
    if len(attrs) >= 2:
        numbers["paired_difference"] = _paired_difference(summaries, s)
    figures, captions = {}, {}
    for k, j in enumerate(examples):
        f, r = pairs[j]
        stem = f"alignment_example_{k}"
        with S.house_style():
            figures[stem], axs = S.new_figure(1, len(attrs), width="double" if len(attrs) > 1 else "single",
                                              aspect=0.36 if len(attrs) > 1 else 0.65, squeeze=False)
        txt = []
        for ax, (name, a) in zip(axs.ravel(), attrs.items()):
            res = A.alignment_score(np.asarray(a)[f], real_map=dm[r], fake_map=dm[f])
            P.alignment_histogram(res, ax=ax, title=f"{name} model")
            txt.append(f"{name}: overlap {res.overlap:.3f}, KL {res.kl:.3f}")
        figures[stem].suptitle(f"fake {sample_name(arrays, f)}")
        captions[stem] = (f"Fake {sample_name(arrays, f)}: share of |fake - real| and of |attribution| per bin of "
                          "the fake's normalized defocus value; overlap = sum of bin-wise minima (1 = same bins), "
                          "KL(attr || diff); " + "; ".join(txt) + ".")
    figures["alignment_comparison"] = P.alignment_comparison(summaries)
    captions["alignment_comparison"] = (
        "Alignment score (histogram overlap) per fake for each model's attributions, with the mean and its bootstrap "
        "95% CI; dotted: the permutation baseline (attributions shuffled across fakes)"
        + (" (RGB: sum of |attribution| over channels, on the map grid)" if "rgb" in attrs else "")
        + f"; n = {len(fi)} pairs. {note}".rstrip())
    return StageResult("alignment", numbers=numbers, figures=figures, captions=captions)


def stage_localization(arrays: Mapping, settings: PipelineSettings | None = None, *, attributions=None,
                       family: str | None = None) -> StageResult:
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
        attributions = {f"{k} SHAP": v for k, v in attribution_maps(arrays).items()}
    attrs = {k: np.asarray(v)[rows] for k, v in attributions.items()}
    attrs.setdefault("random", random_attributions(masks.shape, seed=s.seed))
    sums, numbers = {}, {}
    for name, a in attrs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sums[name] = A.localization_scores(a, masks, groups=_opt(arrays, "source_ids", rows), n_boot=s.n_boot,
                                               seed=s.seed)
        x = sums[name]
        numbers[name] = {"summary": x.summary.to_dict(orient="records"), "n": x.n, "n_skipped": x.n_skipped,
                         "mask_fraction": float(x.per_sample["mask_fraction"].mean()) if x.n else None}
    figures = {"localization": P.localization_curves(sums)}
    captions = {"localization": (
        f"Localization of |attribution| against the ground-truth masks of {rows.size} fakes"
        + (f" ({family})" if family else "") + ": pointing game, relevance mass and rank accuracy, pixel AUROC "
        "(mean, bootstrap 95% CI; dotted: chance; 'random': uniform random attributions).")}
    if "defocus_shaps" in arrays:
        figures["localization_example"], captions["localization_example"] = _localization_example(arrays, rows[0])
    return StageResult("localization", numbers=numbers, figures=figures, captions=captions)


def _localization_example(arrays: Mapping, i: int):
    """The map with its true mask beside the signed attributions of sample ``i`` (one mask colour)."""
    dm, mask = np.asarray(arrays["dmaps"][i]), np.asarray(arrays["gt_masks"][i]) > 0
    panels = {"defocus SHAP": arrays["defocus_shaps"][i]}
    if "rgb_shaps" in arrays:
        panels["RGB SHAP (sum of channels)"] = arrays["rgb_shaps"][i]
    with S.house_style():
        fig, axs = S.new_figure(1, len(panels) + 1, width="double", aspect=0.3, squeeze=False)
    axs = list(axs.ravel())
    for ax, a in zip(axs[1:], panels.values()):
        P.attribution_overlay(a, dmap=dm, label="attribution", axes=[ax])
    with S.house_style():
        axs[0].imshow(dm, cmap="gray")
        axs[0].set_axis_off()
        for ax, name in zip(axs, ["map + true mask", *panels]):
            ax.contour(mask, levels=[0.5], colors="lime", linewidths=0.8)
            ax.set_title(name)
        fig.suptitle(f"fake {sample_name(arrays, i)}")
    caption = (f"Fake {sample_name(arrays, i)}: its defocus map with the true manipulation mask (green contour) "
               "beside the signed attributions over the map (diverging scale, symmetric limits per panel).")
    return fig, caption


def stage_attributions(arrays: Mapping, settings: PipelineSettings | None = None, *, pairs=None,
                       examples=None) -> StageResult:
    """Signed attributions of example fakes over their map (defocus) and image or map (RGB).

    Returns
    -------
    StageResult
        Figures ``attribution_<k>``.

    Examples
    --------
    >>> stage_attributions(arrays).figures                             # doctest: +SKIP
    """
    s, dm, pairs, _, examples = _setup(arrays, settings, pairs, examples, "stage_attributions")
    panels = [k for k in ("defocus_shaps", "rgb_shaps") if k in arrays]
    if not panels:
        raise ValueError("stage_attributions needs 'defocus_shaps' or 'rgb_shaps' in the store")
    figures, captions = {}, {}
    for k, j in enumerate(examples):
        f = int(pairs[j][0])
        with S.house_style():
            fig, axs = S.new_figure(1, len(panels), width="single" if len(panels) == 1 else "double",
                                    aspect=0.5 if len(panels) == 1 else 0.34, squeeze=False)
        limits = []
        for ax, key in zip(axs.ravel(), panels):
            image = _image_of(arrays, f) if key == "rgb_shaps" else None
            where = {"image": image} if image is not None else {"dmap": dm[f]}
            P.attribution_overlay(arrays[key][f], label="SHAP value", axes=[ax], **where)
            ax.set_title(f"{key.split('_')[0]} model" + (" (RGB summed)" if key == "rgb_shaps" else ""))
            limits.append(f"{key.split('_')[0]} +-{S.symmetric_limit(_signed(arrays[key][f])):.3g}")
        fig.suptitle(f"fake {sample_name(arrays, f)}")
        figures[f"attribution_{k}"] = fig
        captions[f"attribution_{k}"] = (
            f"SHAP attributions for fake {sample_name(arrays, f)} on a diverging scale with symmetric limits per "
            f"panel ({', '.join(limits)}: the 99th percentile of |attribution|; red pushes towards 'fake'), over "
            "the greyscale map or image.")
    return StageResult("attributions", figures=figures, captions=captions)


def _signed(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.sum(axis=0) if a.ndim == 3 else a


def _image_of(arrays: Mapping, i: int):
    """The image file of sample ``i`` when ``paths`` names a readable file, else None."""
    import os

    if "paths" not in arrays or not os.path.isfile(str(arrays["paths"][i])):
        return None
    from PIL import Image

    try:
        return np.asarray(Image.open(str(arrays["paths"][i])).convert("RGB"))
    except OSError:
        return None
