"""The paper's map analyses as stages on store arrays: binary masks, local variance, feature embedding.

Each ``stage_*`` takes the arrays of a store (:func:`~defocus_xai.pipeline.inputs.open_arrays`) and a
:class:`PipelineSettings` and returns a :class:`StageResult`; ``demo`` and ``paper_figures`` call the same
functions. The attribution stages are in :mod:`defocus_xai.pipeline.attribution_stages`.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np

from .. import analysis as A
from .. import plot as P
from ..plot import style as S
from .inputs import pick_examples, require, sample_kwargs, sample_name, store_pairs
from .result import StageResult
from .settings import PipelineSettings

__all__ = ["stage_masks", "stage_variance", "stage_embedding"]


def setup(arrays, settings, pairs, examples, what):
    """Settings, maps, pairs (and their note) and example positions of a paired stage."""
    require(arrays, what, "dmaps", "labels")
    s = settings or PipelineSettings()
    note = ""
    if pairs is None:
        pairs, note = store_pairs(arrays)
    pairs = np.asarray(pairs, dtype=np.int64)
    if examples is None:
        examples = pick_examples(pairs, s, arrays=arrays)
    return s, np.asarray(arrays["dmaps"], dtype=np.float64), pairs, note, [int(j) for j in examples]


def opt(arrays: Mapping, key: str, rows):
    """``arrays[key][rows]`` as strings, or None when the store has no such key."""
    return np.asarray(arrays[key]).astype(str)[rows] if key in arrays else None


def _pair_title(arrays: Mapping, f: int, r: int) -> str:
    """Title of a fake/real example, naming the fake first as the panels show it."""
    score = f", score {float(arrays['scores'][r]):.2f}" if "scores" in arrays else ""
    return f"fake {sample_name(arrays, f)}\nand its real #{int(r)} (same source{score})"


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
    s, dm, pairs, note, examples = setup(arrays, settings, pairs, examples, "stage_masks")
    fi, ri = pairs[:, 0], pairs[:, 1]
    figures, captions = {}, {}
    for k, j in enumerate(examples):
        f, r = pairs[j]
        stem = f"mask_example_{k}"
        figures[stem] = P.mask_triptych(real_map=dm[r], fake_map=dm[f], threshold=s.threshold,
                                        title=_pair_title(arrays, f, r))
        n_act = int(A.binary_mask(real_map=dm[r], fake_map=dm[f], threshold=s.threshold).sum())
        captions[stem] = (f"Normalized defocus maps of fake {sample_name(arrays, f)} and its real "
                          f"{sample_name(arrays, r)} on one colour scale, and the mask |fake - real| > {s.threshold:g}: "
                          f"{n_act:,} of {dm[f].size:,} pixels activated.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        act = A.mask_activation(real_maps=dm[ri], fake_maps=dm[fi], pairs=np.stack([np.arange(len(fi))] * 2, axis=1),
                                groups=opt(arrays, "source_ids", fi), methods=opt(arrays, "families", fi),
                                n_boot=s.n_boot, seed=s.seed)
    figures["activation_curve"] = P.activation_curve(act, n=len(fi))
    captions["activation_curve"] = (
        "Mean activated pixels per fake/real pair versus threshold (reversed log axis), one line per manipulation "
        f"method; band: bootstrap 95% CI of the mean (sources resampled); n = {len(fi)} pairs. {note}".strip())
    at_t = act[np.isclose(act["threshold"], s.threshold)]
    numbers = {"threshold": s.threshold, "n_pairs": int(len(fi)), "pairing": note,
               "at_threshold": at_t[["method", "mean", "ci_low", "ci_high", "n_pairs", "n_units"]]
               .to_dict(orient="records")}
    return StageResult("masks", numbers=numbers, figures=figures, captions=captions, table=act)


def _fmt_p(p) -> str:
    return "n/a" if p is None or not np.isfinite(p) else f"{p:.2g}"


def variance_headline(v: Mapping) -> str:
    """The variance test in words at its unit: headline, paired test and the flagged frame-level p."""
    if v.get("unit") == "group":
        text = (f"headline KS test per source (one mean per source: {v['n_units_real']} real vs "
                f"{v['n_units_fake']} fake units): D = {v['ks_statistic']:.3f}, p = {_fmt_p(v['p_value'])}")
        if v.get("paired_p_value") is not None:
            text += (f"; paired Wilcoxon test on the per-source differences ({v['n_pairs']} sources): "
                     f"p = {_fmt_p(v['paired_p_value'])}")
        return text + (f"; the frame-level p = {_fmt_p(v['p_value_frames'])} treats frames as independent "
                       "(flagged, secondary)")
    return (f"KS test per image: D = {v['ks_statistic']:.3f}, p = {_fmt_p(v['p_value'])} (no source ids: "
            "images treated as independent)")


def _variance_example(arrays, dm, f, r, s):
    """One example's figure and caption (the fake named in the figure; the real is its own)."""
    lv = {i: A.local_variance(dm[i], window=s.window, border=s.variance_border) for i in (r, f)}
    lv_r, lv_f = (float(lv[i].mean()) for i in (r, f))
    flat = abs(lv_f - lv_r) < 0.1 * max(lv_r, lv_f, 1e-12)
    note = ("The two means differ by less than 10%: this pair shows no difference; the test over all pairs is in "
            "variance_distributions.")
    fig = P.variance_pair(real_map=lv[r], fake_map=lv[f], precomputed=True, window=s.window,
                          units=f"{s.window}x{s.window} window, normalized defocus$^2$",
                          title=f"left: real #{int(r)}, right: its fake", caption=note if flat else None,
                          **sample_kwargs(arrays, f))
    caption = (f"Local variance ({s.window}x{s.window} window, normalized defocus squared) of the maps of real "
               f"{sample_name(arrays, r)} and its fake {sample_name(arrays, f)}, one colour scale; mean local "
               f"variance real {lv_r:.3g}, fake {lv_f:.3g}." + (f" {note}" if flat else ""))
    return fig, caption


