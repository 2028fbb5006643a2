"""The whole pipeline in one call: :func:`run_demo` (``defocus-xai demo``).

On the built-in DefocusSynth benchmark and the bundled detectors, :func:`run_demo` runs every stage
of the library in order and writes, into one folder,

* ``report.md`` -- one page: each figure with its numbers and a one-line reading;
* ``results.json`` -- every number of the report (and the settings that produced it);
* ``detection.json`` / ``detection.csv`` -- detection metrics of both detectors, per fake family;
* ``attributions/`` -- the ``.npz`` attribution store (:func:`defocus_xai.export_attributions`);
* ``figures/`` -- every figure as PNG and PDF.

Each stage is also a plain function of this module (``stage_*``) that takes arrays or the library's
objects and returns numbers plus figures, so notebooks and ``bench/`` scripts can reuse one stage
without running the others.

Examples
--------
>>> import defocus_xai as dx                                              # doctest: +SKIP
>>> res = dx.pipeline.run_demo("demo_out", n=200)                          # doctest: +SKIP
>>> res.report                                                             # doctest: +SKIP
PosixPath('demo_out/report.md')
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "DEFAULT_N",
    "DemoResult",
    "run_demo",
    "load_store_arrays",
    "fake_real_pairs",
    "reduce_rgb",
    "random_attributions",
    "stage_detection",
    "stage_masks",
    "stage_variance",
    "stage_embedding",
    "stage_alignment",
    "stage_localization",
    "stage_randomization",
    "stage_faithfulness",
]

DEFAULT_N = 96
"""Samples of the default demo (48 real/fake pairs, 12 fakes per family; see docs/demo.md for the runtime)."""

FAMILY_ORDER = ("no_dof", "splice", "depth_inconsistent", "generator_smoothing")


# ---------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote and computed.

    Attributes
    ----------
    out : pathlib.Path
        The output folder.
    report : pathlib.Path
        ``out/report.md``: open this first.
    results : dict
        Every number of the report (also in ``out/results.json``), by section.
    figures : list of pathlib.Path
        Every figure file written (PNG and PDF).
    files : list of pathlib.Path
        Every file the report links to (figures, tables, the store index).
    timings : dict
        Seconds per stage.
    seconds : float
        Wall time of the whole run.
    """

    out: Path
    report: Path
    results: dict
    figures: list = field(default_factory=list)
    files: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Plain-Python view (paths as strings)."""
        return {"out": str(self.out), "report": str(self.report), "results": self.results,
                "figures": [str(p) for p in self.figures], "files": [str(p) for p in self.files],
                "timings": dict(self.timings), "seconds": self.seconds}


def _jsonable(x: Any) -> Any:
    """Numbers, arrays, dataframes and dataclass dicts -> JSON values (NaN -> None)."""
    import pandas as pd

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return _jsonable(x.to_dict(orient="records"))
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


# ---------------------------------------------------------------------------------------------------
# store helpers (shared with bench/science.py)
# ---------------------------------------------------------------------------------------------------


def load_store_arrays(store, keys: Sequence[str] | None = None) -> dict:
    """The arrays of an attribution store (path or :class:`~defocus_xai.explain.AttributionSet`) as a dict."""
    from .explain.store import load_attributions

    if not hasattr(store, "keys"):
        store = load_attributions(store)
    want = [k for k in (keys or store.keys()) if k in store.keys() and k != "meta"]
    return {k: np.asarray(store[k]) for k in want}


def fake_real_pairs(labels, source_ids) -> np.ndarray:
    """Rows ``(fake_row, real_row)`` into the full arrays, pairing each fake with the real of its source."""
    from .analysis import pair_by_source

    labels = np.asarray(labels).astype(int)
    sid = np.asarray(source_ids).astype(str)
    fake_rows, real_rows = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = pair_by_source(sid[fake_rows], sid[real_rows], warn_unmatched=False)
    return np.stack([fake_rows[p[:, 0]], real_rows[p[:, 1]]], axis=1)


def reduce_rgb(a: np.ndarray, grid) -> np.ndarray:
    """RGB attributions (N, 3, Hi, Wi) -> (N, H, W): ``sum_c |a_c|``, resampled to the map grid."""
    from .plot.paper import _reduce_rgb

    return _reduce_rgb(np.asarray(a), tuple(grid))


def random_attributions(shape, seed: int = 0) -> np.ndarray:
    """Uniform random attributions of ``shape``: the chance level of every localization metric."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# stages: numbers + figures
# ---------------------------------------------------------------------------------------------------


def _fmt_ci(est, lo, hi, nd=3) -> str:
    return f"{est:.{nd}f} [{lo:.{nd}f}, {hi:.{nd}f}]"


def stage_detection(detectors: dict, dataset, *, batch_size: int = 32, device=None, progress: bool = True):
    """Detection metrics of each detector overall and per fake family.

    Returns ``(table, numbers)``: a DataFrame with one row per (detector, group) and a dict
    ``{detector: {"overall": metrics, "per_family": records}}``.
    """
    import pandas as pd

    from .detect import evaluate_detector

    rows, numbers = [], {}
    for name, det in detectors.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            overall, per_group, _ = evaluate_detector(det, dataset, batch_size=batch_size, device=device,
                                                      progress=progress)
        pg = per_group.reset_index()
        pg.insert(0, "detector", name)
        rows.append(pg)
        numbers[name] = {"overall": overall, "per_family": pg.drop(columns="detector").to_dict(orient="records")}
    return pd.concat(rows, ignore_index=True), numbers


