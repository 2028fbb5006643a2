"""The library's first scientific results on held-out DefocusSynth data (issue 6).

(a) Shapley alignment of the defocus detector versus the RGB detector: for every fake that has its
    real (same ``source_id``), the overlap and KL divergence between the histogram of
    ``|fake map - real map|`` and the histogram of ``|attribution|`` over the fake's defocus values
    (``dx.analysis.alignment_scores``); mean, bootstrap 95% CI, permutation baseline (attributions
    shuffled across samples), the paired defocus - RGB difference, and the same per fake family.
(b) Localization on the splice family's ground-truth masks: pointing game, relevance mass accuracy,
    relevance rank accuracy and pixel AUROC (``dx.analysis.localization_scores``) of the defocus
    detector's attributions by shap_gradient, integrated_gradients, saliency, gradient_shap and
    occlusion, of the RGB detector's shap_gradient, and of random attributions (chance).

Data: ``DefocusSynth(seed=1)`` (the held-out seed; the bundled detectors were trained on seed 0 and
validated on seed 2), 128 px. Part (a) uses the default families in real/fake pairs; part (b) a
splice-only set of the same seed (every fake is a splice with a ground-truth mask).

Usage::

    OMP_NUM_THREADS=1 python bench/science.py                       # defaults: ~14 min on 2 busy CPU cores
    python bench/science.py --n-align 480 --n-splice 400 --device cuda --out /tmp/science

Writes ``<out>/science.json`` (every number) and prints the Markdown tables that
``bench/results_science.md`` reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

LOC_METHODS = ("shap_gradient", "integrated_gradients", "saliency", "gradient_shap", "occlusion")


def _ci(d, est="mean", lo="ci_low", hi="ci_high", nd=3):
    return f"{d[est]:.{nd}f} [{d[lo]:.{nd}f}, {d[hi]:.{nd}f}]"


def part_alignment(det, rgb, args, out: Path) -> dict:
    import defocus_xai as dx
    from defocus_xai import pipeline as pl
    from defocus_xai.store import load_store_arrays

    ds = dx.DefocusSynth(args.n_align, size=args.size, seed=args.seed)
    t = time.perf_counter()
    store = dx.export_attributions(det, ds, out / "align_store", methods=("shap_gradient",), rgb_detector=rgb,
                                   n_samples=args.n_shap, seed=0, device=args.device, progress=not args.quiet,
                                   resume=True, batch_size=16)
    t_export = time.perf_counter() - t
    arr = load_store_arrays(store)
    labels, fam = arr["labels"].astype(int), arr["families"].astype(str)
    pairs, _ = pl.store_pairs(arr)
    settings = pl.PipelineSettings(n_boot=args.n_boot, n_permutations=args.n_permutations, seed=0, max_examples=1)
    res = {"n_samples": int(len(labels)), "n_pairs": int(len(pairs)), "export_seconds": round(t_export, 1)}
    result = pl.stage_alignment(arr, settings, pairs=pairs)
    result.close()
    res["all"] = result.numbers
    res["per_family"] = {}
    fam_p = fam[pairs[:, 0]]
    for f in dict.fromkeys(fam_p):
        sel = pairs[fam_p == f]
        result = pl.stage_alignment(arr, settings, pairs=sel)
        result.close()
        res["per_family"][f] = result.numbers
    # detection scores of both detectors on the same samples (context for the alignment)
    from defocus_xai.detect import metrics_by_group

    res["detection_auc"] = {
        "defocus": metrics_by_group(labels, arr["scores"], fam).reset_index()[["group", "roc_auc"]].to_dict("records")}
    return res


def part_localization(det, rgb, args, out: Path) -> dict:
    import defocus_xai as dx
    from defocus_xai import pipeline as pl
    from defocus_xai.analysis.pairs import reduce_rgb
    from defocus_xai.store import attribution_key, load_store_arrays

    full = dx.DefocusSynth(args.n_splice, size=args.size, seed=args.seed, families=("splice",))
    fakes = [full[i] for i in range(len(full)) if int(full[i]["label"]) == 1 and float(full[i]["mask"].sum()) > 0]
    t = time.perf_counter()
    store = dx.export_attributions(det, fakes, out / "splice_store", methods=LOC_METHODS, n_samples=args.n_shap,
                                   n_steps=args.n_shap, seed=0, device=args.device, progress=not args.quiet, resume=True, batch_size=16)
    arr = load_store_arrays(store)
    masks = arr["gt_masks"]
    attrs = {f"defocus {m}": arr[attribution_key("defocus", m)] for m in LOC_METHODS}
    # the RGB detector's SHAP on the same images (its own call: exporting it with every method would
    # also compute the RGB detector's other four methods)
    import torch

    imgs = torch.stack([torch.as_tensor(np.asarray(f["image"])) for f in fakes]).float()
    a_rgb = dx.attribute(rgb, imgs, method="shap_gradient", space="rgb", n_samples=args.n_shap, seed=0,
                         sample_indices=list(range(len(fakes)))).numpy()
    attrs["rgb shap_gradient"] = reduce_rgb(a_rgb, grid=masks.shape[1:])
    t_export = time.perf_counter() - t
    result = pl.stage_localization(arr, pl.PipelineSettings(n_boot=args.n_boot, seed=0), attributions=attrs)
    result.close()
    nums = result.numbers
    # paired differences on the same fakes (bootstrap CI of the mean per-sample difference)
    from defocus_xai import analysis as A

    per = {}
    for name in ("defocus shap_gradient", "defocus occlusion", "rgb shap_gradient"):
        per[name] = A.localization_scores(attrs[name], masks, n_boot=10, seed=0).per_sample.set_index("sample")
    paired = {}
    for a, b in (("defocus shap_gradient", "rgb shap_gradient"), ("defocus occlusion", "defocus shap_gradient")):
        common = per[a].index.intersection(per[b].index)
        row = {"n": int(len(common))}
        for metric in ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "auroc"):
            d = per[a].loc[common, metric].to_numpy() - per[b].loc[common, metric].to_numpy()
            row[metric] = {**A.bootstrap_mean_ci(d, n_boot=args.n_boot, seed=0).to_dict(),
                           "win_rate": float(np.mean(d > 0))}
        paired[f"{a} - {b}"] = row
    # scores of the detector on these fakes: localization of a detector that does not flag the fake is
    # a statement about a wrong decision
    return {"n_fakes": int(len(fakes)), "export_seconds": round(t_export, 1),
            "mean_fake_score": float(np.mean(arr["scores"])),
            "frac_called_fake": float(np.mean(arr["scores"] >= 0.5)), "methods": nums, "paired": paired}


def tables(r: dict) -> str:
    L = []
    a = r["alignment"]
    L += ["### (a) Shapley alignment, defocus vs RGB detector", "",
          f"{a['n_pairs']} real/fake pairs sharing a source id; mean over fakes with bootstrap 95% CI "
          f"({r['settings']['n_boot']} replicates); chance = mean overlap with attributions shuffled across "
          f"samples ({r['settings']['n_permutations']} permutations), p one-sided.", "",
          "| detector | family | n | overlap | KL | chance overlap | p |", "|---|---|---|---|---|---|---|"]

    def rows(name, block, fam):
        x = block[name]
        L.append(f"| {name} | {fam} | {x['n']} | {_ci(x, 'mean_overlap')} | "
                 f"{_ci(x, 'mean_kl', 'kl_ci_low', 'kl_ci_high')} | {x['baseline_mean_overlap']:.3f} | "
                 f"{x['p_value']:.3g} |")

    for name in ("defocus", "rgb"):
        rows(name, a["all"], "all")
        for f, blk in a["per_family"].items():
            rows(name, blk, f)
    L += ["", "Paired difference defocus - RGB (same fakes; bootstrap 95% CI of the mean difference; "
          "win = share of fakes where defocus is higher):", "",
          "| family | n | overlap difference | win | KL difference |", "|---|---|---|---|---|"]

    def drow(fam, blk):
        d = blk.get("paired_difference")
        if d:
            L.append(f"| {fam} | {d['n']} | {_ci(d['overlap'], 'estimate', 'low', 'high')} | "
                     f"{100 * d['overlap']['win_rate']:.0f}% | {_ci(d['kl'], 'estimate', 'low', 'high')} |")

    drow("all", a["all"])
    for f, blk in a["per_family"].items():
        drow(f, blk)
    loc = r["localization"]
    L += ["", "### (b) Localization on splice masks", "",
          f"{loc['n_fakes']} splice fakes (mean defocus-detector score {loc['mean_fake_score']:.3f}, "
          f"{100 * loc['frac_called_fake']:.0f}% called fake); mean [bootstrap 95% CI]; relevance = |attribution|.",
          "", "| attribution | pointing game | mass accuracy | rank accuracy | AUROC |", "|---|---|---|---|---|"]
    for m, x in loc["methods"].items():
        s = {row["metric"]: row for row in x["summary"]}
        cells = [_ci(s[k]) if k in s else "n/a" for k in
                 ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "auroc")]
        L.append(f"| {m} | " + " | ".join(cells) + " |")
    mf = next(iter(loc["methods"].values()))["mask_fraction"]
    L += ["", f"Mean mask fraction {mf:.3f} (chance level of the pointing game, mass and rank accuracy); "
          "AUROC chance 0.5.", "",
          "Paired differences on the same fakes (bootstrap 95% CI of the mean difference; win = share of fakes "
          "where the first is higher):", "",
          "| comparison | n | pointing game | mass accuracy | rank accuracy | AUROC | AUROC win |",
          "|---|---|---|---|---|---|---|"]
    for k, x in loc.get("paired", {}).items():
        cells = [_ci(x[m], "estimate", "low", "high") for m in
                 ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "auroc")]
        L.append(f"| {k} | {x['n']} | " + " | ".join(cells) + f" | {100 * x['auroc']['win_rate']:.0f}% |")
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-align", type=int, default=240, help="DefocusSynth samples for (a) (real/fake pairs)")
    p.add_argument("--n-splice", type=int, default=160, help="splice-only samples for (b) (half are fakes)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1, help="held-out DefocusSynth seed (default 1)")
    p.add_argument("--n-shap", type=int, default=50, help="draws / steps of the sampling attribution methods")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--n-permutations", type=int, default=1000)
    p.add_argument("--detector", default="bundled-defocus")
    p.add_argument("--rgb-detector", default="bundled-rgb")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="/tmp/defocus_xai_science")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    import torch

    import defocus_xai as dx

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    det = dx.load_detector(args.detector, device=args.device)
    rgb = dx.load_detector(args.rgb_detector, device=args.device)
    warnings.simplefilter("ignore")
    r = {"settings": {**vars(args), "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
                      "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
                      "detector": dict(det.identity), "rgb_detector": dict(rgb.identity)}}
    r["alignment"] = part_alignment(det, rgb, args, out)
    r["localization"] = part_localization(det, rgb, args, out)
    r["seconds"] = round(time.perf_counter() - t0, 1)
    from defocus_xai.pipeline import jsonable

    (out / "science.json").write_text(json.dumps(jsonable(r), indent=2))
    print(tables(r))
    print(f"\n{r['seconds']:.0f} s; numbers in {out / 'science.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
