"""Accuracy of the estimator's recipes against true sigma, and their speed, side by side.

Rows: DefocusSynth reals (v1, or the version given) rendered clean and then given white noise of known
std or a JPEG quality, or rendered with the generator's own sensor noise (and its default JPEG range); layered scenes of exact truth with sparse and dense textures. Per row, the recipes
and "oracle": the guided propagation fed the TRUE sigma at the edges "robust" detects (the ceiling of the
propagation: what better sparse values could reach). Columns: dense MAE
against the per-image constant-median baseline, median Pearson r, sparse median |error| at edge pixels,
and the median sigma of deep-focus reals (max true sigma < 0.5 px; absent on v1). Writes a markdown table.

    python bench/defocus_accuracy.py --n 16 --out /tmp/acc.md
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

import defocus_xai as dx
from defocus_xai.defocus.propagation import guided_propagation
from defocus_xai.defocus.result import DefocusResult
from defocus_xai._images import luma

RECIPES = ("ours", "robust")


def _synth_reals(n, seed, size, version, noise=False, jpeg=None):
    kw = {} if version is None else {"version": version}
    ds = dx.DefocusSynth(n, size=size, seed=seed, fake_fraction=0.0, noise=noise, jpeg=jpeg, **kw)
    items = [ds[i] for i in range(n)]
    return torch.stack([s["image"] for s in items]), torch.stack([s["sigma"] for s in items])


def _jpeg(images, quality):
    out = []
    for im in images:
        arr = (im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        out.append(torch.from_numpy(np.asarray(Image.open(buf).convert("RGB"))).permute(2, 0, 1))
    return torch.stack(out).float() / 255


def _layered(n, seed, cells, size=128, sigmas=(0.5, 1.5, 2.5, 3.5)):
    """Layered scenes of exact truth (textures of ``cells`` px squares, see tests/test_defocus.py)."""
    ims, gts = [], []
    for k in range(n):
        rng = np.random.default_rng(seed + k)

        def texture():
            c = int(rng.integers(*cells))
            t = rng.random((size // c + 2, size // c + 2))
            return 0.15 + 0.7 * np.kron(t, np.ones((c, c)))[:size, :size]

        img = ndimage.gaussian_filter(texture(), sigmas[-1], mode="reflect")
        gt = np.full((size, size), sigmas[-1])
        for (y0, x0, y1, x1), s in zip([(8, 8, 60, 60), (64, 10, 120, 58), (20, 66, 80, 120)], sigmas):
            mask = np.zeros((size, size))
            mask[y0:y1, x0:x1] = 1
            alpha = ndimage.gaussian_filter(mask, s, mode="constant")
            img = alpha * ndimage.gaussian_filter(texture(), s, mode="reflect") + (1 - alpha) * img
            gt[y0:y1, x0:x1] = s
        ims.append(np.repeat(img[None], 3, 0))
        gts.append(gt[None])
    return torch.from_numpy(np.stack(ims)).float(), torch.from_numpy(np.stack(gts)).float()


def metrics(result, sigma) -> dict:
    """Dense MAE / constant-median baseline, median r, sparse median |error|, deep-focus median."""
    d, s, e, t = (x[:, 0].numpy() for x in (result.dense, result.sparse, result.edges, sigma))
    mae, base, rs, sp, deep = [], [], [], [], []
    for i in range(len(d)):
        if t[i].max() < 0.5:
            deep.append(float(np.median(d[i])))
            continue
        mae.append(np.abs(d[i] - t[i]).mean())
        base.append(np.abs(t[i] - np.median(t[i])).mean())
        rs.append(np.corrcoef(d[i].ravel(), t[i].ravel())[0, 1] if d[i].std() > 0 else 0.0)
        if (e[i] > 0).any():
            sp.append(np.median(np.abs(s[i][e[i] > 0] - t[i][e[i] > 0])))
    return {"mae": np.mean(mae), "ratio": np.mean(mae) / np.mean(base), "r": np.median(rs),
            "sparse": np.median(sp), "deep": np.median(deep) if deep else float("nan"),
            "n_deep": len(deep)}


def oracle(result, images, sigma) -> DefocusResult:
    """The guided propagation (default settings) of the true sigma at ``result``'s edges."""
    edges = result.edges > 0
    sparse = sigma * edges
    sigma_max = dx.defocus.EstimatorConfig().sigma_max
    # Guided by the robust recipe's gray (JPEG's luma), whose edges these are.
    dense = guided_propagation(sparse, edges, luma(images)).clamp(0.0, sigma_max)
    return DefocusResult(dense=dense, sparse=sparse, edges=result.edges, edgeless=result.edgeless,
                         config=result.config)