def stage_masks(dmaps, pairs, *, families=None, source_ids=None, threshold: float = 0.1, n_boot: int = 1000,
                seed: int = 0, example: int = 0):
    """Binary difference masks: activated pixels vs threshold per family, and one example triptych."""
    from . import analysis as A
    from . import plot as P

    fi, ri = pairs[:, 0], pairs[:, 1]
    methods = np.asarray(families)[fi] if families is not None else None
    groups = np.asarray(source_ids)[fi] if source_ids is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        act = A.mask_activation(dmaps[fi], dmaps[ri], pairs=np.stack([np.arange(len(fi))] * 2, axis=1),
                                groups=groups, methods=methods, n_boot=n_boot, seed=seed)
    at_t = act[np.isclose(act["threshold"], threshold)]
    e_f, e_r = pairs[example]
    fig_ex = P.mask_triptych(dmaps[e_f], dmaps[e_r], threshold=threshold,
                             title=f"fake ({methods[example] if methods is not None else 'fake'}) vs its real")
    fig_curve = P.activation_curve(act)
    numbers = {"threshold": threshold, "n_pairs": int(len(fi)),
               "at_threshold": at_t[["method", "mean", "ci_low", "ci_high", "n_pairs"]].to_dict(orient="records"),
               "table": act}
    return numbers, {"mask_example": fig_ex, "activation_curve": fig_curve}


def stage_variance(dmaps, labels, pairs, *, source_ids=None, window: int = 15, n_boot: int = 1000, seed: int = 0,
                   example: int = 0):
    """Local variance of real vs fake maps: the KS test, its distributions and one example pair."""
    from . import analysis as A
    from . import plot as P

    labels = np.asarray(labels).astype(int)
    real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    vt = A.variance_test(dmaps[real], dmaps[fake], window=window, n_boot=n_boot, seed=seed)
    e_f, e_r = pairs[example]
    fig_pair = P.variance_pair(dmaps[e_r], dmaps[e_f], window=window)
    fig_dist = P.variance_distributions(vt)
    return vt.to_dict(include_values=False), {"variance_example": fig_pair, "variance_distributions": fig_dist}


def stage_embedding(feature_sets: dict, *, seed: int = 0, families=None):
    """t-SNE of each detector's pooled features with separability computed on the features."""
    from . import analysis as A
    from . import plot as P
    from .plot import style as S

    numbers, embs = {}, {}
    for name, fs in feature_sets.items():
        feats = np.asarray(fs.features, dtype=np.float64)
        labels = np.asarray(fs.labels).astype(int)
        n = feats.shape[0]
        perp = float(min(30.0, max(2.0, (n - 1) / 3.0)))
        embs[name] = A.embed(feats, method="tsne" if n >= 10 else "pca", perplexity=perp, seed=seed)
        min_class = int(min((labels == 0).sum(), (labels == 1).sum()))
        sep = A.separability(feats, labels, k=max(1, min(5, min_class - 1)), seed=seed,
                             n_splits=max(2, min(5, min_class)))
        numbers[name] = {**sep.to_dict(), "perplexity": perp}
    with S.house_style():
        fig, axs = S.new_figure(1, len(feature_sets), width="double", aspect=0.5, squeeze=False)
    for ax, (name, fs) in zip(axs.ravel(), feature_sets.items()):
        fam = np.asarray(fs.families).astype(str) if families is None else families
        P.embedding_scatter(embs[name], np.asarray(fs.labels).astype(int), separability=numbers[name],
                            families=fam, seed=seed, ax=ax, title=f"{name} detector")
    # one legend below both panels instead of one per panel drawn over the points
    handles, labs = axs.ravel()[0].get_legend_handles_labels()
    for ax in axs.ravel():
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    with S.house_style():
        fig.legend(handles, labs, loc="outside lower center", ncols=min(5, len(labs)), markerscale=2,
                   handletextpad=0.3, columnspacing=1.0)
    return numbers, {"embedding": fig}


def stage_alignment(dmaps, pairs, attributions: dict, *, source_ids=None, n_boot: int = 1000,
                    n_permutations: int = 200, seed: int = 0, example: int = 0):
    """Shapley alignment of each model's attributions with |fake - real|, CIs, permutation baseline.

    ``attributions`` maps a model name to (N, H, W) attributions on the map grid (RGB already reduced
    with :func:`reduce_rgb`). Also reports the paired difference of the first two models.
    """
    from . import analysis as A
    from . import plot as P
    from .plot import style as S

    fi, ri = pairs[:, 0], pairs[:, 1]
    groups = np.asarray(source_ids)[fi] if source_ids is not None else None
    summaries, numbers = {}, {}
    for name, a in attributions.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summaries[name] = A.alignment_scores(dmaps[fi], dmaps[ri], np.abs(a[fi]), groups=groups, n_boot=n_boot,
                                                 seed=seed, n_permutations=min(n_permutations, 10 * len(fi)),
                                                 on_degenerate="skip")
        s = summaries[name]
        numbers[name] = s.to_dict()
        numbers[name].pop("baseline_means", None)
    names = list(attributions)
    if len(names) >= 2:
        a, b = (summaries[k].per_sample.set_index("sample") for k in names[:2])
        common = a.index.intersection(b.index)
        diffs = {}
        for metric in ("overlap", "kl"):
            d = a.loc[common, metric].to_numpy() - b.loc[common, metric].to_numpy()
            ci = A.bootstrap_mean_ci(d, n_boot=n_boot, seed=seed)
            diffs[metric] = {**ci.to_dict(), "win_rate": float(np.mean(d > 0))}
        numbers["paired_difference"] = {"models": names[:2], "n": int(len(common)), **diffs}
    fig_cmp = P.alignment_comparison(summaries)
    e_f, e_r = pairs[example]
    with S.house_style():
        fig_ex, axs = S.new_figure(1, len(attributions), width="double", aspect=0.36, squeeze=False)
    for ax, (name, a) in zip(axs.ravel(), attributions.items()):
        r = A.alignment_score(dmaps[e_f], dmaps[e_r], np.abs(a[e_f]))
        P.alignment_histogram(r, ax=ax, title=f"{name} model")
    return numbers, {"alignment_example": fig_ex, "alignment_comparison": fig_cmp}


