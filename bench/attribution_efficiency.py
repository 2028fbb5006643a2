"""Accuracy of expected gradients per model pass: the stratified sampler versus shap's random draws.

For each setting, ``shap_gradient`` (batched engine, 10 background maps) runs with ``sampler="stratified"``
(the default) and ``sampler="shap"`` (shap GradientExplainer's own draws) at several pass counts
(``n_samples``), a few repeats with different seeds, interleaved. The error of a run is the relative L2
error against a converged reference (a long stratified run with a seed no repeat uses), per map, averaged
over the maps; the tables report the median over repeats. From the two curves, the pass count that shap's
sampling needs to reach our error at a given pass count is read off shap's curve on log-log axes
(interpolated; extrapolated with a least-squares line through shap's points when beyond them), and from
the two errors at equal passes by the ``P ** -0.5`` law of independent random draws.

Settings:

* ``bundled``: the bundled detector (``load_detector("bundled-defocus")``, 128 x 128 maps), maps of a few
  DefocusSynth images, background the maps of 10 other images;
* ``xception``: a reference-layout detector (``DefocusDetector("legacy_xception", map_channels=3)`` on
  299 x 299 maps, random weights), 2 images, 10 passes, 2 repeats: one pass costs about 1.7 s on 2 busy
  cores, so no converged reference fits the budget; the error is estimated from the spread of the repeats
  (the variance across independent runs, which needs no reference) and the bundled setting checks that
  estimate against its reference.

Results (with machine, command and load) are written to ``bench/results_attribution.md``.

Usage::

    OMP_NUM_THREADS=2 python bench/attribution_efficiency.py
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

SAMPLERS = ("stratified", "shap")
OUT = Path(__file__).with_name("results_attribution.md")


def _maps(det, n: int, size: int, seed: int) -> torch.Tensor:
    """Defocus maps of ``n`` DefocusSynth images (rendered at ``size``) through ``det``'s estimator."""
    from defocus_xai.data import DefocusSynth

    ds = DefocusSynth(n, size=size, seed=seed)
    images = torch.stack([torch.as_tensor(ds[i]["image"]).float() for i in range(n)])
    with torch.no_grad():
        return det.map_from_images(images).float()


def relative_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    """``||a - ref|| / ||ref||`` per sample, averaged over the samples.

    Examples
    --------
    >>> round(relative_error(torch.ones(2, 1, 2, 2) * 1.1, torch.ones(2, 1, 2, 2)), 6)
    0.1
    """
    a, ref = a.double().flatten(1), ref.double().flatten(1)
    return float(((a - ref).norm(dim=1) / ref.norm(dim=1)).mean())


def spread_error(runs: list[torch.Tensor], truth_sq: torch.Tensor) -> float:
    """The RMS relative error of one run, from the spread of independent runs (no reference needed):
    ``sqrt(sum of per-element variances) / ||truth||`` per sample (``truth_sq``: squared norms), averaged.

    Examples
    --------
    >>> runs = [torch.ones(1, 4) * 0.9, torch.ones(1, 4) * 1.1]
    >>> round(spread_error(runs, torch.tensor([4.0])), 3)
    0.141
    """
    a = torch.stack([r.double().flatten(1) for r in runs])
    return float((a.var(0).sum(1) / truth_sq).sqrt().mean())


def attribution_runs(det, x, bg, passes, repeats: int, eval_batch_size: int) -> dict:
    """``{sampler: {passes: [attributions per repeat]}}``; samplers and pass counts interleaved, repeat
    ``r`` seeded with ``r``."""
    from defocus_xai.explain import attribute

    runs = {s: {p: [] for p in passes} for s in SAMPLERS}
    for rep in range(repeats):
        for p in passes:
            for s in SAMPLERS:
                runs[s][p].append(attribute(det, x, background=bg, n_samples=p, seed=rep, sampler=s,
                                            eval_batch_size=eval_batch_size))
    return runs


