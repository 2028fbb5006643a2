"""Where the robust recipe's dense error on DefocusSynth reals comes from: scenes, regions, edges, bokeh.

Issue 14 asks for a dense MAE of at most 0.7 x the per-image constant-median baseline. This script splits
the error that stands between the recipe and that target, on reals rendered with the generator's
default sensor noise and JPEG (the target's row; development seeds only):

1. per scene: MAE, baseline, ratio and share of the summed MAE (the target is a ratio of sums);
2. per region of true sigma: the dense map's bias, the density of edge pixels and the sparse values'
   median there (a blurred region holds few edges, and those it holds may read sharp);
3. counterfactuals through the recipe's own propagation: the truth substituted at subsets of its edges
   (with its weights), and ideal weights (zero at the edges near a true blur change; zero at the
   edges whose value is wrong): how far better values, or better weights alone, could take the map;
4. bokeh: a small object behind the focus renders as the aperture's own shape, whose rim is far sharper
   than the blur's sigma: the sparse value the recipe reads on such a disc;
5. one texture under one uniform blur (no occlusion, no noise): what the recipe reads where neighbouring
   edges of a dense texture interfere at large blur (a blurred fine texture looks like a less blurred
   coarser one), with a Gaussian lens and with a disc aperture.

    python bench/defocus_error_budget.py --seed 150 --n 16 --out /tmp/budget.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch
from scipy import ndimage

import defocus_xai as dx
from defocus_xai.data.synth.psf import SIGMA_AA, Aperture
from defocus_xai.data.synth.vector import _vector_texture
from defocus_xai.defocus import EstimatorConfig
from defocus_xai.defocus.estimator import edge_values
from defocus_xai.defocus.propagation import guided_propagation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from defocus_accuracy import _synth_reals  # noqa: E402

#: Regions of true sigma (px) the dense bias is split by.
BINS = ((0.0, 0.5), (0.5, 1.5), (1.5, 2.5), (2.5, 6.0))
#: A pixel lies near a blur change when the true sigma varies by more than this (px) in its 5 x 5 window.
STEP_PX = 0.5
#: An edge value is wrong, for the perfect outlier test, when it is off by more than this in log (x 1.5).
OUTLIER_LOG = 0.4


def _ratio(dense: np.ndarray, truth: np.ndarray, keep: np.ndarray) -> float:
    """Summed MAE over summed constant-median MAE of the scenes ``keep`` (``(N, H, W)`` maps)."""
    mae = np.abs(dense - truth)[keep].mean((1, 2))
    base = np.array([np.abs(t - np.median(t)).mean() for t in truth[keep]])
    return float(mae.sum() / base.sum())


def _median_r(dense, truth, keep) -> float:
    return float(np.median([np.corrcoef(d.ravel(), t.ravel())[0, 1] if d.std() > 0 else 0.0
                            for d, t in zip(dense[keep], truth[keep])]))


def _sparse_error(sparse, edges, truth, keep) -> float:
    """Median over the scenes of the median |sparse - truth| at their edge pixels."""
    return float(np.median([np.median(np.abs(s[e] - t[e])) for s, e, t in zip(sparse[keep], edges[keep],
                                                                               truth[keep]) if e.any()]))


def _deep_median(dense, visible) -> str:
    deep = [float(np.median(d)) for d in dense[~visible]]
    return f"{np.median(deep):.2f} px (n={len(deep)})" if deep else "- (none)"


def per_scene(dense, truth, visible):
    rows = []
    maes = np.abs(dense - truth).mean((1, 2))
    bases = np.array([np.abs(t - np.median(t)).mean() for t in truth])
    total = maes[visible].sum()
    for i in np.nonzero(visible)[0]:
        bias = []
        for lo, hi in BINS:
            m = (truth[i] >= lo) & (truth[i] < hi)
            bias.append(f"{(dense[i] - truth[i])[m].mean():+.2f} ({m.mean():.0%})" if m.any() else "-")
        rows.append(f"| {i} | {np.median(truth[i]):.2f} | {maes[i]:.3f} | {bases[i]:.3f} | "
                    f"{maes[i] / bases[i]:.2f} | {maes[i] / total:.0%} | " + " | ".join(bias) + " |")
    return rows


def regions(dense, sparse, edges, truth, visible):
    """Edge density and sparse median per true-sigma region, pooled over the scenes with visible blur."""
    rows = []
    for lo, hi in BINS:
        m = (truth >= lo) & (truth < hi) & visible[:, None, None]
        if not m.any():
            continue
        e = m & edges
        rows.append(f"| {lo}-{hi} | {m.sum()} | {e.sum() / m.sum():.3f} | {np.median(truth[m]):.2f} | "
                    f"{np.median(sparse[e]) if e.any() else float('nan'):.2f} | {np.median(dense[m]):.2f} |")
    return rows


def counterfactuals(images, sigma, keep):
    """Dense / constant ratio of the recipe's own propagation fed other values or weights at its edges."""
    cfg = EstimatorConfig(recipe="robust", size=None)
    with torch.no_grad():
        _, gray, values, weights, edges = edge_values(cfg, images)
    t = sigma[:, 0].numpy()
    near = torch.from_numpy(np.stack([ndimage.maximum_filter(x, 5) - ndimage.minimum_filter(x, 5)
                                      for x in t]) > STEP_PX)[:, None] & edges
    wrong = edges & ((values.clamp_min(1e-6) / sigma).log().abs() > OUTLIER_LOG)
    ones = edges.to(values.dtype)

    def run(v, w):
        d = guided_propagation(v * edges, w, gray, fill_std=cfg.fill_std, radius=cfg.guided_radius,
                               eps=cfg.guided_eps, subsample=cfg.subsample).clamp(0.0, cfg.sigma_max)
        return _ratio(d[:, 0].numpy(), t, keep)

    zero = torch.zeros_like(weights)
    cases = [("the recipe's values and weights (the recipe itself)", values, weights),
             ("truth at every edge, weight 1 (the accuracy bench's oracle)", sigma, ones),
             ("truth at every edge, the recipe's weights", sigma, weights),
             ("truth at edges of true sigma < 1.5 px", torch.where(sigma < 1.5, sigma, values), weights),
             ("truth at edges of true sigma >= 1.5 px", torch.where(sigma >= 1.5, sigma, values), weights),
             (f"truth at edges near a blur change (> {STEP_PX} px in 5 x 5)", torch.where(near, sigma, values),
              weights),
             ("truth at edges away from blur changes", torch.where(~near, sigma, values), weights),
             ("a perfect boundary weight: weight 0 at the edges near a blur change", values,
              torch.where(near, zero, weights)),
             (f"a perfect outlier test: weight 0 where abs(log(value / truth)) > {OUTLIER_LOG}", values,
              torch.where(wrong, zero, weights))]
    return [f"| {name} | {run(v, w):.3f} |" for name, v, w in cases]