def stage_localization(attributions: dict, masks, *, seed: int = 0, n_boot: int = 1000, dmaps=None, example=None,
                       example_attributions: dict | None = None):
    """Localization metrics of each method's attributions on ground-truth masks, plus a random baseline.

    ``attributions`` maps a method name to (N, H, W) attributions of the manipulated samples;
    ``masks`` are their ground-truth masks (N, H, W). A ``"random"`` entry is added.
    """
    from . import analysis as A
    from . import plot as P

    masks = np.asarray(masks)
    attributions = dict(attributions)
    attributions.setdefault("random", random_attributions(masks.shape, seed=seed))
    sums, numbers = {}, {}
    for name, a in attributions.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = A.localization_scores(np.asarray(a), masks, n_boot=n_boot, seed=seed)
        sums[name] = s
        numbers[name] = {"summary": s.summary.to_dict(orient="records"), "n_samples": s.n_samples,
                         "n_skipped": s.n_skipped,
                         "mask_fraction": float(s.per_sample["mask_fraction"].mean()) if s.n_samples else None}
    figs = {"localization": P.localization_curves(sums)}
    if dmaps is not None and example is not None and example_attributions:
        from .plot import style as S

        n = len(example_attributions) + 1
        with S.house_style():
            fig, axs = S.new_figure(1, n, width="double", aspect=0.3, squeeze=False)
        axs = list(axs.ravel())
        ax0 = axs[0]
        for ax, (name, a) in zip(axs[1:], example_attributions.items()):
            P.attribution_overlay(a, dmap=dmaps[example], label="attribution", axes=[ax])
        with S.house_style():  # titles and contours in the house font sizes
            ax0.imshow(np.asarray(dmaps[example]), cmap="gray")  # own range: fixed-normalized maps are dark
            ax0.contour(masks[example] > 0, levels=[0.5], colors="red", linewidths=0.8)
            ax0.set_title("map + true mask (red)")
            S._image_off(ax0)
            for ax, name in zip(axs[1:], example_attributions):
                ax.contour(masks[example] > 0, levels=[0.5], colors="black", linewidths=0.6)
                ax.set_title(name)
        figs["localization_example"] = fig
    return numbers, figs


def stage_randomization(detector, maps, *, methods=("saliency", "shap_gradient"), seed: int = 0,
                        n_samples: int = 32, progress: bool = True):
    """Cascading model-parameter randomization of attribution methods on the defocus detector."""
    import pandas as pd
    from tqdm.auto import tqdm

    from . import plot as P
    from .explain import randomization_test

    dfs = []
    for m in tqdm(methods, desc="randomization", disable=not progress, leave=False):
        kw = {"n_samples": n_samples} if m in ("shap_gradient", "gradient_shap", "integrated_gradients") else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = randomization_test(detector, maps, method=m, seed=seed, attribute_kwargs=kw)
        dfs.append(df)
    df = pd.concat(dfs, ignore_index=True)
    last = df.groupby("method").tail(1)
    numbers = {"table": df[["method", "step", "layer", "spearman", "spearman_abs", "logit_change", "n_valid"]],
               "final": last[["method", "layer", "spearman", "spearman_abs"]].to_dict(orient="records"),
               "n_layers": int(df.groupby("method").size().max() - 1), "n_maps": int(len(maps))}
    fig = P.randomization_plot(df, metric="spearman_abs")
    return numbers, {"randomization": fig}


def stage_faithfulness(detector, maps, attributions, *, steps: int = 10, seed: int = 0, batch_size: int = 64):
    """Deletion and insertion curves of the defocus attributions against a random ranking."""
    from . import plot as P
    from .explain import deletion_insertion
    from .plot import style as S

    res = deletion_insertion(detector, maps, attributions, steps=steps, seed=seed, batch_size=batch_size,
                             score="logit")
    summ = res.summary()
    # partial deletion/insertion can create maps unlike any training map (patches of blur): then even a
    # random order moves the score above both ends of the curve, and the curves measure that too
    rnd = np.asarray(res.random_deletion if res.random_deletion is not None else res.deletion).mean(axis=0)
    ood_excess = float(rnd.max() - max(rnd[0], rnd[-1]))
    with S.house_style():
        fig, axs = S.new_figure(1, 2, width="double", aspect=0.38, squeeze=False)
    for ax, kind in zip(axs.ravel(), ("deletion", "insertion")):
        P.deletion_curves(result=res.curves(kind), kind=kind, ax=ax, ylabel="fake logit", title=kind)
    return {"summary": summ.to_dict(orient="records"), "score": "logit", "steps": steps,
            "n_maps": int(len(maps)), "random_curve_excess": ood_excess}, {"faithfulness": fig}


