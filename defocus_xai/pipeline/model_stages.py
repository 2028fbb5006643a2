"""Stages that run a detector or the estimator: defocus maps, detection, randomization, faithfulness.

They return the same :class:`StageResult` as the array stages; the sanity checks read the maps and
attributions from the store arrays.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

from .inputs import attribution_reference, require, sample_name
from .result import StageResult
from .settings import PipelineSettings

__all__ = ["stage_defocus_maps", "stage_detection", "stage_randomization", "stage_faithfulness"]


def stage_defocus_maps(data, rows: Sequence[int], *, size: int | None = None, device=None) -> StageResult:
    """Defocus triptychs (image, sparse sigma at edges, dense sigma) of some samples on one sigma scale.

    Parameters
    ----------
    data : sequence of samples
        Items with ``image`` (3, H, W) in ``[0, 1]``, ``label`` and ``family`` (e.g. DefocusSynth).
    rows : sequence of int
        The samples, one figure row each (e.g. reals beside their own fakes).
    size : int, optional
        Estimator grid (default: the images' size).

    Examples
    --------
    >>> r = stage_defocus_maps(dx.DefocusSynth(4, size=64), [0, 1])    # doctest: +SKIP
    """
    import torch

    from .. import plot as P
    from ..defocus import estimate_defocus
    from ..plot import style as S

    items = [data[i] for i in rows]
    imgs = torch.stack([torch.as_tensor(np.asarray(it["image"])) for it in items]).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = estimate_defocus(imgs, size=size or imgs.shape[-1], device=device)
    dense, sparse, edges = (t.detach().cpu().numpy() for t in (res.dense, res.sparse, res.edges))
    on_edges = sparse[edges > 0]
    # the scale follows the dense maps: edge values clamped at the estimator's limit saturate (arrow on the bar)
    vmax = float(np.percentile(dense, 99.5)) or 1.0
    with S.house_style():
        fig, axs = S.new_figure(len(rows), 3, width="double", height=1.95 * len(rows) + 0.6, squeeze=False)
    names = []
    for r, (i, it) in enumerate(zip(rows, items)):
        kind = "real" if int(it["label"]) == 0 else f"fake ({it['family']})"
        names.append(f"#{i} {kind}, source {it.get('source_id', '?')}")
        P.defocus_triptych(imgs[r], sparse[r], dense[r], edges=edges[r], vmax=vmax, colorbar=False,
                           axes=list(axs[r]))
        with S.house_style():
            axs[r, 0].set_title(f"#{i} {kind}\nsource {it.get('source_id', '?')}")
            axs[r, 1].set_title(("sparse sigma at edges\n" if r == 0 else "")
                                + f"edges: {100.0 * float((edges[r] > 0).mean()):.1f}% of pixels")
            axs[r, 2].set_title(("dense sigma\n" if r == 0 else "") + f"mean {float(dense[r].mean()):.2f} px")
    with S.house_style():
        data_max = float(max(dense.max(), on_edges.max() if on_edges.size else 0.0))
        S.add_colorbar(axs[0, 2].images[0], axs[:, 1:], S.LABEL_SIGMA, shrink=0.5, aspect=40,
                       extend="max" if data_max > vmax * (1 + 1e-6) else "neither")
    numbers = {"rows": [{"index": int(i), "label": int(it["label"]), "family": str(it["family"]),
                         "source_id": str(it.get("source_id", "")), "mean_sigma": float(dense[r].mean()),
                         "edge_fraction": float((edges[r] > 0).mean())}
                        for r, (i, it) in enumerate(zip(rows, items))], "vmax": vmax}
    caption = ("Image, sparse sigma at edge pixels (grey: no edge) and dense sigma map, every row on one colour "
               f"scale (sigma in pixels, 0 to {vmax:.2f} px: the 99.5th percentile of the dense maps, larger edge "
               "values saturate; brighter = more blur), each fake "
               "in the row below its own real (same source): " + "; ".join(names) + ". Means are of single images, "
               "not family means.")
    return StageResult("defocus_maps", numbers=numbers, figures={"defocus_maps": fig},
                       captions={"defocus_maps": caption})


def stage_detection(detectors: Mapping, data, *, batch_size: int = 32, device=None,
                    progress: bool = True) -> StageResult:
    """Detection metrics of each detector overall and per fake family.

    Returns
    -------
    StageResult
        ``numbers[name] = {"overall": metrics, "per_family": records}``; the table has one row per
        (detector, group). No figures.

    Examples
    --------
    >>> r = stage_detection({"defocus": dx.load_detector("bundled-defocus")}, data)   # doctest: +SKIP
    >>> r.table                                                                      # doctest: +SKIP
    """
    import pandas as pd

    from ..detect import evaluate_detector

    rows, numbers = [], {}
    for name, det in detectors.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            overall, per_group, _ = evaluate_detector(det, data, batch_size=batch_size, device=device,
                                                      progress=progress)
        pg = per_group.reset_index()
        pg.insert(0, "detector", name)
        rows.append(pg)
        numbers[name] = {"overall": overall, "per_family": pg.drop(columns="detector").to_dict(orient="records")}
    return StageResult("detection", numbers=numbers, table=pd.concat(rows, ignore_index=True))


def _fake_maps(arrays: Mapping, n: int | None):
    """Rows and (B, 1, H, W) float32 tensor of the first ``n`` fake maps of the store."""
    import torch

    rows = np.flatnonzero(np.asarray(arrays["labels"]).astype(int) == 1)[:n]
    return rows, torch.from_numpy(np.asarray(arrays["dmaps"])[rows, None].astype(np.float32))


def stage_randomization(detector, arrays: Mapping, settings: PipelineSettings | None = None, *, n_maps: int = 4,
                        methods: Sequence[str] = ("saliency", "shap_gradient"), n_samples: int = 16,
                        progress: bool = True) -> StageResult:
    """Cascading model-parameter randomization of attribution methods on the first fake maps.

    Parameters
    ----------
    detector : nn.Module
        A map detector (not changed: the check works on a copy).
    arrays : dict
        Store arrays with ``dmaps`` and ``labels``.
    n_maps : int
        Fake maps checked.
    n_samples : int
        Random draws of the sampling methods (``shap_gradient``).

    Examples
    --------
    >>> stage_randomization(det, arrays).numbers["final"]              # doctest: +SKIP
    """
    import pandas as pd

    from .. import plot as P
    from .._progress import progress as progress_bar
    from ..explain import randomization_test

    s = settings or PipelineSettings()
    require(arrays, "stage_randomization", "dmaps", "labels")
    rows, maps = _fake_maps(arrays, n_maps)
    dfs = []
    for m in progress_bar(methods, desc="randomization", enabled=progress, leave=False):
        kw = {"n_samples": n_samples} if m in ("shap_gradient", "gradient_shap") else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dfs.append(randomization_test(detector, maps, method=m, seed=s.seed, background="zeros", **kw))
    df = pd.concat(dfs, ignore_index=True)
    last = df.groupby("method").tail(1)
    numbers = {"final": last[["method", "layer", "spearman", "spearman_abs"]].to_dict(orient="records"),
               "n_layers": int(df.groupby("method").size().max() - 1), "n_maps": int(len(rows))}
    reference = "all-zero map for shap_gradient (saliency needs none)"
    band = ("band: +-1 standard deviation over the maps" if "spearman_abs_std" in df.columns else
            "band: bootstrap 95% CI over the maps" if df.groupby(["method", "layer"]).size().max() > 1 else
            "no band (one value per layer)")
    caption = (f"Cascading randomization (head first) on {len(rows)} fake maps: Spearman rank correlation of "
               "|attribution| with the trained model's, per randomized layer; line: mean over the maps, "
               f"{band}; a method that explains the model falls towards 0; attribution reference: {reference}. "
               f"Maps: {', '.join(sample_name(arrays, i) for i in rows)}.")
    table = df[["method", "step", "layer", "spearman", "spearman_abs", "logit_change", "n_valid"]]
    fig = P.randomization_plot(df, metric="spearman_abs", n=len(rows), background=reference, seed=s.seed)
    return StageResult("randomization", numbers=dict(numbers, background=reference), figures={"randomization": fig},
                       captions={"randomization": caption}, table=table)


def stage_faithfulness(detector, arrays: Mapping, settings: PipelineSettings | None = None, *,
                       batch_size: int = 64) -> StageResult:
    """Deletion and insertion curves of the defocus attributions of every fake, against a random order.

    Examples
    --------
    >>> stage_faithfulness(det, arrays).numbers["summary"]             # doctest: +SKIP
    """
    import torch

    from .. import plot as P
    from ..explain import deletion_insertion
    from ..plot import style as S

    s = settings or PipelineSettings()
    require(arrays, "stage_faithfulness", "dmaps", "labels", "defocus_shaps")
    rows, maps = _fake_maps(arrays, None)
    attrs = torch.from_numpy(np.asarray(arrays["defocus_shaps"])[rows, None].astype(np.float32))
    res = deletion_insertion(detector, maps, attrs, n_steps=s.n_steps, seed=s.seed, batch_size=batch_size,
                             score="logit")
    rnd = np.asarray(res.random_deletion if res.random_deletion is not None else res.deletion).mean(axis=0)
    excess = float(rnd.max() - max(rnd[0], rnd[-1]))
    summary = res.summary()
    caveat = faithfulness_caveat(rnd, summary)
    curves = {kind: res.curves(kind) for kind in ("deletion", "insertion")}
    ylim = _shared_ylim(curves.values())
    baseline = "a blurred copy of the map (Gaussian, sigma 5% of the side)"
    warn = f"The deletion curves are not evidence of faithfulness on these data: {caveat}." if caveat else None
    with S.house_style():
        fig, axs = S.new_figure(1, 2, width="double", aspect=0.42, squeeze=False)
    for ax, kind in zip(axs.ravel(), ("deletion", "insertion")):
        P.deletion_curves(result=curves[kind], kind=kind, ax=ax, ylabel="fake logit", ylim=ylim, seed=s.seed,
                          baseline=baseline, n=len(rows), caption=warn,
                          title=f"{kind} ({'lower' if kind == 'deletion' else 'higher'} AUC is better)")
    with S.house_style():
        fig.suptitle(f"defocus SHAP vs a random order, {len(rows)} fake maps")
    caption = (f"Deletion and insertion curves of the defocus SHAP on {len(rows)} fake maps (fake logit), most-"
               f"attributed pixels first against a random order; deleted pixels replaced by {baseline} (insertion "
               "starts from it); line: mean, band: bootstrap 95% CI of the mean over maps; both panels share the y "
               f"range; attribution reference: "
               f"{attribution_reference(arrays) or 'not recorded in the store'}.")
    if warn:
        caption += f" {warn}"
    numbers = {"summary": summary.to_dict(orient="records"), "score": "logit", "n_steps": s.n_steps,
               "n_maps": int(len(rows)), "baseline": baseline, "random_curve_excess": excess, "caveat": caveat}
    return StageResult("faithfulness", numbers=numbers, figures={"faithfulness": fig},
                       captions={"faithfulness": caption})


def faithfulness_caveat(random_curve, summary, tol: float = 0.1) -> str | None:
    """Why deletion / insertion curves say nothing about faithfulness here, or None when they may.

    A random-order deletion curve should fall steadily from the intact to the fully deleted map. When it rises
    above or dips below both of its ends, or its ends coincide, partly deleted maps are out of distribution
    for the detector; when the attribution's AUCs are within ``tol`` (logit x fraction) of the random
    order's, the curves do not separate the two orders.

    Parameters
    ----------
    random_curve : array-like (S,)
        Mean fake logit of the random order after each deletion step.
    summary : pandas.DataFrame
        :meth:`DeletionInsertionResult.summary` (rows ``deletion_vs_random``, ``insertion_vs_random``).
    tol : float
        Logit margin below which a difference counts as none.

    Examples
    --------
    >>> import pandas as pd
    >>> faithfulness_caveat([2.0, 2.5, 0.0], pd.DataFrame(columns=["metric", "mean"]))[:46]
    'even the random order raises the logit by 0.50'
    """
    r = np.asarray(random_curve, dtype=np.float64)
    lo, hi = min(r[0], r[-1]), max(r[0], r[-1])
    ood = " (partly deleted maps are out of distribution for the detector)"
    if r.max() - hi > tol:
        return f"even the random order raises the logit by {r.max() - hi:.2f} above both ends of its curve" + ood
    if lo - r.min() > tol:
        return f"the random order's curve dips {lo - r.min():.2f} below both of its ends" + ood
    if hi - lo <= tol:
        return f"the random order's curve ends where it starts (within {tol:g} logit)" + ood
    diff = dict(zip(summary["metric"], summary["mean"]))
    gaps = [abs(diff[k]) for k in ("deletion_vs_random", "insertion_vs_random") if k in diff]
    if gaps and max(gaps) <= tol:
        return f"the areas differ from the random order's by at most {max(gaps):.3f}, within {tol:g}"
    return None


def _shared_ylim(curves) -> tuple[float, float]:
    """One y range for every mean curve of a figure and its 95% band, with a 5% margin."""
    lo, hi = [], []
    for c in curves:
        for r in c.values():
            y = np.atleast_2d(np.asarray(r.scores, dtype=np.float64))
            m = y.mean(axis=0)
            half = 1.96 * y.std(axis=0, ddof=1) / np.sqrt(y.shape[0]) if y.shape[0] > 1 else 0.0
            lo.append(np.nanmin(m - half))
            hi.append(np.nanmax(m + half))
    a, b = float(min(lo)), float(max(hi))
    pad = 0.08 * ((b - a) or 1.0)
    return a - pad, b + pad