def stage_variance(arrays: Mapping, settings: PipelineSettings | None = None, *, pairs=None,
                   examples=None) -> StageResult:
    """Local variance of real vs fake maps: KS test (groups = source ids), distributions per family, examples.

    With ``source_ids`` the headline test is per source (``unit == "group"``), the frame-level p-value is
    secondary, and the paired per-source Wilcoxon test is reported too.

    Returns
    -------
    StageResult
        Numbers of :class:`~defocus_xai.analysis.VarianceTestResult` plus ``headline`` (the test in words);
        figures ``variance_example_<k>`` and ``variance_distributions``.

    Examples
    --------
    >>> stage_variance(arrays).numbers["p_value"]                      # doctest: +SKIP
    """
    s, dm, pairs, _, examples = setup(arrays, settings, pairs, examples, "stage_variance")
    figures, captions = {}, {}
    for k, j in enumerate(examples):
        f, r = pairs[j]
        figures[f"variance_example_{k}"], captions[f"variance_example_{k}"] = _variance_example(arrays, dm, f, r, s)
    labels = np.asarray(arrays["labels"]).astype(int)
    real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    vt = A.variance_test(real_maps=dm[real], fake_maps=dm[fake], window=s.window,
                         real_groups=opt(arrays, "source_ids", real), fake_groups=opt(arrays, "source_ids", fake),
                         n_boot=s.n_boot, seed=s.seed, border=s.variance_border)
    numbers = vt.to_dict(include_values=False)
    numbers["headline"] = variance_headline(numbers)
    fam = opt(arrays, "families", fake)
    figures["variance_distributions"] = P.variance_distributions(vt, families=fam,
                                                                 kind="both" if fam is None else "violin+ecdf")
    captions["variance_distributions"] = (
        f"Per-image mean local variance ({s.window}x{s.window} window, normalized defocus squared) of {vt.n_real} "
        f"real and {vt.n_fake} fake maps" + (", one distribution per fake family (legend: each family's KS D "
                                              "against the reals)" if fam is not None else "")
        + (": histograms" if fam is None else ": violins (quartiles inside)")
        + " and empirical CDFs (the KS statistic D is the largest vertical gap between two CDFs). "
        + numbers["headline"][0].upper() + numbers["headline"][1:] + ".")
    return StageResult("variance", numbers=numbers, figures=figures, captions=captions)