# ---------------------------------------------------------------------------------------------------
# the demo
# ---------------------------------------------------------------------------------------------------


def _triptych_figure(dataset, rows: Sequence[int], device=None, size: int | None = None):
    """Defocus triptychs (image, sparse, dense) of several samples, one row each, one shared sigma scale."""
    import torch

    from .defocus import estimate_defocus
    from .plot import defocus_triptych
    from .plot import style as S

    items = [dataset[i] for i in rows]
    imgs = torch.stack([torch.as_tensor(np.asarray(it["image"])) for it in items]).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = estimate_defocus(imgs, size=size or imgs.shape[-1], device=device)
    dense, sparse, edges = (t.detach().cpu().numpy() for t in (res.dense, res.sparse, res.edges))
    vmax = float(max(np.percentile(dense, 99.5), np.percentile(sparse[edges > 0], 99.5) if (edges > 0).any() else 0))
    vmax = vmax if vmax > 0 else 1.0
    with S.house_style():
        fig, axs = S.new_figure(len(rows), 3, width="double", height=2.0 * len(rows) + 0.3, squeeze=False)
    for r, it in enumerate(items):
        lab = "real" if int(it["label"]) == 0 else f"fake: {it['family']}"
        defocus_triptych(imgs[r], sparse[r], dense[r], edges=edges[r], vmax=vmax, axes=list(axs[r]))
        with S.house_style():
            axs[r, 0].set_title(f"{lab}\n(scene {rows[r] // 2})")
            axs[r, 1].set_title(axs[r, 1].get_title().replace(" at edges", "\nat edges"))
            axs[r, 2].set_title(axs[r, 2].get_title().replace(" (mean", "\n(mean"))
    numbers = {"rows": [{"index": int(i), "label": int(it["label"]), "family": str(it["family"]),
                         "mean_sigma": float(dense[r].mean()), "edge_fraction": float((edges[r] > 0).mean())}
                        for r, (i, it) in enumerate(zip(rows, items))], "vmax": vmax}
    return numbers, fig