def _truth_sq(runs: dict, p: int) -> torch.Tensor:
    """Squared norm of the expectation per sample from all runs at ``p`` passes (unbiased: the mean's
    squared norm less its variance)."""
    per = {s: torch.stack([a.double().flatten(1) for a in runs[s][p]]) for s in SAMPLERS}
    mean = torch.stack([v.mean(0) for v in per.values()]).mean(0)
    var_of_mean = sum(v.var(0).sum(1) / v.shape[0] for v in per.values()) / len(per) ** 2
    return mean.pow(2).sum(1) - var_of_mean


def passes_to_match(passes, errors, target: float) -> tuple[float, str]:
    """The pass count at which a curve (``errors`` at ``passes``) reaches ``target``, on log-log axes.

    Examples
    --------
    >>> round(passes_to_match([100, 400], [0.2, 0.1], 0.1)[0])
    400
    >>> round(passes_to_match([100, 400], [0.2, 0.1], 0.05)[0])
    1600
    """
    lp, le, lt = np.log(np.asarray(passes, float)), np.log(np.asarray(errors, float)), math.log(target)
    for i in range(len(lp) - 1):
        lo, hi = sorted((le[i], le[i + 1]))
        if lo <= lt <= hi and le[i] != le[i + 1]:
            f = (lt - le[i]) / (le[i + 1] - le[i])
            return float(math.exp(lp[i] + f * (lp[i + 1] - lp[i]))), "interpolated"
    slope, icept = np.polyfit(lp, le, 1)
    return float(math.exp((lt - icept) / slope)), f"extrapolated (log-log slope {slope:.2f})"


def run_setting(name: str, det, x, bg, passes, repeats: int, ref_passes: int, eval_batch_size: int) -> dict:
    """Error curves of both samplers; ``ref_passes=0``: no reference run, errors from the repeats' spread."""
    from defocus_xai.explain import attribute

    t0, c0 = time.perf_counter(), time.process_time()
    ref = None
    if ref_passes:
        ref = attribute(det, x, background=bg, n_samples=ref_passes, seed=10 ** 6, sampler="stratified",
                        eval_batch_size=eval_batch_size)
    t_ref = time.perf_counter() - t0
    runs = attribution_runs(det, x, bg, passes, repeats, eval_batch_size)
    truth_sq = {p: (ref.double().flatten(1).pow(2).sum(1) if ref is not None else _truth_sq(runs, p)) for p in passes}
    spread = {s: [spread_error(runs[s][p], truth_sq[p]) for p in passes] for s in SAMPLERS}
    if ref is not None:
        curves = {s: {p: [relative_error(a, ref) for a in runs[s][p]] for p in passes} for s in SAMPLERS}
        med = {s: [statistics.median(curves[s][p]) for p in passes] for s in SAMPLERS}
    else:
        curves, med = {s: {p: [] for p in passes} for s in SAMPLERS}, spread
    match = {}
    for i, (p, e) in enumerate(zip(passes, med["stratified"])):
        need, how = passes_to_match(passes, med["shap"], e) if len(passes) > 1 else (math.nan, "-")
        iid = p * (spread["shap"][i] / spread["stratified"][i]) ** 2  # random draws: error ~ P ** -0.5
        match[p] = (need, need / p, how, iid / p)
    res = {"name": name, "passes": list(passes), "repeats": repeats, "ref_passes": ref_passes, "n": x.shape[0],
           "k": bg.shape[0], "shape": tuple(x.shape[1:]), "curves": curves, "median": med, "spread": spread,
           "match": match, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
           "ref_wall_s": t_ref}
    print(f"[{name}] done in {res['wall_s']:.0f} s wall, {res['cpu_s']:.0f} s CPU", file=sys.stderr)
    return res


def bundled_setting(args) -> dict:
    from defocus_xai.detect.checkpoints import load_detector

    det = load_detector("bundled-defocus", device="cpu").eval()
    size = det.input_size or 128
    x = _maps(det, args.n_maps, size, seed=3)
    bg = _maps(det, 10, size, seed=4)
    return run_setting("bundled-defocus", det, x, bg, args.passes, args.repeats, args.ref_passes, 64)