def speed(x=None, repeats=3, batch=32, size=299) -> dict:
    """Median maps/s of each recipe on ``x`` (default: ``batch`` smoothed noise images of ``size`` px,
    an edge-dense worst case: about a quarter of the pixels are edges), runs interleaved."""
    if x is None:
        x = torch.nn.functional.avg_pool2d(torch.rand(batch, 3, size, size), 5, 1, 2)
    out = {r: [] for r in RECIPES}
    for r in RECIPES:
        dx.estimate_defocus(x[:4], size=None, recipe=r)
    for _ in range(repeats):
        for r in RECIPES:       # interleaved, so load changes hit both
            t0 = time.perf_counter()
            dx.estimate_defocus(x, size=None, recipe=r)
            out[r].append(len(x) / (time.perf_counter() - t0))
    return {r: float(np.median(v)) for r, v in out.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="scenes per row")
    ap.add_argument("--seed", type=int, default=150, help="data seed (development: 100-199)")
    ap.add_argument("--version", default=None, help="DefocusSynth version (default: the library's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    t_start = time.time()
    images, sigma = _synth_reals(args.n, args.seed, 128, args.version)
    rows = [("clean", images, sigma),
            ("sensor noise (DefocusSynth)", _synth_reals(args.n, args.seed, 128, args.version, noise=True)[0],
             sigma),
            ("sensor noise + JPEG 75-95 (DefocusSynth defaults)",
             _synth_reals(args.n, args.seed, 128, args.version, noise=True, jpeg=(75, 95))[0], sigma)]
    gen = torch.Generator().manual_seed(args.seed)
    for std in (0.005, 0.01, 0.02):
        noisy = (images + std * torch.randn(images.shape, generator=gen)).clamp(0, 1)
        rows.append((f"noise std {std}", noisy, sigma))
    for q in (95, 75, 50):
        rows.append((f"JPEG q{q}", _jpeg(images, q), sigma))
    for cells in ((8, 13), (3, 7)):
        rows.append((f"layered, texture cells {cells[0]}-{cells[1] - 1} px", *_layered(args.n, args.seed, cells)))
    lines = ["| data | recipe | dense MAE (px) | MAE / constant | median r | sparse median err (px) "
             "| deep-focus median sigma (n) |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, ims, sig in rows:
        results = {r: dx.estimate_defocus(ims, size=None, recipe=r) for r in RECIPES}
        results["oracle"] = oracle(results["robust"], ims, sig)
        for recipe, res in results.items():
            m = metrics(res, sig)
            deep = f"{m['deep']:.2f} ({m['n_deep']})" if m["n_deep"] else "-"
            lines.append(f"| {name} | {recipe} | {m['mae']:.3f} | {m['ratio']:.3f} | {m['r']:.3f} "
                         f"| {m['sparse']:.3f} | {deep} |")
    sp, sp_reals = speed(), speed(images)
    lines += ["", "| speed (CPU) | maps/s, batch 32 of 299 px noise "
              f"| maps/s, the {args.n} clean reals (128 px) |", "|---|---:|---:|"]
    lines += [f"| {r} | {v:.1f} | {sp_reals[r]:.1f} |" for r, v in sp.items()]
    head = [f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
            f"- command: `python bench/defocus_accuracy.py {' '.join(argv or sys.argv[1:])}`",
            f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads",
            f"- DefocusSynth reals: n={args.n}, seed={args.seed}, 128 px, version "
            f"{args.version or 'default'}; bench time {time.time() - t_start:.0f} s", ""]
    text = "\n".join(head + lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