class _ListDataset:
    """A data set rendered once and kept in memory (every stage reads the same samples)."""

    def __init__(self, dataset, progress: bool = False):
        from tqdm.auto import tqdm

        self.families = tuple(getattr(dataset, "families", FAMILY_ORDER))
        self.items = [dataset[i] for i in tqdm(range(len(dataset)), desc="render DefocusSynth", disable=not progress,
                                               leave=False)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _example_rows(dataset) -> list[int]:
    """The real of scene 0 and the first fake of each family."""
    rows, seen = [], set()
    for i in range(len(dataset)):
        it = dataset[i]
        if int(it["label"]) == 0 and not rows:
            rows.append(i)
        elif int(it["label"]) == 1 and it["family"] not in seen:
            seen.add(it["family"])
            rows.append(i)
        if len(seen) == len(getattr(dataset, "families", FAMILY_ORDER)) and rows:
            break
    return rows


def run_demo(
    out,
    *,
    n: int = DEFAULT_N,
    size: int | None = None,
    seed: int = 1,
    device=None,
    detector="bundled-defocus",
    rgb_detector="bundled-rgb",
    n_shap_samples: int = 50,
    n_boot: int = 1000,
    n_permutations: int = 200,
    randomization_maps: int = 4,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 200,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the whole pipeline on DefocusSynth with the bundled detectors and write a one-page report.

    Stages: defocus maps (triptych figure); detection metrics of both detectors per family
    (``detection.json``, ``detection.csv``); attribution export to ``.npz`` (defocus ``shap_gradient``
    and the RGB detector's SHAP); binary masks and the activation curve; local variance and the KS
    test; t-SNE of both detectors' features with separability; Shapley alignment of defocus vs RGB
    attributions (bootstrap CIs, permutation baseline, paired difference); localization on the
    splice family's ground-truth masks; the model-randomization sanity check; deletion / insertion
    faithfulness. Every figure is written as PNG and PDF; ``report.md`` shows them with their
    numbers.

    Parameters
    ----------
    out : path-like
        Output folder (created; files of an earlier run are overwritten).
    n : int
        DefocusSynth samples (even: real/fake pairs). Default :data:`DEFAULT_N`.
    size : int, optional
        Image size; default the defocus detector's input size.
    seed : int
        Seed of the data set (``DefocusSynth(seed=...)``) and of every random step. Default 1, the
        held-out seed: the bundled detectors were trained on seed 0 and validated on seed 2.
    device : str, optional
        ``"cpu"``, ``"cuda"`` ...; default CUDA when available.
    detector, rgb_detector : str, path or nn.Module
        Defocus and RGB detectors (``"bundled-defocus"``, ``"bundled-rgb"``, checkpoint paths or models).
    n_shap_samples : int
        Draws of the SHAP GradientExplainer per sample (export and randomization).
    n_boot, n_permutations : int
        Bootstrap replicates of every CI; permutations of the alignment baseline.
    randomization_maps : int
        Fake maps used by the randomization sanity check.
    formats : sequence of str
        Figure formats.
    dpi : int
        Raster resolution.
    progress : bool
        Progress bars and stage messages.
    log : callable, optional
        Receives the stage messages (default ``tqdm.write`` when ``progress``).

    Returns
    -------
    DemoResult

    Examples
    --------
    >>> res = run_demo("demo_out", n=40, device="cpu")         # doctest: +SKIP
    >>> print(res.report.read_text()[:60])                     # doctest: +SKIP
    """
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from .cli.evaluate import _detector_size
    from .data import DefocusSynth
    from .detect import load_detector
    from .explain import export_attributions, extract_features, load_attributions
    from .plot import style as S

    if n < 8 or n % 2:
        raise ValueError(f"n must be an even number >= 8 (real/fake pairs of every family), got {n}")
    t_start = time.perf_counter()
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if log is None:
        log = (tqdm.write if progress else (lambda s: None))
    timings: dict = {}
    results: dict = {}
    figures: list[Path] = []
    sections: list[dict] = []
    n_stages = 10
    stage_no = [0]
    t0 = [time.perf_counter()]

    def stage(name):
        if stage_no[0]:
            timings[current[0]] = round(time.perf_counter() - t0[0], 2)
        stage_no[0] += 1
        current[0] = name
        t0[0] = time.perf_counter()
        log(f"[{stage_no[0]}/{n_stages}] {name}")

    current = [""]

    def save(figs: dict):
        paths = {}
        for stem, fig in figs.items():
            written = S.save(fig, fig_dir / stem, formats=formats, dpi=dpi, close=True)
            figures.extend(written)
            paths[stem] = written
        return paths

    torch.manual_seed(seed)

    # 1. data and detectors -------------------------------------------------------------------------------
    stage("data, detectors and defocus maps")
    det = load_detector(detector, device=device)
    rgb = load_detector(rgb_detector, device=device) if rgb_detector is not None else None
    size = int(size or _detector_size(det))
    ds = _ListDataset(DefocusSynth(n, size=size, seed=seed), progress=progress)
    results["settings"] = {"n": n, "size": size, "seed": seed, "device": str(device), "n_shap_samples": n_shap_samples,
                           "n_boot": n_boot, "n_permutations": n_permutations,
                           "detector": dict(getattr(det, "identity", {}) or {}),
                           "rgb_detector": dict(getattr(rgb, "identity", {}) or {}) if rgb is not None else None}
    trip, fig = _triptych_figure(ds, _example_rows(ds), device=device, size=size)
    results["defocus_maps"] = trip
    save({"defocus_maps": fig})
    sections.append({"key": "defocus_maps", "title": "Defocus maps", "figures": ["defocus_maps"]})

    # 2. detection -----------------------------------------------------------------------------------------
    stage("detection metrics")
    dets = {"defocus": det} | ({"rgb": rgb} if rgb is not None else {})
    table, det_numbers = stage_detection(dets, ds, device=device, progress=progress)
    results["detection"] = det_numbers
    table.to_csv(out / "detection.csv", index=False)
    (out / "detection.json").write_text(json.dumps(_jsonable(det_numbers), indent=2))

    # 3. export --------------------------------------------------------------------------------------------
    stage("attribution export (.npz)")
    store_dir = export_attributions(ds, det, out / "attributions", methods=("shap_gradient",), rgb_detector=rgb,
                                    n_samples=n_shap_samples, seed=seed, resume=False, progress=progress,
                                    device=device, batch_size=16)
    arr = load_store_arrays(load_attributions(store_dir))
    dm = arr["dmaps"].astype(np.float64)
    labels = arr["labels"].astype(int)
    sid = arr["source_ids"].astype(str)
    fam = arr["families"].astype(str)
    pairs = fake_real_pairs(labels, sid)
    # example: the first splice pair (fall back to the first pair)
    fam_p = fam[pairs[:, 0]]
    ex = int(np.flatnonzero(fam_p == "splice")[0]) if (fam_p == "splice").any() else 0
    attrs = {"defocus": np.abs(arr["defocus_shaps"].astype(np.float64))}
    if "rgb_shaps" in arr:
        attrs["rgb"] = reduce_rgb(arr["rgb_shaps"], dm.shape[1:])
    results["export"] = {"path": str(store_dir), "n_samples": int(len(labels)), "keys": sorted(arr),
                         "n_pairs": int(len(pairs))}

    # 4. masks ---------------------------------------------------------------------------------------------
    stage("binary masks")
    nums, figs = stage_masks(dm, pairs, families=fam, source_ids=sid, n_boot=n_boot, seed=seed, example=ex)
    results["masks"] = nums
    save(figs)

    # 5. variance ------------------------------------------------------------------------------------------
    stage("local variance + KS test")
    nums, figs = stage_variance(dm, labels, pairs, source_ids=sid, n_boot=n_boot, seed=seed, example=ex)
    results["variance"] = nums
    save(figs)

    # 6. embedding -----------------------------------------------------------------------------------------
    stage("features + t-SNE")
    fsets = {}
    for name, d in dets.items():
        fsets[name] = extract_features(d, ds, device=device, progress=progress)
    nums, figs = stage_embedding(fsets, seed=seed)
    results["embedding"] = nums
    save(figs)

    # 7. alignment -----------------------------------------------------------------------------------------
    stage("Shapley alignment (defocus vs RGB)")
    nums, figs = stage_alignment(dm, pairs, attrs, source_ids=sid, n_boot=n_boot, n_permutations=n_permutations,
                                 seed=seed, example=ex)
    results["alignment"] = nums
    save(figs)

    # 8. localization --------------------------------------------------------------------------------------
    stage("localization on splice masks")
    gm = arr.get("gt_masks")
    results["localization"] = None
    if gm is not None:
        rows = np.flatnonzero((labels == 1) & (fam == "splice") & (gm.reshape(len(labels), -1).sum(axis=1) > 0))
        if rows.size:
            loc_attrs = {f"{k} SHAP": v[rows] for k, v in attrs.items()}
            ex_row = 0
            ex_attr = {"defocus SHAP": arr["defocus_shaps"][rows[ex_row]]}
            if "rgb_shaps" in arr:  # signed, summed over channels by the overlay
                ex_attr["RGB SHAP (sum of channels)"] = arr["rgb_shaps"][rows[ex_row]]
            nums, figs = stage_localization(loc_attrs, gm[rows], seed=seed, n_boot=n_boot, dmaps=dm[rows],
                                            example=ex_row, example_attributions=ex_attr)
            results["localization"] = nums
            save(figs)

    # 9. randomization -------------------------------------------------------------------------------------
    stage("randomization sanity check")
    fake_rows = np.flatnonzero(labels == 1)[:randomization_maps]
    maps_t = torch.from_numpy(dm[fake_rows, None].astype(np.float32))
    nums, figs = stage_randomization(det, maps_t, seed=seed, n_samples=min(n_shap_samples, 16), progress=progress)
    results["randomization"] = nums
    save(figs)

    # 10. faithfulness ------------------------------------------------------------------------------------
    stage("deletion / insertion faithfulness")
    fr = np.flatnonzero(labels == 1)
    nums, figs = stage_faithfulness(det, torch.from_numpy(dm[fr, None].astype(np.float32)),
                                    torch.from_numpy(arr["defocus_shaps"][fr, None].astype(np.float32)), seed=seed)
    results["faithfulness"] = nums
    save(figs)
    timings[current[0]] = round(time.perf_counter() - t0[0], 2)

    # report -----------------------------------------------------------------------------------------------
    seconds = round(time.perf_counter() - t_start, 1)
    results["timings"] = dict(timings, total=seconds)
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=2))
    report = out / "report.md"
    files = _write_report(report, results, formats)
    log(f"demo finished in {seconds:.0f} s: {len(figures)} figure files in {fig_dir}")
    return DemoResult(out=out, report=report, results=_jsonable(results), figures=figures, files=files,
                      timings=timings, seconds=seconds)


# ---------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------


def _reading_maps(rows) -> str:
    real = [x for x in rows if x["label"] == 0]
    nodof = [x for x in rows if x["family"] == "no_dof"]
    txt = ("sigma is estimated at edges (middle) and propagated (right), on one colour scale for all rows")
    if real and nodof:
        txt += (f"; the no_dof fake of scene 0 is sharp everywhere (mean sigma {nodof[0]['mean_sigma']:.2f} px) "
                f"where its real shows depth of field ({real[0]['mean_sigma']:.2f} px)")
    return txt + "."


def _reading_detection(det) -> str:
    parts = []
    for name, d in det.items():
        fam = [g for g in d["per_family"] if g["group"] != "all" and g.get("roc_auc") is not None]
        if not fam:
            continue
        best = max(fam, key=lambda g: g["roc_auc"])
        worst = min(fam, key=lambda g: g["roc_auc"])
        parts.append(f"the {name} detector reaches ROC AUC {d['overall']['roc_auc']:.2f} overall, best on "
                     f"{best['group']} ({best['roc_auc']:.2f}), worst on {worst['group']} ({worst['roc_auc']:.2f})")
    return "; ".join(parts) + " (AUC 0.5 = chance)."


def _reading_masks(m) -> str:
    rows = m["at_threshold"]
    if not rows:
        return "no pair at this threshold."
    hi = max(rows, key=lambda x: x["mean"])
    lo = min(rows, key=lambda x: x["mean"])
    return (f"at t = {m['threshold']:g}, {hi['method']} changes the most map pixels ({hi['mean']:,.0f}) and "
            f"{lo['method']} the fewest ({lo['mean']:,.0f}); maps are min-max normalized per image, so a change "
            "anywhere in the scene (e.g. of the blur range) moves the whole map and masks are large.")


def _reading_variance(v) -> str:
    direction = "lower" if v["mean_difference"] < 0 else "higher"
    if v["p_value"] < 0.05:
        return (f"fake maps have {direction} local variance than real ones (KS p = {v['p_value']:.2g}, Cliff's "
                f"delta {v['cliffs_delta']:.2f}).")
    return (f"fake maps have slightly {direction} mean local variance, but real and fake distributions are not "
            f"distinguishable at this N (KS p = {v['p_value']:.2g}).")


def _reading_localization(loc) -> str:
    rnd = loc.get("random")
    if not rnd:
        return "no random baseline."
    r_auc = {s["metric"]: s for s in rnd["summary"]}.get("auroc", {}).get("mean", 0.5)
    good, bad = [], []
    for k, x in loc.items():
        if k == "random":
            continue
        s = {row["metric"]: row for row in x["summary"]}.get("auroc")
        if s is None:
            continue
        (good if s["ci_low"] > r_auc else bad).append(f"{k} (AUROC {s['mean']:.2f})")
    out = []
    if good:
        out.append("above the random baseline: " + ", ".join(good))
    if bad:
        out.append("not distinguishable from random: " + ", ".join(bad))
    return "; ".join(out) + f" (random AUROC {r_auc:.2f})."


def _reading_faithfulness(f) -> str:
    d = f.get("deletion_vs_random")
    i = f.get("insertion_vs_random")
    if d is None or i is None:
        return "no random ranking computed."

    def sig(x, better):
        lo, hi = x["mean"] - 1.96 * x["sem"], x["mean"] + 1.96 * x["sem"]
        if (better < 0 and hi < 0) or (better > 0 and lo > 0):
            return "better than random"
        if (better < 0 and lo > 0) or (better > 0 and hi < 0):
            return "worse than random"
        return "not distinguishable from random"

    return (f"deleting the most-attributed pixels first is {sig(d, -1)} (AUC difference {d['mean']:+.3f} +- "
            f"{1.96 * d['sem']:.3f}); inserting them first is {sig(i, +1)} ({i['mean']:+.3f} +- {1.96 * i['sem']:.3f}).")


def _md_table(df, floatfmt: str = ".3f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in df.itertuples(index=False):
        cells = []
        for v in rec:
            if isinstance(v, (float, np.floating)):
                cells.append(format(float(v), floatfmt))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_report(path: Path, r: dict, formats) -> list[Path]:
    """Write ``report.md``; return every file it links to."""
    import pandas as pd

    out = path.parent
    links: list[Path] = []
    L: list[str] = []
    st = r["settings"]

    def fig(stem, alt):
        links.extend(out / "figures" / f"{stem}.{f}" for f in formats)
        if "png" in formats:
            L.extend([f"![{alt}](figures/{stem}.png)", ""])
        other = [f for f in formats if f != "png"]
        if other:
            L.extend(["(" + ", ".join(f"[{f.upper()}](figures/{stem}.{f})" for f in other) + ")", ""])

    did = st["detector"] or {}
    rid = st["rgb_detector"] or {}
    L += ["# defocus-xai demo report", "",
          f"DefocusSynth, {st['n']} samples ({st['n'] // 2} real/fake pairs sharing a source id), "
          f"{st['size']} px, seed {st['seed']}; device {st['device']}. "
          f"Defocus detector: `{did.get('name', '?')}` ({did.get('backbone', '?')}); RGB detector: "
          f"`{rid.get('name', '?')}` ({rid.get('backbone', '?')}). Brackets are bootstrap 95% CIs "
          f"({st['n_boot']} replicates). All numbers: [`results.json`](results.json). "
          f"Runtime: {r['timings']['total']:.0f} s.", ""]
    links.append(out / "results.json")

    # 1 maps
    L += ["## 1. Defocus maps", ""]
    fig("defocus_maps", "defocus triptychs")
    rows = r["defocus_maps"]["rows"]
    L += ["Mean dense sigma (px): " + ", ".join(
        f"{'real' if x['label'] == 0 else x['family']} {x['mean_sigma']:.2f}" for x in rows)
        + f"; shared colour scale up to {r['defocus_maps']['vmax']:.2f} px.", "",
          "*Reading:* " + _reading_maps(rows), ""]

    # 2 detection
    L += ["## 2. Detection", ""]
    recs = []
    for name, d in r["detection"].items():
        for g in d["per_family"]:
            recs.append({"detector": name, "group": g["group"], "n_fake": g["n_fake"], "roc_auc": g["roc_auc"],
                         "accuracy": g["accuracy"], "eer": g["eer"]})
    df = pd.DataFrame.from_records(recs).fillna(float("nan"))
    L += [_md_table(df), "", "Files: [`detection.csv`](detection.csv), [`detection.json`](detection.json). "
          "Per family: that family's fakes against all reals.", ""]
    links += [out / "detection.csv", out / "detection.json"]
    best = {name: d["overall"].get("roc_auc") for name, d in r["detection"].items()}
    L += ["*Reading:* " + _reading_detection(r["detection"]), ""]

    # 3 export
    e = r["export"]
    L += ["## 3. Attribution export", "",
          f"[`attributions/`](attributions/index.json): {e['n_samples']} samples, keys "
          + ", ".join(f"`{k}`" for k in e["keys"]) + f"; {e['n_pairs']} fake/real pairs by source id.", ""]
    links.append(out / "attributions" / "index.json")

    # 4 masks
    m = r["masks"]
    L += ["## 4. Binary difference masks", ""]
    fig("mask_example", "mask triptych")
    fig("activation_curve", "activation curve")
    L += [f"Activated pixels at threshold {m['threshold']:g} (mean per pair): " + "; ".join(
        f"{x['method']} {x['mean']:,.0f} [{x['ci_low']:,.0f}, {x['ci_high']:,.0f}] (n={x['n_pairs']})"
        for x in m["at_threshold"]) + ".", "",
          "*Reading:* " + _reading_masks(m), ""]

    # 5 variance
    v = r["variance"]
    L += ["## 5. Local variance and KS test", ""]
    fig("variance_example", "local variance pair")
    fig("variance_distributions", "local variance distributions")
    L += [f"KS D = {v['ks_statistic']:.3f} (p = {v['p_value']:.3g}); mean local variance real {v['mean_real']:.4g}, "
          f"fake {v['mean_fake']:.4g}; difference {v['mean_difference']:.3g} [{v['ci_low']:.3g}, {v['ci_high']:.3g}]; "
          f"Cliff's delta {v['cliffs_delta']:.3f}; n = {v['n_real']} real, {v['n_fake']} fake.", "",
          "*Reading:* " + _reading_variance(v), ""]

    # 6 embedding
    L += ["## 6. Feature embedding (t-SNE)", ""]
    fig("embedding", "t-SNE")
    L += ["; ".join(f"{k}: silhouette {x['silhouette']:.3f}, kNN accuracy {x['knn_accuracy']:.3f} "
                    f"(chance {x['chance_accuracy']:.3f})" for k, x in r["embedding"].items())
          + " (on the pooled features, not the 2-D embedding).", "",
          "*Reading:* " + "; ".join(
              f"the {k} detector's features {'separate real from fake' if x['knn_accuracy'] > x['chance_accuracy'] + 0.1 else 'barely separate real from fake' if x['knn_accuracy'] > x['chance_accuracy'] else 'do not separate real from fake'}"
              f" (kNN {x['knn_accuracy']:.2f} vs chance {x['chance_accuracy']:.2f})" for k, x in r["embedding"].items())
          + ".", ""]

    # 7 alignment
    a = r["alignment"]
    L += ["## 7. Shapley alignment: defocus vs RGB detector", ""]
    fig("alignment_example", "alignment histograms")
    fig("alignment_comparison", "alignment comparison")
    for k, x in a.items():
        if k == "paired_difference":
            continue
        base = (f"; permutation baseline {x['baseline_mean_overlap']:.3f} (p = {x['p_value']:.3g})"
                if x.get("baseline_mean_overlap") is not None else "")
        L += [f"- {k}: overlap {_fmt_ci(x['mean_overlap'], x['ci_low'], x['ci_high'])}, "
              f"KL {_fmt_ci(x['mean_kl'], x['kl_ci_low'], x['kl_ci_high'])}{base}; n = {x['n_samples']} "
              f"({x['n_skipped']} skipped)"]
    pd_ = a.get("paired_difference")
    if pd_:
        o = pd_["overlap"]
        L += [f"- paired difference {pd_['models'][0]} - {pd_['models'][1]}: overlap "
              f"{_fmt_ci(o['estimate'], o['low'], o['high'])} (n = {pd_['n']}; {pd_['models'][0]} higher on "
              f"{100 * o['win_rate']:.0f}% of fakes)"]
    L += [""]
    if pd_:
        o = pd_["overlap"]
        verdict = ("the defocus detector's attributions align better with the defocus change than the RGB detector's"
                   if o["low"] > 0 else
                   "the RGB detector's attributions align better" if o["high"] < 0 else
                   "no significant difference between the two detectors at this N")
        above = [k for k, x in a.items() if k != "paired_difference" and x.get("p_value") is not None
                 and x["p_value"] < 0.05]
        L += [f"*Reading:* {verdict}; "
              + (f"only {', '.join(above)} beat{'s' if len(above) == 1 else ''} its permutation baseline (p < 0.05)."
                 if above else "neither beats its permutation baseline (p >= 0.05): at this N the attributions are "
                               "not more aligned with the defocus change than another sample's attribution would be."),
              ""]

    # 8 localization
    L += ["## 8. Localization on the splice family", ""]
    loc = r.get("localization")
    if loc:
        fig("localization_example", "attribution vs true mask")
        fig("localization", "localization metrics")
        recs = []
        for k, x in loc.items():
            row = {"method": k, "n": x["n_samples"]}
            for s in x["summary"]:
                row[s["metric"]] = f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"
            recs.append(row)
        L += [_md_table(pd.DataFrame.from_records(recs)), ""]
        mf = next(iter(loc.values()))["mask_fraction"]
        L += [f"Mean mask fraction (chance level of mass and rank accuracy): {mf:.3f}; AUROC chance 0.5.", "",
              "*Reading:* " + _reading_localization(loc), ""]
    else:
        L += ["Not produced: no splice fake with a non-empty ground-truth mask.", ""]

    # 9 randomization
    rz = r["randomization"]
    L += ["## 9. Randomization sanity check", ""]
    fig("randomization", "randomization")
    L += [f"Cascading randomization of {rz['n_layers']} layers on {rz['n_maps']} fake maps; Spearman rank "
          "correlation of |attribution| with the trained model's after all layers are random: "
          + ", ".join(f"{x['method']} {x['spearman_abs']:.3f}" for x in rz["final"]) + ".", "",
          "*Reading:* " + "; ".join(
              f"{x['method']} {'passes (falls near 0)' if abs(x['spearman_abs']) < 0.2 else 'partly depends on the input, not only on the model' if abs(x['spearman_abs']) < 0.5 else 'fails: it stays correlated with itself after the model is random'}"
              for x in rz["final"]) + " (a method that explains the model must change when the model does).", ""]

    # 10 faithfulness
    f = {x["metric"]: x for x in r["faithfulness"]["summary"]}
    L += ["## 10. Deletion / insertion faithfulness", ""]
    fig("faithfulness", "deletion and insertion curves")

    def g(k, field_="mean"):
        return f[k][field_] if k in f else float("nan")

    L += [f"On {r['faithfulness']['n_maps']} fake maps, fake logit: deletion AUC {g('deletion_auc'):.3f} "
          f"(random {g('random_deletion_auc'):.3f}), insertion AUC {g('insertion_auc'):.3f} "
          f"(random {g('random_insertion_auc'):.3f}); SHAP beats random on "
          f"{100 * g('deletion_vs_random', 'win_rate'):.0f}% (deletion) and "
          f"{100 * g('insertion_vs_random', 'win_rate'):.0f}% (insertion) of maps.", "",
          "*Reading:* " + _reading_faithfulness(f)
          + (f" Caution: even the random order raises the logit by up to {r['faithfulness']['random_curve_excess']:.2f} "
             "above both ends of its curve, so partly deleted maps are out of distribution for the detector and "
             "the areas mix faithfulness with that effect." if r["faithfulness"].get("random_curve_excess", 0) > 0.1
             else ""), ""]

    # timings
    L += ["## Runtime", "", _md_table(pd.DataFrame({"stage": list(r["timings"]),
                                                      "seconds": list(r["timings"].values())}), ".1f"), ""]
    path.write_text("\n".join(L))
    return [path] + links
