"""Scientific results on held-out DefocusSynth data, with both attribution references and every control.

(a) Shapley alignment of the defocus detector versus the RGB detector, once with an all-zero reference and
    once with a data reference (10 real training images, the paper's choice): per fake, the overlap of the
    ``|fake - real|`` and ``|attribution|`` histograms over the fake's defocus values, beside its three
    controls (permutation, map value, uniform), grouped by source id, per family and overall.
(b) Localization on the splice family's ground-truth masks: shap_gradient of both detectors under both
    references, saliency and occlusion of the defocus detector, and random attributions.
(c) The paper's settings: the measured effect of each difference between our defaults and the paper's code
    (local-variance border, alignment eps, channel-0 RGB, the 224 wrapper, frame- vs video-level tests, PIL
    resizing) on the reference frames (``../shared/reference_maps``, when present) and on the stores of (a).

Usage::

    OMP_NUM_THREADS=1 python bench/science.py --out /tmp/science          # ~10 min on 2 busy CPU cores
    python bench/science.py --n-align 480 --n-splice 400 --device cuda --out /tmp/science

Writes ``<out>/science.json`` and prints the tables of ``bench/results_science.md``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from science_settings import settings_effects, settings_table  # noqa: E402  (bench/science_settings.py)

BACKGROUNDS = ("zeros", "data")
CONTROLS = ("permutation", "map_value", "uniform")
LOC_METRICS = ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy", "auroc")


def _ci(d, est="mean", lo="ci_low", hi="ci_high", nd=3):
    return f"{d[est]:.{nd}f} [{d[lo]:.{nd}f}, {d[hi]:.{nd}f}]"


def _export(det, rgb, data, out: Path, background: str, args, methods=("shap_gradient",)):
    import defocus_xai as dx

    extra = {}
    if background == "data":  # the paper's reference: real images of the detectors' training data (seed 0)
        extra["background_data"] = dx.DefocusSynth(40, size=args.size, seed=0)
    return dx.export_attributions(det, data, out, methods=methods, rgb_detector=rgb, background=background,
                                  n_samples=args.n_shap, seed=0, device=args.device, progress=not args.quiet,
                                  resume=True, batch_size=16, **extra)


def part_alignment(det, rgb, args, out: Path) -> dict:
    import defocus_xai as dx
    from defocus_xai import pipeline as pl
    ds = dx.DefocusSynth(args.n_align, size=args.size, seed=args.seed)
    settings = pl.PipelineSettings(n_boot=args.n_boot, n_permutations=args.n_permutations, seed=0, max_examples=1)
    res = {}
    for bg in BACKGROUNDS:
        t = time.perf_counter()
        arr, _ = pl.open_arrays(_export(det, rgb, ds, out / f"align_{bg}", bg, args))
        pairs, _ = pl.store_pairs(arr)
        block = {"export_seconds": round(time.perf_counter() - t, 1), "n_pairs": int(len(pairs)),
                 "reference": pl.attribution_reference(arr, "defocus_shaps")}
        r = pl.stage_alignment(arr, settings, pairs=pairs)
        r.close()
        block["all"], block["per_family"] = r.numbers, {}
        fam_p = arr["families"].astype(str)[pairs[:, 0]]
        for f in dict.fromkeys(fam_p):
            r = pl.stage_alignment(arr, settings, pairs=pairs[fam_p == f])
            r.close()
            block["per_family"][f] = r.numbers
        res[bg] = block
    from defocus_xai.detect import metrics_by_group

    res["detection_auc"] = metrics_by_group(arr["labels"].astype(int), arr["scores"], arr["families"].astype(str)) \
        .reset_index()[["group", "roc_auc"]].to_dict("records")
    return res


def part_localization(det, rgb, args, out: Path) -> dict:
    import defocus_xai as dx
    from defocus_xai import analysis as A
    from defocus_xai import pipeline as pl
    from defocus_xai.store import attribution_key, load_store_arrays

    full = dx.DefocusSynth(args.n_splice, size=args.size, seed=args.seed, families=("splice",))
    fakes = [full[i] for i in range(len(full)) if int(full[i]["label"]) == 1 and float(full[i]["mask"].sum()) > 0]
    attrs, t = {}, time.perf_counter()
    for bg in BACKGROUNDS:
        methods = ("shap_gradient", "saliency", "occlusion") if bg == "data" else ("shap_gradient",)
        arr = load_store_arrays(_export(det, rgb, fakes, out / f"splice_{bg}", bg, args, methods=methods))
        attrs[f"defocus shap_gradient, {bg} ref."] = arr[attribution_key("defocus", "shap_gradient")]
        attrs[f"rgb shap_gradient, {bg} ref."] = A.reduce_rgb(arr["rgb_shaps"], grid=arr["dmaps"].shape[1:])
        if bg == "data":
            attrs["defocus saliency"] = arr[attribution_key("defocus", "saliency")]
            attrs["defocus occlusion"] = arr[attribution_key("defocus", "occlusion")]
    r = pl.stage_localization(arr, pl.PipelineSettings(n_boot=args.n_boot, seed=0), attributions=attrs)
    r.close()
    per = {k: A.localization_scores(v, arr["gt_masks"], n_boot=10, seed=0).per_sample.set_index("sample")
           for k, v in attrs.items()}
    paired = {}
    for a, b in (("defocus shap_gradient, data ref.", "rgb shap_gradient, data ref."),
                 ("defocus shap_gradient, data ref.", "defocus shap_gradient, zeros ref."),
                 ("defocus shap_gradient, zeros ref.", "rgb shap_gradient, zeros ref.")):
        common = per[a].index.intersection(per[b].index)
        row = {"n": int(len(common))}
        for m in LOC_METRICS:
            d = per[a].loc[common, m].to_numpy() - per[b].loc[common, m].to_numpy()
            row[m] = {**A.bootstrap_mean_ci(d, n_boot=args.n_boot, seed=0).to_dict(), "win_rate": float(np.mean(d > 0))}
        paired[f"{a} - {b}"] = row
    return {"n_fakes": int(len(fakes)), "export_seconds": round(time.perf_counter() - t, 1),
            "mean_fake_score": float(np.mean(arr["scores"])), "frac_called_fake": float(np.mean(arr["scores"] >= 0.5)),
            "methods": r.numbers, "paired": paired}


def _align_rows(L: list, name: str, x: dict, label: str) -> None:
    d = x.get("control_details") or {}
    cells = [f"{d[c]['mean_overlap']:.3f}" + ("*" if d[c].get("beaten") else "") if c in d else "n/a" for c in CONTROLS]
    L.append(f"| {label} | {name} | {x['n']} ({x['n_units']}) | {_ci(x, 'mean_overlap')} | "
             f"{_ci(x, 'mean_kl', 'kl_ci_low', 'kl_ci_high')} | " + " | ".join(cells)
             + f" | {'yes' if x['beats_all_controls'] else 'no'} |")


def tables(r: dict) -> str:
    a, L = r["alignment"], []
    L += ["### (a) Shapley alignment, both references", "",
          "Mean overlap over fakes [bootstrap 95% CI over sources]; n (independent units); controls' mean overlaps, "
          "`*` = beaten (higher mean, one-sided p < 0.05 on per-unit differences).", "",
          "| reference, family | detector | n (units) | overlap | KL | permutation | map value | uniform | beats all |",
          "|---|---|---|---|---|---|---|---|---|"]
    for bg in BACKGROUNDS:
        for fam, blk in [("all", a[bg]["all"])] + list(a[bg]["per_family"].items()):
            for name in ("defocus", "rgb"):
                _align_rows(L, name, blk[name], f"{bg}, {fam}")
    L += ["", "Paired difference defocus - RGB on the same fakes (bootstrap 95% CI; win = share where defocus is "
          "higher):", "", "| reference | family | n | overlap difference | win | KL difference |",
          "|---|---|---|---|---|---|"]
    for bg in BACKGROUNDS:
        for fam, blk in [("all", a[bg]["all"])] + list(a[bg]["per_family"].items()):
            d = blk.get("paired_difference")
            if d:
                L.append(f"| {bg} | {fam} | {d['n']} | {_ci(d['overlap'], 'estimate', 'low', 'high')} | "
                         f"{100 * d['overlap']['win_rate']:.0f}% | {_ci(d['kl'], 'estimate', 'low', 'high')} |")
    loc = r["localization"]
    L += ["", "### (b) Localization on splice masks", "",
          f"{loc['n_fakes']} splice fakes ({100 * loc['frac_called_fake']:.0f}% called fake); mean [bootstrap 95% CI].",
          "", "| attribution | pointing game | mass accuracy | rank accuracy | AUROC |", "|---|---|---|---|---|"]
    for m, x in loc["methods"].items():
        s = {row["metric"]: row for row in x["summary"]}
        L.append(f"| {m} | " + " | ".join(_ci(s[k]) if k in s else "n/a" for k in LOC_METRICS) + " |")
    mf = next(iter(loc["methods"].values()))["mask_fraction"]
    L += ["", f"Mean mask fraction {mf:.3f} (chance of pointing game, mass and rank accuracy); AUROC chance 0.5.", "",
          "| comparison | n | pointing game | mass accuracy | rank accuracy | AUROC | AUROC win |",
          "|---|---|---|---|---|---|---|"]
    for k, x in loc["paired"].items():
        L.append(f"| {k} | {x['n']} | " + " | ".join(_ci(x[m], "estimate", "low", "high") for m in LOC_METRICS)
                 + f" | {100 * x['auroc']['win_rate']:.0f}% |")
    if r.get("settings_effects"):
        L += ["", "### (c) The paper's settings: measured effects", "", settings_table(r["settings_effects"])]
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-align", type=int, default=240, help="DefocusSynth samples for (a) (real/fake pairs)")
    p.add_argument("--n-splice", type=int, default=160, help="splice-only samples for (b) (half are fakes)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1, help="held-out DefocusSynth seed (default 1)")
    p.add_argument("--n-shap", type=int, default=50, help="draws of the sampling attribution methods")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--n-permutations", type=int, default=1000)
    p.add_argument("--parts", default="alignment,localization,settings")
    p.add_argument("--detector", default="bundled-defocus")
    p.add_argument("--rgb-detector", default="bundled-rgb")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="/tmp/defocus_xai_science")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))

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
                      "load_start": os.getloadavg()[0], "detector": dict(det.identity),
                      "rgb_detector": dict(rgb.identity)}}
    timings = {}
    for name, fn in (("alignment", part_alignment), ("localization", part_localization)):
        if name in parts:
            t = time.perf_counter()
            r[name] = fn(det, rgb, args, out)
            timings[name] = round(time.perf_counter() - t, 1)
    if "settings" in parts:
        t = time.perf_counter()
        r["settings_effects"] = settings_effects(det, args, out)
        timings["settings"] = round(time.perf_counter() - t, 1)
    r["timings"], r["seconds"] = timings, round(time.perf_counter() - t0, 1)
    r["settings"]["load_end"] = os.getloadavg()[0]
    from defocus_xai.pipeline import jsonable

    (out / "science.json").write_text(json.dumps(jsonable(r), indent=2))
    if "alignment" in r and "localization" in r:
        print(tables(r))
    elif "settings_effects" in r:
        print(settings_table(r["settings_effects"]))
    print(f"\n{r['seconds']:.0f} s ({timings}); numbers in {out / 'science.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
