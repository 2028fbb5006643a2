"""``paper_figures``: every figure the paper's analyses need, from one attribution store."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from . import style as S
from ._convert import to_grid
from .curves import activation_curve, localization_curves
from .maps import attribution_overlay, mask_triptych, variance_pair
from .stats import alignment_comparison, alignment_histogram, embedding_scatter, variance_distributions

__all__ = ["paper_figures"]


def _open_store(store_or_pair, allow_legacy_pickle: bool):
    if hasattr(store_or_pair, "keys") and hasattr(store_or_pair, "__getitem__") and not isinstance(
        store_or_pair, (dict, str, os.PathLike)
    ):
        return store_or_pair
    from ..explain.store import load_attributions  # lazy: plotting never imports models at import time

    if isinstance(store_or_pair, list):
        store_or_pair = tuple(store_or_pair)
    return load_attributions(store_or_pair, allow_legacy_pickle=allow_legacy_pickle)


def _frame_ids(paths: np.ndarray) -> np.ndarray:
    return np.array([Path(str(p)).stem for p in paths])


def _pairs(keys, get, labels):
    """(pairs (P, 2) of (fake_row, real_row) into the full store, how, note)."""
    from ..analysis import pair_by_source

    fake_rows = np.flatnonzero(labels == 1)
    real_rows = np.flatnonzero(labels == 0)
    if fake_rows.size == 0 or real_rows.size == 0:
        raise ValueError(f"the store needs real and fake samples, has {real_rows.size} real and {fake_rows.size} fake")
    if "source_ids" in keys:
        sid = get("source_ids").astype(str)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = pair_by_source(sid[fake_rows], sid[real_rows], warn_unmatched=False)
            how = "source id"
        except ValueError:
            if "paths" not in keys:
                raise
            fr = _frame_ids(get("paths"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = pair_by_source(sid[fake_rows], sid[real_rows], fr[fake_rows], fr[real_rows], warn_unmatched=False)
            how = "source id and frame (file name)"
        n_un = fake_rows.size - p.shape[0]
        note = f"paired by {how}: {p.shape[0]} pairs" + (f", {n_un} fakes without a real left out" if n_un else "")
        return np.stack([fake_rows[p[:, 0]], real_rows[p[:, 1]]], axis=1), note
    n = min(fake_rows.size, real_rows.size)
    msg = ("the store has no 'source_ids': fakes and reals are paired by list index, as the reference "
           "notebook did; unless both lists were built in matching order the pairs are unrelated images")
    warnings.warn(msg, UserWarning, stacklevel=3)
    return np.stack([fake_rows[:n], real_rows[:n]], axis=1), "paired by list index (WARNING: no source_ids; pairs may be unrelated images)"


def _reduce_rgb(a: np.ndarray, grid) -> np.ndarray:
    """(N, 3, Hi, Wi) or (N, Hi, Wi) -> (N, H, W): sum of |a_c| over channels, on the map grid."""
    a = np.abs(a.astype(np.float64))
    if a.ndim == 4:
        a = a.sum(axis=1)
    return np.stack([to_grid(x, grid) for x in a]) if a.shape[1:] != tuple(grid) else a


def paper_figures(
    store_or_pair,
    out_dir,
    *,
    formats: Sequence[str] = ("png", "pdf"),
    max_examples: int = 3,
    seed: int = 0,
    threshold: float = 0.1,
    window: int = 15,
    n_boot: int = 1000,
    n_permutations: int = 200,
    embed_method: str = "tsne",
    allow_legacy_pickle: bool = False,
    dpi: int = 300,
) -> list[Path]:
    """Write every figure the store's keys allow, plus a ``figures.md`` index with captions.

    Figures (file stems; each written in every format of ``formats``):

    * ``mask_triptych_<k>`` and ``activation_curve``: binary masks of fake/real pairs
      (needs ``dmaps``, ``labels``; pairing by ``source_ids`` (frame-level via the file names
      in ``paths`` when a video has several frames), else by list index with a warning);
    * ``variance_pair_<k>`` and ``variance_distributions``: local variance and the KS test;
    * ``embedding`` (needs ``features``): t-SNE (or ``embed_method``) with separability numbers
      computed on the features themselves;
    * ``alignment_histogram_<k>`` (defocus and RGB attributions side by side) and
      ``alignment_comparison`` (needs ``defocus_shaps`` and/or ``rgb_shaps``; RGB attributions
      are reduced by ``sum_c |a_c|`` and resampled to the map grid when their grid differs);
    * ``attribution_<k>``: defocus and RGB attributions (RGB summed over channels) over the map;
    * ``localization`` (needs ``gt_masks``): localization metrics of the attributions.

    Parameters
    ----------
    store_or_pair : AttributionSet, path-like, or (real_npz, fake_npz)
        An open store, a store path (file or shard directory), or the reference notebooks' pair
        of files, opened with :func:`defocus_xai.explain.store.load_attributions`.
    out_dir : path-like
        Created if needed.
    formats : sequence of str
        Matplotlib formats, e.g. ``("png", "pdf")``.
    max_examples : int
        Example pairs drawn (seeded) for the per-example figures.
    seed : int
        Seed of the example draw, bootstraps, permutations and the embedding.
    threshold, window : float, int
        Mask threshold (normalized units) and local-variance window, as in the paper.
    n_boot, n_permutations : int
        Bootstrap replicates and alignment-baseline permutations.
    embed_method : {"tsne", "pca", "umap"}
        Embedding for the scatter (PCA is used when there are fewer than 10 samples).
    allow_legacy_pickle : bool
        Passed to ``load_attributions`` for the reference's pickled files (trusted files only).
    dpi : int
        Resolution of raster formats.

    Returns
    -------
    list of pathlib.Path
        Every file written, ``figures.md`` last.

    Examples
    --------
    >>> from defocus_xai.plot import paper_figures
    >>> paths = paper_figures("export_dir", "figures/")              # doctest: +SKIP
    >>> paths = paper_figures(("shap_data_real.npz", "shap_data_fake_Deepfakes.npz"), "figs/",
    ...                       allow_legacy_pickle=True)              # doctest: +SKIP
    """
    from .. import analysis as A  # torch-free

    store = _open_store(store_or_pair, allow_legacy_pickle)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = set(store.keys())
    for k in ("dmaps", "labels"):
        if k not in keys:
            raise ValueError(f"paper_figures: the store has no {k!r} key (keys: {sorted(keys)})")
    cache: dict = {}

    def get(k):
        if k not in cache:
            cache[k] = np.asarray(store[k])
        return cache[k]

    open_before = set(plt.get_fignums())
    written: list[Path] = []
    entries: list[tuple[str, str, str]] = []  # (stem, caption, numbers)
    skipped: list[str] = []

    def save(fig, stem, caption, numbers=""):
        written.extend(S.save(fig, out / stem, formats=formats, dpi=dpi, close=True))
        entries.append((stem, caption, numbers))

    labels = get("labels").astype(int)
    dm = get("dmaps").astype(np.float64)
    grid = dm.shape[1:]
    pairs, pair_note = _pairs(keys, get, labels)
    rng = np.random.default_rng(seed)
    ex = np.sort(rng.choice(pairs.shape[0], size=min(max_examples, pairs.shape[0]), replace=False))
    fam = get("families").astype(str) if "families" in keys else None
    sid = get("source_ids").astype(str) if "source_ids" in keys else None
    paths = get("paths").astype(str) if "paths" in keys else None
    scores = get("scores").astype(float) if "scores" in keys else None

    def name(i):
        parts = [f"#{i}"]
        if fam is not None:
            parts.append(fam[i])
        if sid is not None:
            parts.append(f"source {sid[i]}")
        if scores is not None:
            parts.append(f"score {scores[i]:.2f}")
        return ", ".join(parts)

    try:
        # 1. binary masks ------------------------------------------------------------------------
        f_maps, r_maps = dm[pairs[:, 0]], dm[pairs[:, 1]]
        for k, j in enumerate(ex):
            fi, ri = pairs[j]
            fig = mask_triptych(dm[fi], dm[ri], threshold=threshold, title=f"fake {name(fi)} vs real {name(ri)}")
            n_act = int(A.binary_mask(dm[fi], dm[ri], threshold).sum())
            save(fig, f"mask_triptych_{k}",
                 f"Normalized defocus maps of a fake ({name(fi)}) and its real ({name(ri)}) on one colour scale, "
                 f"and the mask |fake - real| > {threshold:g}. {pair_note}.",
                 f"activated pixels: {n_act:,} of {int(np.prod(grid)):,}")
        groups_f = sid[pairs[:, 0]] if sid is not None else None
        methods = fam[pairs[:, 0]] if fam is not None else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            act = A.mask_activation(f_maps, r_maps, pairs=np.stack([np.arange(len(pairs))] * 2, axis=1),
                                    groups=groups_f, methods=methods, n_boot=n_boot, seed=seed)
        fig = activation_curve(act)
        at_t = act[np.isclose(act["threshold"], threshold)]
        nums = "; ".join(f"{r.method}: mean {r.mean:,.0f} px [{r.ci_low:,.0f}, {r.ci_high:,.0f}] at t={threshold:g} "
                         f"(n={r.n_pairs} pairs, {r.n_units} units)" for r in at_t.itertuples())
        save(fig, "activation_curve",
             "Mean activated pixels per fake/real pair versus threshold (reversed log axis), one line per "
             f"manipulation method; band: bootstrap 95% CI of the mean (groups resampled). {pair_note}.", nums)

        # 2. local variance ----------------------------------------------------------------------
        for k, j in enumerate(ex):
            fi, ri = pairs[j]
            fig = variance_pair(dm[ri], dm[fi], window=window)
            lv_r = float(np.ravel(A.mean_local_variance(dm[ri], window=window))[0])
            lv_f = float(np.ravel(A.mean_local_variance(dm[fi], window=window))[0])
            save(fig, f"variance_pair_{k}",
                 f"Local variance ({window}x{window} window) of the normalized defocus maps of a real ({name(ri)}) "
                 f"and a fake ({name(fi)}), one colour scale.", f"mean local variance: real {lv_r:.3g}, fake {lv_f:.3g}")
        real_rows, fake_rows = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
        vt = A.variance_test(dm[real_rows], dm[fake_rows], window=window,
                             groups_real=sid[real_rows] if sid is not None else None,
                             groups_fake=sid[fake_rows] if sid is not None else None, n_boot=n_boot, seed=seed)
        fig = variance_distributions(vt)
        nums = (f"KS D = {vt.ks_statistic:.4f}, p = {vt.p_value:.3g}; mean real {vt.mean_real:.4g}, fake {vt.mean_fake:.4g}; "
                f"difference {vt.mean_difference:.3g} [{vt.ci_low:.3g}, {vt.ci_high:.3g}]; Cliff's delta {vt.cliffs_delta:.3f}; "
                f"n = {vt.n_real} real, {vt.n_fake} fake")
        if vt.group_ks_statistic is not None:
            nums += (f"; per group KS D = {vt.group_ks_statistic:.4f}, p = {vt.group_p_value:.3g} "
                     f"({vt.n_units_real} vs {vt.n_units_fake} units)")
        save(fig, "variance_distributions",
             "Per-image mean local variance of real and fake maps: histograms and empirical CDFs; the KS "
             "statistic D is the largest vertical gap between the CDFs.", nums)

        # 3. embedding ---------------------------------------------------------------------------
        if "features" in keys:
            feats = get("features").astype(np.float64).reshape(len(labels), -1)
            n = feats.shape[0]
            method = embed_method if n >= 10 else "pca"
            kw = {"perplexity": float(min(30.0, max(2.0, (n - 1) / 3.0)))} if method == "tsne" else {}
            emb = A.embed(feats, method=method, seed=seed, **kw)
            min_class = int(min((labels == 0).sum(), (labels == 1).sum()))
            sep = None
            if min_class >= 2:
                sep = A.separability(feats, labels, k=max(1, min(5, min_class - 1)), seed=seed,
                                     n_splits=max(2, min(5, min_class)))
            mname = {"tsne": "t-SNE", "pca": "PCA", "umap": "UMAP"}.get(method, method)
            fig = embedding_scatter(emb, labels, separability=sep, families=fam, method=mname, seed=seed)
            nums = ("" if sep is None else
                    f"silhouette {sep.silhouette:.3f}, kNN accuracy {sep.knn_accuracy:.3f} "
                    f"(chance {sep.chance_accuracy:.3f}), on the {feats.shape[1]}-d features")
            save(fig, "embedding",
                 f"{mname} of the detector's pooled features, real vs fake"
                 + (" (fakes per family)" if fam is not None else "")
                 + "; separability computed on the features, not on the 2-D embedding.", nums)
        else:
            skipped.append("embedding: no 'features' key")

        # 4. alignment ---------------------------------------------------------------------------
        attrs = {}
        if "defocus_shaps" in keys:
            attrs["defocus"] = np.abs(get("defocus_shaps").astype(np.float64))
        if "rgb_shaps" in keys:
            attrs["rgb"] = _reduce_rgb(get("rgb_shaps"), grid)
        if attrs:
            fp, rp = pairs[:, 0], pairs[:, 1]
            for k, j in enumerate(ex):
                fi, ri = pairs[j]
                fig, axs = None, None
                with S.house_style():
                    fig, axs = S.new_figure(1, len(attrs), width="double" if len(attrs) > 1 else "single",
                                            aspect=0.36 if len(attrs) > 1 else 0.65, squeeze=False)
                res_txt = []
                for ax, (space, a) in zip(axs.ravel(), attrs.items()):
                    r = A.alignment_score(dm[fi], dm[ri], a[fi])
                    alignment_histogram(r, ax=ax, title=f"{space} model")
                    res_txt.append(f"{space}: overlap {r.overlap:.3f}, KL {r.kl:.3f}")
                save(fig, f"alignment_histogram_{k}",
                     f"Fake {name(fi)}: share of |fake - real| (green) and of |attribution| (purple) per bin of the "
                     "fake's normalized defocus value; overlap = sum of bin-wise minima (1 = same bins), KL(attr || diff).",
                     "; ".join(res_txt))
            summaries = {}
            for space, a in attrs.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    summaries[space] = A.alignment_scores(dm[fp], dm[rp], a[fp], groups=groups_f, n_boot=n_boot,
                                                          seed=seed, n_permutations=min(n_permutations, 10 * len(fp)),
                                                          on_degenerate="skip")
            fig = alignment_comparison(summaries)
            nums = "; ".join(
                f"{sp}: mean overlap {s.mean_overlap:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}], KL {s.mean_kl:.3f}, "
                f"n = {s.n_samples} ({s.n_units} units, {s.n_skipped} skipped)"
                + (f", chance {s.baseline_mean_overlap:.3f} (p = {s.p_value:.3g})" if s.baseline_mean_overlap is not None else "")
                for sp, s in summaries.items())
            save(fig, "alignment_comparison",
                 "Alignment score (histogram overlap) per fake sample for each model's attributions, with the mean "
                 "and its bootstrap 95% CI; dotted: chance level with attributions shuffled across samples"
                 + (" (RGB: sum of |attribution| over channels, on the map grid)" if "rgb" in attrs else "") + ".", nums)
        else:
            skipped.append("alignment: no 'defocus_shaps' or 'rgb_shaps' key")

        # 5. attribution overlays ---------------------------------------------------------------
        if "defocus_shaps" in keys or "rgb_shaps" in keys:
            ds = get("defocus_shaps") if "defocus_shaps" in keys else None
            rs = get("rgb_shaps") if "rgb_shaps" in keys else None
            for k, j in enumerate(ex):
                fi = pairs[j][0]
                n_ax = int(ds is not None) + int(rs is not None)
                with S.house_style():
                    fig, axs = S.new_figure(1, n_ax, width="single" if n_ax == 1 else "double",
                                            aspect=0.5 if n_ax == 1 else 0.34, squeeze=False)
                axs = list(axs.ravel())
                parts = []
                if ds is not None:
                    ax = axs.pop(0)
                    attribution_overlay(ds[fi], dmap=dm[fi], label="SHAP value", axes=[ax])
                    ax.set_title("defocus model (on its map)")
                    parts.append(f"defocus: colour limit +-{S.symmetric_limit(ds[fi]):.3g}")
                if rs is not None:
                    a = rs[fi]
                    ax = axs.pop(0)
                    img = None
                    if paths is not None and os.path.isfile(paths[fi]):
                        try:
                            from PIL import Image

                            img = np.asarray(Image.open(paths[fi]).convert("RGB"))
                        except Exception:  # unreadable image: show the attribution over the map
                            img = None
                    kwargs = {"image": img} if img is not None else {"dmap": dm[fi]}
                    attribution_overlay(a, label="SHAP value", axes=[ax], **kwargs)
                    ax.set_title("RGB model, RGB summed" + (" (on image)" if img is not None else " (on map)"))
                    parts.append(f"rgb: colour limit +-{S.symmetric_limit(a.sum(axis=0) if a.ndim == 3 else a):.3g}")
                fig.suptitle(f"fake {name(fi)}")
                save(fig, f"attribution_{k}",
                     f"SHAP attributions for fake {name(fi)} on a diverging scale with symmetric limits "
                     "(+-99th percentile of |attribution|; red pushes towards 'fake'), over the greyscale map/image; "
                     "opacity grows with |attribution|.", "; ".join(parts))
        else:
            skipped.append("attribution overlays: no attribution keys")

        # 6. localization ------------------------------------------------------------------------
        if "gt_masks" in keys and attrs:
            gm = get("gt_masks")
            rows = np.flatnonzero((labels == 1) & (gm.reshape(len(labels), -1).sum(axis=1) > 0))
            if rows.size:
                sums = {}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for space, a in attrs.items():
                        sums[f"{space} SHAP"] = A.localization_scores(
                            a[rows], gm[rows], groups=sid[rows] if sid is not None else None, n_boot=n_boot, seed=seed)
                fig = localization_curves(sums)
                nums = "; ".join(
                    f"{m}: " + ", ".join(f"{r.metric} {r.mean:.3f}" for r in s.summary.itertuples())
                    + f" (n={s.n_samples}, {s.n_skipped} skipped)" for m, s in sums.items())
                save(fig, "localization",
                     "Localization of |attribution| against the ground-truth manipulation masks of fakes: pointing "
                     "game, relevance mass and rank accuracy, pixel AUROC (mean, bootstrap 95% CI; dotted: chance).",
                     nums)
            else:
                skipped.append("localization: no fake sample has a non-empty ground-truth mask")
        else:
            skipped.append("localization: needs 'gt_masks' and an attribution key")
    finally:
        for num in set(plt.get_fignums()) - open_before:  # a figure left by an error
            plt.close(num)

    index = out / "figures.md"
    lines = ["# Figures", "", f"Source: `{getattr(store, 'source', store_or_pair)}`; {len(labels)} samples "
             f"({int((labels == 0).sum())} real, {int((labels == 1).sum())} fake); {pair_note}.", ""]
    for stem, cap, nums in entries:
        files = ", ".join(f"`{stem}.{f}`" for f in formats)
        lines += [f"## {stem}", "", f"Files: {files}", "", cap, ""]
        if nums:
            lines += [f"Numbers: {nums}", ""]
        if "png" in formats:
            lines += [f"![{stem}]({stem}.png)", ""]
    if skipped:
        lines += ["## Not produced", ""] + [f"- {s}" for s in skipped] + [""]
    index.write_text("\n".join(lines))
    written.append(index)
    return written
