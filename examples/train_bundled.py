"""Train the bundled detectors (``bundled-defocus``, ``bundled-rgb``) and the true-sigma oracle on DefocusSynth.

Recipe (what ``load_detector("bundled-...")`` ships):

* data: DefocusSynth at 128 x 128, training seed 0 (``--n-train`` samples, real/fake pairs of one scene,
  the four fake families in turn), validation seed 2 (``--n-val`` samples, selects the best epoch);
* ``bundled-defocus``: :class:`~defocus_xai.detect.DefocusDetector` with ``SmallCNN`` over the default
  :class:`~defocus_xai.defocus.DefocusEstimator` at 128 px (its full configuration is stored in the sidecar
  and rebuilt at load time), map normalization ``"fixed"`` (``sigma / 5 px``, clamped);
* ``bundled-rgb``: :class:`~defocus_xai.detect.RGBDetector` with ``SmallCNN`` on the 128 px image mapped to
  ``[-1, 1]``;
* ``oracle`` (not shipped; ``--only oracle``): the same ``SmallCNN`` on the *true* sigma map of each sample,
  normalized like the defocus detector's maps: an upper bound for any map estimator.

All models: Adam, lr 1e-3 with cosine decay, weight decay 1e-4, batch 64, random horizontal flips, seed 0.
Images are rendered once (cached in ``--work``), detector inputs (defocus maps, resized images) are computed
once before the first epoch (``train_detector``'s cache), so every epoch costs only the small CNN.

Usage::

    # everything, one after the other (about 15-20 minutes on a quiet 2-core CPU)
    python examples/train_bundled.py
    # or render once, then train the models in parallel processes, then evaluate
    python examples/train_bundled.py --only render
    OMP_NUM_THREADS=1 python examples/train_bundled.py --only defocus &
    OMP_NUM_THREADS=1 python examples/train_bundled.py --only rgb &
    OMP_NUM_THREADS=1 python examples/train_bundled.py --only oracle
    python examples/train_bundled.py --only evaluate --n-test 2000

``--only evaluate`` scores the three models on a held-out DefocusSynth test set (seed 1) and writes
``evaluation.json`` and ``evaluation.md`` (per-family ROC AUC) into ``--work``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

import defocus_xai as dx
from defocus_xai.data.synth import FAMILIES, SYNTH_VERSION, DefocusSynth
from defocus_xai.detect import DefocusDetector, RGBDetector, evaluate_detector, save_detector, train_detector
from defocus_xai.detect.checkpoints import WEIGHTS_DIR
from defocus_xai.detect.data_cache import MemoryDataset, PreparedData, prepare_inputs

MAP_NORM = "fixed"
SIGMA_MAX = 5.0
#: Fixed probe batch whose maps and scores are stored in the sidecar (drift check of tests/test_bundled.py).
PROBE = {"n": 16, "seed": 1}


# ----------------------------------------------------------------------------------------- data
def render(n: int, seed: int, size: int, work: Path, workers: int) -> dict:
    """Render DefocusSynth(n, seed) once; cache images (uint8), labels, families and true sigma (float16)."""
    path = work / f"synth_{n}_{seed}_{size}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    ds = DefocusSynth(n, size=size, seed=seed)
    loader = DataLoader(ds, batch_size=64, num_workers=workers, collate_fn=lambda b: b)
    images, sigmas, labels, families = [], [], [], []
    t0 = time.perf_counter()
    for batch in loader:
        for s in batch:
            img = torch.as_tensor(s["image"])
            images.append((img * 255).round().clamp(0, 255).to(torch.uint8) if img.is_floating_point() else img)
            sigmas.append(torch.as_tensor(s["sigma"]).to(torch.float16))
            labels.append(int(s["label"]))
            families.append(s["family"])
    data = {"images": torch.stack(images), "sigma": torch.stack(sigmas),
            "labels": torch.tensor(labels), "families": families,
            "spec": f"synth:{n}:{seed}", "size": size, "seconds": time.perf_counter() - t0}
    work.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    print(f"rendered {ds!r} in {data['seconds']:.0f} s -> {path}")
    return data


def memory(data: dict) -> MemoryDataset:
    return MemoryDataset(data["images"], data["labels"], data["families"])


def oracle_inputs(model: DefocusDetector, data: dict) -> PreparedData:
    """True sigma maps, normalized as the detector normalizes estimated maps."""
    maps = model.normalize(data["sigma"].float()).to(torch.float16)
    return PreparedData((maps,), data["labels"].clone(), list(data["families"]))


# --------------------------------------------------------------------------------------- models
def build(kind: str, size: int, map_norm: str = MAP_NORM):
    torch.manual_seed(0)
    if kind == "rgb":
        return RGBDetector("small-cnn", input_size=size, input_norm="[-1,1]")
    # defocus and oracle: default estimator parameters at `size` px (stored in full in the sidecar)
    return DefocusDetector("small-cnn", estimator={"size": size}, map_norm=map_norm, sigma_max=SIGMA_MAX)


def per_family_auc(per_group) -> dict:
    return {str(k): float(v) for k, v in per_group["roc_auc"].items()}


@torch.no_grad()
def probe(model, kind: str, size: int) -> dict:
    """Map statistics and scores on a fixed small batch: stored so that estimator drift is detectable."""
    ds = DefocusSynth(PROBE["n"], size=size, seed=PROBE["seed"])
    images = torch.stack([torch.as_tensor(ds[i]["image"]) for i in range(len(ds))])
    model.eval()
    out = {"spec": f"synth:{PROBE['n']}:{PROBE['seed']}", "size": size}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if kind == "defocus":
            maps = model.map_from_images(images)
            out["map_mean"] = [round(float(v), 6) for v in maps.flatten(1).mean(1)]
        out["probability"] = [round(float(v), 6) for v in model.predict_proba(images)]
    return out


def train_one(kind: str, args, work: Path) -> None:
    train = render(args.n_train, args.train_seed, args.size, work, args.workers)
    val = render(args.n_val, args.val_seed, args.size, work, args.workers)
    model = build(kind, args.size, args.map_norm)
    run = kind if args.map_norm == MAP_NORM else f"{kind}-{args.map_norm}"
    t0 = time.perf_counter()
    if kind == "oracle":
        train_in, val_in = oracle_inputs(model, train), oracle_inputs(model, val)
    else:
        train_in = prepare_inputs(model, memory(train), progress=not args.quiet, desc=f"{kind}: prepare train")
        val_in = prepare_inputs(model, memory(val), progress=not args.quiet, desc=f"{kind}: prepare val")
    prep_s = time.perf_counter() - t0
    res = train_detector(model, train_in, val_data=val_in, epochs=args.epochs, batch_size=64, lr=1e-3,
                         weight_decay=1e-4, seed=0, out=work / run, device="cpu", progress=not args.quiet)
    train_s = time.perf_counter() - t0
    val_metrics, val_groups, _ = evaluate_detector(res.detector, val_in, device="cpu", progress=False)
    name = {"defocus": "bundled-defocus", "rgb": "bundled-rgb", "oracle": "oracle-true-sigma"}[kind]
    synth = {"version": SYNTH_VERSION, "size": args.size, "families": list(FAMILIES),
             "train": {"spec": f"synth:{args.n_train}:{args.train_seed}", "n": args.n_train,
                       "seed": args.train_seed},
             "val": {"spec": f"synth:{args.n_val}:{args.val_seed}", "n": args.n_val, "seed": args.val_seed}}
    meta = {
        "name": name,
        "description": {
            "defocus": "SmallCNN on estimated defocus maps (default DefocusEstimator at 128 px, fixed "
                       "normalization sigma/5 px)",
            "rgb": "SmallCNN on the RGB image (128 px, [-1, 1])",
            "oracle": "SmallCNN on the TRUE sigma maps of DefocusSynth (upper bound; needs ground truth, "
                      "its estimator config is unused)",
        }[kind],
        "training_data": (f"DefocusSynth v{SYNTH_VERSION} synth:{args.n_train}:{args.train_seed} at "
                          f"{args.size} px (validation synth:{args.n_val}:{args.val_seed})"),
        "synth": synth,
        "estimator": model.config().get("estimator"),
        "training": {"epochs": args.epochs, "best_epoch": res.best_epoch, "batch_size": 64, "lr": 1e-3,
                     "weight_decay": 1e-4, "optimizer": "Adam + cosine decay", "augment": "horizontal flips",
                     "seed": 0, "prepare_seconds": round(prep_s, 1), "seconds": round(train_s, 1),
                     "torch_threads": torch.get_num_threads(), "history": res.history},
        "command": "python examples/train_bundled.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "metrics": {"validation": {"overall": val_metrics, "roc_auc_by_family": per_family_auc(val_groups)}},
    }
    if args.map_norm != MAP_NORM:  # an ablation: never overwrites the bundled weights
        name = f"{run}-ablation"
        meta["name"] = name
        dest = work / f"{name}.pt"
    elif kind != "oracle":
        meta["probe"] = probe(res.detector, kind, args.size)
        dest = Path(args.weights_dir) / f"{name}.pt"
    else:
        dest = work / f"{name}.pt"
    save_detector(res.detector, dest, **meta)
    size_kb = dest.stat().st_size / 1024
    print(f"{name}: best epoch {res.best_epoch}, val AUC {val_metrics['roc_auc']:.4f}, "
          f"{train_s:.0f} s (prepare {prep_s:.0f} s) -> {dest} ({size_kb:.0f} KiB)")


# ------------------------------------------------------------------------------------ evaluation
def evaluate(args, work: Path) -> None:
    test = render(args.n_test, args.test_seed, args.size, work, args.workers)
    dets = {
        "defocus": dx.detect.load_detector(Path(args.weights_dir) / "bundled-defocus.pt", device="cpu"),
        "rgb": dx.detect.load_detector(Path(args.weights_dir) / "bundled-rgb.pt", device="cpu"),
    }
    for path in sorted(work.glob("*-ablation.pt")):  # e.g. defocus-minmax-ablation.pt
        dets[path.stem[: -len("-ablation")]] = dx.detect.load_detector(path, device="cpu")
    oracle_path = work / "oracle-true-sigma.pt"
    results, timing = {}, {}
    for kind, det in dets.items():
        # per-model results are cached (keyed by the weights' checksum): rerunning only adds what is new
        cache = work / f"eval_{kind}_{args.n_test}_{args.test_seed}.json"
        if cache.is_file() and json.loads(cache.read_text())["checksum"] == det.identity["checksum"]:
            results[kind] = json.loads(cache.read_text())["result"]
            continue
        t0 = time.perf_counter()
        prepared = prepare_inputs(det, memory(test), progress=not args.quiet, desc=f"{kind}: prepare test")
        m, groups, _ = evaluate_detector(det, prepared, device="cpu", progress=False)
        timing[kind] = time.perf_counter() - t0
        results[kind] = {"overall": m, "per_family": groups.reset_index().to_dict(orient="records")}
        cache.write_text(json.dumps({"checksum": det.identity["checksum"], "result": results[kind]},
                                    default=float))
    if oracle_path.is_file():
        det = dx.detect.load_detector(oracle_path, device="cpu")
        m, groups, _ = evaluate_detector(det, oracle_inputs(det, test), device="cpu", progress=False)
        results["oracle"] = {"overall": m, "per_family": groups.reset_index().to_dict(orient="records")}
    report = {"test": f"synth:{args.n_test}:{args.test_seed}", "size": args.size, "results": results,
              "seconds": timing}
    (work / "evaluation.json").write_text(json.dumps(report, indent=2, default=float) + "\n")

    def auc(kind, fam):
        rows = [r for r in results[kind]["per_family"] if str(r.get("group", r.get("index"))) == fam]
        return float(rows[0]["roc_auc"]) if rows else float("nan")

    kinds = [k for k in ("defocus", "rgb", "oracle") if k in results]
    kinds += [k for k in results if k not in kinds]
    lines = ["| family | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for fam in (*FAMILIES, "all"):
        lines.append(f"| {fam} | " + " | ".join(f"{auc(k, fam):.3f}" for k in kinds) + " |")
    lines.append("| mean over families | " + " | ".join(
        f"{np.mean([auc(k, f) for f in FAMILIES]):.3f}" for k in kinds) + " |")
    table = "\n".join(lines)
    (work / "evaluation.md").write_text(table + "\n")
    print(table)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("render", "defocus", "rgb", "oracle", "evaluate"), action="append",
                   help="steps to run (repeatable); default: render, defocus, rgb, oracle, evaluate")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--val-seed", type=int, default=2)
    p.add_argument("--test-seed", type=int, default=1)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--workers", type=int, default=0, help="processes rendering DefocusSynth")
    p.add_argument("--work", default="build/bundled", help="cache and run folder")
    p.add_argument("--weights-dir", default=str(WEIGHTS_DIR), help="where the bundled weights go")
    p.add_argument("--map-norm", choices=("fixed", "minmax"), default=MAP_NORM,
                   help="map normalization of defocus/oracle (anything but the default is an ablation "
                        "written into --work, not into the weights)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    work = Path(args.work)
    steps = args.only or ["render", "defocus", "rgb", "oracle", "evaluate"]
    if "render" in steps:
        render(args.n_train, args.train_seed, args.size, work, args.workers)
        render(args.n_val, args.val_seed, args.size, work, args.workers)
    for kind in ("defocus", "rgb", "oracle"):
        if kind in steps:
            train_one(kind, args, work)
    if "evaluate" in steps:
        evaluate(args, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