def _embed(feats: np.ndarray, labels: np.ndarray, groups, s: PipelineSettings):
    """(2-D embedding, separability, numbers) of one feature set; separability on the features themselves."""
    n = feats.shape[0]
    method = s.embed_method if n >= 10 else "pca"
    auto = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    kw = {"perplexity": auto if s.perplexity is None else float(s.perplexity)} if method == "tsne" else {}
    emb = A.embed(feats, method=method, seed=s.embed_seed, **kw)
    numbers = {"method": method, **kw, "seed": s.embed_seed, "n_features": int(feats.shape[1])}
    min_class = int(min((labels == 0).sum(), (labels == 1).sum()))
    sep = None
    if min_class >= 2:
        n_splits = max(2, min(5, min_class))
        if groups is not None:
            n_splits = max(2, min(n_splits, len(set(groups))))
        sep = A.separability(feats, labels, groups=groups, k=max(1, min(5, min_class - 1)), seed=s.seed,
                             n_splits=n_splits)
        numbers.update(sep.to_dict())
    return emb, sep, numbers


def _embedding_caption(numbers: dict, n: int, grouped: bool, families: bool, seed: int) -> str:
    names = {"tsne": "t-SNE", "pca": "PCA", "umap": "UMAP"}
    how = "; ".join(f"{k}: {names[x['method']]}" + (f", perplexity {x['perplexity']:.3g}" if "perplexity" in x else "")
                    for k, x in numbers.items())
    cv = ("cross-validated with whole sources in one fold (grouped CV: a fake and its own real never split "
          "between training and test)" if grouped else "cross-validated per sample (no source ids)")
    return (f"2-D embedding of the detectors' pooled features ({how}; seed {seed}), {n} samples, real vs fake"
            + (" (colour per fake family, marker per class)" if families else "") + "; silhouette and kNN accuracy "
            f"are computed on the features, not on the 2-D picture, the kNN accuracy {cv}; distances between "
            "t-SNE clusters carry no meaning.")


def stage_embedding(arrays: Mapping, settings: PipelineSettings | None = None, *, features=None) -> StageResult:
    """Embedding (t-SNE by default) of detector features, with separability computed on the features.

    The kNN accuracy is cross-validated with ``groups=source_ids`` when the store has them (a fake and
    its own real stay in one fold).

    Parameters
    ----------
    arrays : dict
        Store arrays with ``labels`` (``families`` colours the fakes per family; ``features`` is the
        default feature set; ``source_ids`` groups the cross-validation).
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
    groups = opt(arrays, "source_ids", slice(None))
    numbers, panels = {}, {}
    for name, f in features.items():
        feats = np.asarray(f, dtype=np.float64).reshape(len(labels), -1)
        emb, sep, numbers[name] = _embed(feats, labels, groups, s)
        panels[name] = (emb, sep)
    n = len(panels)
    with S.house_style():
        fig, axs = S.new_figure(1, n, width="double" if n > 1 else "single", aspect=0.5 if n > 1 else 0.9,
                                squeeze=False)
    names = {"tsne": "t-SNE", "pca": "PCA", "umap": "UMAP"}
    handles = []
    for ax, (name, (emb, sep)) in zip(axs.ravel(), panels.items()):
        x = numbers[name]
        P.embedding_scatter(emb, labels, separability=sep, families=fam, method=names[x["method"]], seed=s.seed,
                            perplexity=x.get("perplexity"), embedding_seed=s.embed_seed, ax=ax)
        legend = ax.get_legend()
        if legend is not None:
            handles = handles or list(zip(legend.legend_handles, [t.get_text() for t in legend.get_texts()]))
            legend.remove()
        with S.house_style():
            ax.set_title((f"{name} detector\n" if n > 1 else "") + (
                f"silhouette {x['silhouette']:.2f}, kNN accuracy {x['knn_accuracy']:.2f} (chance "
                f"{x['chance_accuracy']:.2f})" if sep is not None else "too few samples per class to score"))
    first = next(iter(numbers.values()))
    how = f"perplexity {first['perplexity']:.3g}, " if "perplexity" in first else ""
    with S.house_style():
        fig.supxlabel("")
        fig.suptitle(f"{names[first['method']]} of {len(labels)} samples ({how}seed {s.embed_seed})\nsilhouette and "
                     "kNN accuracy computed on the features, kNN with "
                     + ("grouped CV (sources kept whole)" if groups is not None else "stratified CV"))
        fig.legend([h for h, _ in handles], [t for _, t in handles], loc="outside lower center",
                   ncols=min(5, len(handles)), markerscale=1.5, handletextpad=0.3, columnspacing=1.0)
    caption = _embedding_caption(numbers, len(labels), groups is not None, fam is not None, s.embed_seed)
    return StageResult("embedding", numbers=numbers, figures={"embedding": fig}, captions={"embedding": caption})