def bokeh(sigmas=(2.0, 3.0, 4.0), radius=1.5, size=96):
    """The sparse sigma the recipe reads on a small bright disc blurred by a disc aperture of ``sigma``."""
    rows = []
    ss = 8
    yy, xx = (np.mgrid[:size * ss, :size * ss] + 0.5) / ss - size / 2
    obj = ((yy ** 2 + xx ** 2) < radius ** 2).astype(np.float64).reshape(size, ss, size, ss).mean((1, 3))
    for s in sigmas:
        k = Aperture().kernel(s)
        img = 0.2 + 0.6 * ndimage.convolve(obj, k, mode="constant") / max(ndimage.convolve(obj, k).max(), 1e-9)
        x = torch.from_numpy(np.repeat(img[None, None], 3, 1)).float()
        res = dx.estimate_defocus(x, size=None, recipe="robust")
        e = res.edges[0, 0] > 0
        read = float(res.sparse[0, 0][e].median()) if e.any() else float("nan")
        rows.append(f"| {s:.1f} | {2 * s:.1f} | {read:.2f} | {int(e.sum())} |")
    return rows


def uniform_textures(kinds=("leaves", "fine_leaves", "spots", "stripes"), lenses=(1.0, 2.0, 3.0, 4.0),
                     seeds=(0, 1, 2), size=128):
    """Median sparse sigma the recipe reads on one DefocusSynth 2.0 texture under one uniform lens blur
    (Gaussian or disc aperture; total truth ``sqrt(lens^2 + SIGMA_AA^2)``), clean, without occlusion."""
    pad = 16
    Y, X = (np.mgrid[:size + 2 * pad, :size + 2 * pad] + 0.5) / size
    rows = []
    for kind in kinds:
        for lens in lenses:
            cells = []
            for psf in ("gauss", "disc"):
                reads = []
                for seed in seeds:
                    tex = _vector_texture(np.random.default_rng(seed), kind, X, Y, size=size, aa=SIGMA_AA)
                    if psf == "gauss":
                        blurred = ndimage.gaussian_filter(tex, (0, lens, lens), mode="reflect")
                    else:
                        k = Aperture().kernel(lens)
                        blurred = np.stack([ndimage.convolve(c, k, mode="reflect") for c in tex])
                    x = torch.from_numpy(np.ascontiguousarray(blurred[:, pad:-pad, pad:-pad])[None]).float()
                    res = dx.estimate_defocus(x, size=None, recipe="robust")
                    e = res.edges[0, 0] > 0
                    if e.any():
                        reads.append(float(res.sparse[0, 0][e].median()))
                cells.append(f"{np.mean(reads):.2f}" if reads else "-")
            rows.append(f"| {kind} | {np.hypot(lens, SIGMA_AA):.2f} | " + " | ".join(cells) + " |")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="scenes")
    ap.add_argument("--seed", type=int, default=150, help="data seed (development: 100-199)")
    ap.add_argument("--version", default="2.0", help="DefocusSynth version")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    t0 = time.time()
    _, sigma = _synth_reals(args.n, args.seed, 128, args.version)
    images = _synth_reals(args.n, args.seed, 128, args.version, noise=True, jpeg=(75, 95))[0]
    result = dx.estimate_defocus(images, size=None, recipe="robust")
    dense, sparse, truth = (x[:, 0].numpy() for x in (result.dense, result.sparse, sigma))
    edges = result.edges[:, 0].numpy() > 0
    visible = truth.max((1, 2)) >= 0.5
    if not visible.any():
        raise SystemExit(f"no scene of seed {args.seed} has visible blur (max true sigma >= 0.5 px): raise --n")
    lines = [f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             f"- command: `python bench/defocus_error_budget.py {' '.join(argv or sys.argv[1:])}`",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
             f"torch {torch.__version__}",
             f"- DefocusSynth {args.version} reals, seed {args.seed}, n={args.n}, 128 px, sensor noise + JPEG "
             f"75-95; {int(visible.sum())} with visible blur (max true sigma >= 0.5 px)",
             f"- recipe robust, on the scenes with visible blur: dense MAE / constant "
             f"{_ratio(dense, truth, visible):.3f}, median Pearson r {_median_r(dense, truth, visible):.3f}, "
             f"sparse median |error| {_sparse_error(sparse, edges, truth, visible):.3f} px; deep-focus "
             f"scenes' median sigma {_deep_median(dense, visible)}", "",
             "| scene | true median | MAE | constant | ratio | share of summed MAE | bias < 0.5 px (area) "
             "| bias 0.5-1.5 | bias 1.5-2.5 | bias >= 2.5 |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += per_scene(dense, truth, visible)
    lines += ["", "| true sigma (px) | pixels | edge density | true median | sparse median at its edges "
              "| dense median |", "|---|---:|---:|---:|---:|---:|"]
    lines += regions(dense, sparse, edges, truth, visible)
    lines += ["", "| the recipe's guided propagation fed | dense MAE / constant |", "|---|---:|"]
    lines += counterfactuals(images, sigma, visible)
    lines += ["", f"| disc aperture sigma (px) | disc radius (px) | robust reads on a {1.5 * 2:.0f} px "
              "bright object behind focus (median, px) | edge pixels |", "|---:|---:|---:|---:|"]
    lines += bokeh()
    lines += ["", "| texture (one layer, clean) | true sigma (px) | robust reads, Gaussian lens (median, px) "
              "| disc aperture |", "|---|---:|---:|---:|"]
    lines += uniform_textures()
    lines += ["", f"bench time {time.time() - t0:.0f} s"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