def xception_setting(args) -> dict:
    from defocus_xai.detect import DefocusDetector

    torch.manual_seed(0)
    det = DefocusDetector("legacy_xception", estimator={"size": 299}, map_channels=3).eval()
    x = _maps(det, 2, 299, seed=3)
    bg = _maps(det, 10, 299, seed=4)
    return run_setting("legacy_xception 299 (random weights)", det, x, bg, args.x_passes, args.x_repeats,
                       args.x_ref_passes, 16)


def _table(res: dict) -> list[str]:
    lines = ["| passes | stratified: error | runs | spread | shap draws: error | runs | spread | "
             "shap passes for our error (curve) | ratio | ratio (P^-0.5 law) |", "|---" * 10 + "|"]
    for i, p in enumerate(res["passes"]):
        runs = {s: ", ".join(f"{e:.3f}" for e in res["curves"][s][p]) or "-" for s in SAMPLERS}
        need, ratio, how, iid = res["match"][p]
        curve = "-" if math.isnan(need) else f"{need:.0f} ({how}) | {ratio:.1f}x"
        curve = curve if "|" in curve else "- | -"
        lines.append(f"| {p} | {res['median']['stratified'][i]:.4f} | {runs['stratified']} | "
                     f"{res['spread']['stratified'][i]:.4f} | {res['median']['shap'][i]:.4f} | {runs['shap']} | "
                     f"{res['spread']['shap'][i]:.4f} | {curve} | {iid:.1f}x |")
    return lines


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_results(results: list[dict], args, load: tuple, load_end: tuple) -> None:
    lines = ["# Attribution accuracy per model pass (`bench/attribution_efficiency.py`)", "",
             f"Machine: {platform.machine()} {_cpu_name()}, {os.cpu_count()} CPUs (shared with "
             f"other jobs), Python {platform.python_version()}, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), CPU. Load average (1, 5, 15 min) at start "
             f"{', '.join(f'{v:.2f}' for v in load)}, at end {', '.join(f'{v:.2f}' for v in load_end)}.", "",
             "Command:", "", f"    OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python "
             f"bench/attribution_efficiency.py {' '.join(sys.argv[1:])}".rstrip(), "",
             "`shap_gradient`, batched engine; error = relative L2 error against a converged stratified "
             "reference (its own seed), per map, averaged over the maps; median over repeats (seeds "
             "0, 1, ...), the runs listed. \"spread\": the RMS relative error of one run estimated without "
             "a reference, from the variance across the repeats (a check of the reference, and the only "
             "measure where no reference run fits the time budget). \"shap passes for our error (curve)\": the "
             "pass count at which shap's sampling reaches the stratified error of that row (log-log "
             "interpolation, or extrapolation along a least-squares line through shap's points); \"ratio "
             "(P^-0.5 law)\": the same from the spreads at equal passes, as (spread shap / spread "
             "stratified)^2, since the error of independent draws falls as P^-0.5. The reference's own error is "
             "included in the small errors, so curve ratios at large pass counts are conservative.", ""]
    for r in results:
        ref = f"reference {r['ref_passes']} stratified passes" if r["ref_passes"] else \
            "no reference run (errors from the spread of the repeats)"
        lines += [f"## {r['name']}: {r['n']} maps {r['shape']}, {r['k']} background maps, {ref}, "
                  f"{r['repeats']} repeats", "",
                  f"Time: {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU (reference {r['ref_wall_s']:.0f} s "
                  "wall).", ""] + _table(r) + [""]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}", file=sys.stderr)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-maps", type=int, default=4)
    p.add_argument("--passes", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ref-passes", type=int, default=4000)
    p.add_argument("--x-passes", type=int, nargs="+", default=[10])
    p.add_argument("--x-repeats", type=int, default=2)
    p.add_argument("--x-ref-passes", type=int, default=0, help="0: no reference run, errors from the spread")
    p.add_argument("--skip-xception", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    results = [bundled_setting(args)]
    if not args.skip_xception:
        results.append(xception_setting(args))
    write_results(results, args, load, os.getloadavg())
    for r in results:
        print("\n".join(_table(r)))


if __name__ == "__main__":
    main()
