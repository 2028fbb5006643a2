"""Train the bundled detectors on DefocusSynth, compare the architectures over seeds, and ship the weights.

Recipe (what ``load_detector("bundled-...")`` ships; docs/detectors.md lists the versions): DefocusSynth
``--synth-version`` at 128 px, training seed 0, validation seed 2 (selects the best epoch), held-out test
seed 11 (never used for training or tuning); ``SmallCNN`` models: ``defocus`` (over the default
``DefocusEstimator`` or ``--estimator KEY=VALUE``, map normalization ``"fixed"``), ``rgb`` (image in
``[-1, 1]``), ``two-branch`` (both, concatenated features) and ``oracle`` (the *true* sigma maps; an upper
bound, never shipped). Adam, lr 1e-3 with cosine decay, weight decay 1e-4, batch 64, horizontal flips;
``--model-seed`` seeds initialization, shuffle and flips. Each run is saved as ``WORK/<kind>-s<seed>.pt``
(+ sidecar with validation metrics and a probe batch). Images are rendered once and cached in ``--work``,
and so are the defocus maps of each data set (keyed by the estimator settings).

Usage::

    python examples/train_bundled.py --only render
    OMP_NUM_THREADS=1 python examples/train_bundled.py --only rgb --model-seed 0 &
    OMP_NUM_THREADS=1 python examples/train_bundled.py --only rgb --model-seed 1
    OMP_NUM_THREADS=1 python examples/train_bundled.py --only defocus --only two-branch --model-seed 0 &
    OMP_NUM_THREADS=1 python examples/train_bundled.py --only defocus --only two-branch --model-seed 1
    python examples/train_bundled.py --only evaluate      # per family, photos, reference frames
    python examples/train_bundled.py --only ship          # seed-0 defocus / rgb -> bundled-*@<N>

``evaluate`` scores every run in ``--work`` and the bundled weights on the held-out set (ROC AUC per fake
family; mean and spread over seeds per architecture), the false-positive rate (score > 0.5) on the real
photographs shipped with scikit-image, scikit-learn and matplotlib, and the AUC on the FaceForensics++
frames of ``--reference-maps`` (only looked at, never trained or tuned on); it writes ``evaluation.json``
and ``evaluation.md`` into ``--work``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from defocus_xai.data.synth import FAMILIES, FAMILIES_V2, SYNTH_VERSION, DefocusSynth
from defocus_xai.detect import (DefocusDetector, RGBDetector, TwoBranchDetector, detection_metrics,
                                evaluate_detector, load_detector, save_detector, train_detector)
from defocus_xai.detect.checkpoints import BUNDLED_ALIASES, BUNDLED_VERSIONS, WEIGHTS_DIR
from defocus_xai.detect.data_cache import MemoryDataset, PreparedData, prepare_inputs

DESCRIPTIONS = {
    "defocus": "SmallCNN on estimated defocus maps (DefocusEstimator at 128 px, fixed normalization sigma/5 px)",
    "rgb": "SmallCNN on the RGB image (128 px, [-1, 1])",
    "two-branch": "SmallCNN on the RGB image + SmallCNN on the defocus map, concatenated features",
    "oracle": "SmallCNN on the TRUE sigma maps of DefocusSynth (upper bound; its estimator config is unused)",
}
KINDS = tuple(DESCRIPTIONS)
MAP_NORM = "fixed"
SIGMA_MAX = 5.0
#: Probe batch (the first samples of the test seed) whose maps and scores are stored in the sidecar: the
#: drift check of tests/test_bundled.py.
PROBE_N = 16
#: A real whose largest true sigma is below this (px) is deep-focus: all-sharp, like a ``no_dof`` fake.
DEEP_FOCUS_PX = 0.5
#: Real photographs shipped with the Python packages: (package, name); grey ones are replicated to RGB.
PHOTOS = [("skimage", n) for n in ("astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "clock", "moon")]
PHOTOS += [("sklearn", "china"), ("sklearn", "flower"), ("matplotlib", "grace_hopper")]
_SIDECAR_FIELDS = ("format", "format_version", "library_version", "created", "arch", "config", "sha256",
                   "n_parameters", "sidecar_sha256")


def families(version: str) -> tuple:
    return tuple(FAMILIES_V2 if version == "2.0" else FAMILIES)


# ----------------------------------------------------------------------------------------- data
def render(n: int, seed: int, args) -> dict:
    """Render DefocusSynth(n, seed) once; cache images (uint8), labels, families and true sigma (float16)."""
    path = Path(args.work) / f"synth_v{args.synth_version}_{n}_{seed}_{args.size}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    ds = DefocusSynth(n, size=args.size, seed=seed, version=args.synth_version)
    loader = DataLoader(ds, batch_size=64, num_workers=args.workers, collate_fn=lambda b: b)
    images, sigmas, labels, fams = [], [], [], []
    t0 = time.perf_counter()
    for batch in loader:
        for s in batch:
            img = torch.as_tensor(s["image"])
            images.append((img * 255).round().clamp(0, 255).to(torch.uint8) if img.is_floating_point() else img)
            sigmas.append(torch.as_tensor(s["sigma"]).to(torch.float16))
            labels.append(int(s["label"]))
            fams.append(s["family"])
    data = {"images": torch.stack(images), "sigma": torch.stack(sigmas), "labels": torch.tensor(labels),
            "families": fams, "spec": f"synth:{n}:{seed}", "version": args.synth_version, "size": args.size,
            "seconds": time.perf_counter() - t0}
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(data, path)
    print(f"rendered {ds!r} in {data['seconds']:.0f} s -> {path}")
    return data


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{id(obj)}")
    torch.save(obj, tmp)
    tmp.replace(path)


def memory(data: dict) -> MemoryDataset:
    return MemoryDataset(data["images"], data["labels"], data["families"])


def prepared(model, data: dict, args, desc: str) -> PreparedData:
    """The model's inputs for a data set; defocus maps are cached on disk per estimator configuration."""
    quiet = args.quiet
    if isinstance(model, RGBDetector):
        return prepare_inputs(model, memory(data), progress=not quiet, desc=desc)
    branch = model.defocus if isinstance(model, TwoBranchDetector) else model
    cfg = {k: v for k, v in branch.config().items() if k != "backbone"}
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(args.work) / f"maps_v{data['version']}_{data['spec'].replace(':', '_')}_{key}.pt"
    if path.is_file():
        maps = torch.load(path, weights_only=True)
    else:
        maps = prepare_inputs(branch, memory(data), progress=not quiet, desc=desc).inputs[0]
        _atomic_save(maps, path)
    inputs = (maps,)
    if isinstance(model, TwoBranchDetector):
        inputs = (prepare_inputs(model.rgb, memory(data), progress=False).inputs[0], maps)
    return PreparedData(inputs, data["labels"].clone(), list(data["families"]))


def oracle_inputs(model: DefocusDetector, data: dict) -> PreparedData:
    """True sigma maps, normalized as the detector normalizes estimated maps."""
    maps = model.normalize(data["sigma"].float()).to(torch.float16)
    return PreparedData((maps,), data["labels"].clone(), list(data["families"]))


# --------------------------------------------------------------------------------------- models
def parse_estimator(items) -> dict:
    """``["recipe=robust", "std1=1.5"]`` -> ``{"recipe": "robust", "std1": 1.5}`` (JSON values, else strings)."""
    out = {}
    for item in items or ():
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def build(kind: str, args):
    torch.manual_seed(args.model_seed)
    est = {"size": args.size, **parse_estimator(args.estimator)}
    if kind == "rgb":
        return RGBDetector("small-cnn", input_size=args.size, input_norm="[-1,1]")
    if kind == "two-branch":
        return TwoBranchDetector(estimator=est, map_norm=MAP_NORM, sigma_max=SIGMA_MAX, input_size=args.size,
                                 input_norm="[-1,1]")
    return DefocusDetector("small-cnn", estimator=est, map_norm=args.map_norm, sigma_max=SIGMA_MAX)


def per_family_auc(per_group) -> dict:
    return {str(k): float(v) for k, v in per_group["roc_auc"].items()}


@torch.no_grad()
def probe(model, args) -> dict:
    """Map statistics and scores on a fixed small batch: stored so that estimator drift is detectable."""
    ds = DefocusSynth(PROBE_N, size=args.size, seed=args.test_seed, version=args.synth_version)
    images = torch.stack([torch.as_tensor(ds[i]["image"]) for i in range(len(ds))])
    out = {"spec": f"synth:{PROBE_N}:{args.test_seed}", "version": args.synth_version, "size": args.size}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if hasattr(model, "map_from_images"):
            out["map_mean"] = [round(float(v), 6) for v in model.map_from_images(images).flatten(1).mean(1)]
        out["probability"] = [round(float(v), 6) for v in model.predict_proba(images)]
    return out


def train_one(kind: str, args) -> None:
    work = Path(args.work)
    train, val = render(args.n_train, args.train_seed, args), render(args.n_val, args.val_seed, args)
    model = build(kind, args)
    run = f"{kind}-s{args.model_seed}" if args.map_norm == MAP_NORM else f"{kind}-{args.map_norm}-s{args.model_seed}"
    t0 = time.perf_counter()
    if kind == "oracle":
        train_in, val_in = oracle_inputs(model, train), oracle_inputs(model, val)
    else:
        train_in, val_in = prepared(model, train, args, f"{run}: train"), prepared(model, val, args, f"{run}: val")
    prep_s = time.perf_counter() - t0
    res = train_detector(model, train_in, val_data=val_in, epochs=args.epochs, batch_size=64, lr=1e-3,
                         weight_decay=1e-4, seed=args.model_seed, out=work / run, device="cpu",
                         progress=not args.quiet)
    train_s = time.perf_counter() - t0
    val_metrics, val_groups, _ = evaluate_detector(res.detector, val_in, device="cpu", progress=False)
    v = args.synth_version
    meta = {
        "name": run,
        "description": DESCRIPTIONS[kind],
        "training_data": (f"DefocusSynth v{v} synth:{args.n_train}:{args.train_seed} at {args.size} px "
                          f"(validation synth:{args.n_val}:{args.val_seed})"),
        "synth": {"version": v, "size": args.size, "families": list(families(v)),
                  "train": {"spec": f"synth:{args.n_train}:{args.train_seed}", "n": args.n_train,
                            "seed": args.train_seed},
                  "val": {"spec": f"synth:{args.n_val}:{args.val_seed}", "n": args.n_val, "seed": args.val_seed}},
        "estimator": model.config().get("estimator"),
        "training": {"epochs": args.epochs, "best_epoch": res.best_epoch, "batch_size": 64, "lr": 1e-3,
                     "weight_decay": 1e-4, "optimizer": "Adam + cosine decay", "augment": "horizontal flips",
                     "seed": args.model_seed, "prepare_seconds": round(prep_s, 1), "seconds": round(train_s, 1),
                     "torch_threads": torch.get_num_threads(), "history": res.history},
        "command": "python examples/train_bundled.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "metrics": {"validation": {"overall": val_metrics, "roc_auc_by_family": per_family_auc(val_groups)}},
    }
    if kind != "oracle":
        meta["probe"] = probe(res.detector, args)
    dest = save_detector(res.detector, work / f"{run}.pt", **meta)
    print(f"{run}: best epoch {res.best_epoch}, val AUC {val_metrics['roc_auc']:.4f}, {train_s:.0f} s "
          f"(prepare {prep_s:.0f} s) -> {dest}")


def ship(args) -> None:
    """Copy the seed-0 defocus and RGB runs into the package as ``bundled-<kind>@<version>``."""
    for kind in ("defocus", "rgb"):
        src = Path(args.work) / f"{kind}-s0.pt"
        side = json.loads(src.with_suffix(".json").read_text())
        name = f"bundled-{kind}@{args.weights_version}"
        meta = {k: v for k, v in side.items() if k not in _SIDECAR_FIELDS}
        meta["name"] = name
        dest = save_detector(load_detector(src, device="cpu"), Path(args.weights_dir) / f"{name}.pt", **meta)
        print(f"{src} -> {dest}")


# ------------------------------------------------------------------------------------ evaluation
def _square(img: np.ndarray, size: int) -> torch.Tensor:
    """A uint8 photo (grey or RGB) -> centre square crop resized (antialiased) to ``size``: (3, S, S) in [0, 1]."""
    x = torch.as_tensor(np.array(img), dtype=torch.float32) / 255.0
    x = x[..., :3].permute(2, 0, 1) if x.ndim == 3 else x.expand(3, *x.shape)
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def photos(size: int) -> dict:
    import matplotlib.cbook
    import matplotlib.image
    import skimage.data
    from sklearn.datasets import load_sample_image

    out = {}
    for pkg, name in PHOTOS:
        if pkg == "skimage":
            img = getattr(skimage.data, name)()
        elif pkg == "sklearn":
            img = load_sample_image(f"{name}.jpg")
        else:
            with matplotlib.cbook.get_sample_data(f"{name}.jpg") as f:
                img = matplotlib.image.imread(f, format="jpg")
        out[name] = _square(img, size)
    return out


def reference_frames(folder: Path, size: int):
    """The FaceForensics++ frames of ``folder`` (left half of each PNG), labels and video groups."""
    import csv

    import matplotlib.image

    rows = list(csv.DictReader((folder / "index.csv").open()))
    imgs = []
    for r in rows:
        png = matplotlib.image.imread(folder / "frames" / r["file"])
        imgs.append(_square((png[2:301, 2:301, :3] * 255).round().astype(np.uint8), size))
    return torch.stack(imgs), np.array([int(r["label"]) for r in rows]), [r["real_video"] for r in rows]


def grouped_auc_ci(labels, scores, groups, n_boot: int = 2000, seed: int = 0) -> tuple:
    """Bootstrap (over groups) 95 % interval of the ROC AUC."""
    rng = np.random.default_rng(seed)
    uniq = sorted(set(groups))
    idx = {g: np.flatnonzero(np.asarray(groups) == g) for g in uniq}
    vals = []
    for _ in range(n_boot):
        sel = np.concatenate([idx[uniq[i]] for i in rng.integers(0, len(uniq), len(uniq))])
        if 0 < labels[sel].sum() < len(sel):
            vals.append(detection_metrics(labels[sel], scores[sel])["roc_auc"])
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def _proba(det, images) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return det.predict_proba(images, batch_size=32).numpy()


def score_model(det, kind: str, test: dict, args, extra: dict) -> dict:
    if kind == "oracle":
        data = oracle_inputs(det, test)
    else:
        data = prepared(det, test, args, "test")
    m, groups, scores = evaluate_detector(det, data, device="cpu", progress=False)
    out = {"overall": m, "auc": per_family_auc(groups)}
    # the same, against the reals with visible depth of field only (max true sigma >= 0.5 px)
    fam = np.asarray(test["families"])
    shallow = (test["sigma"].float().flatten(1).amax(1) >= DEEP_FOCUS_PX).numpy()
    ref = (fam == "real") & shallow
    out["auc_vs_shallow_reals"] = {f: detection_metrics(np.r_[np.zeros(ref.sum()), np.ones((fam == f).sum())],
                                                        np.r_[scores[ref], scores[fam == f]])["roc_auc"]
                                   for f in families(args.synth_version)}
    out["deep_focus_real_share"] = float(1 - shallow[fam == "real"].mean())
    if kind == "oracle":
        return out
    p = _proba(det, extra["photos"])
    out["photos"] = dict(zip(extra["photo_names"], map(float, p)))
    out["photo_fpr"] = float(np.mean(p > 0.5))
    if "ref" in extra:
        imgs, labels, groups_ = extra["ref"]
        s = _proba(det, imgs)
        out["reference"] = {"auc": detection_metrics(labels, s)["roc_auc"],
                            "ci95_by_video": grouped_auc_ci(labels, s, groups_),
                            "fpr_real": float(np.mean(s[labels == 0] > 0.5)),
                            "tpr_fake": float(np.mean(s[labels == 1] > 0.5))}
    return out


def evaluate(args) -> None:
    work = Path(args.work)
    test = render(args.n_test, args.test_seed, args)
    fams = families(args.synth_version)
    ph = photos(args.size)
    extra = {"photos": torch.stack(list(ph.values())), "photo_names": list(ph)}
    ref = Path(args.reference_maps)
    if (ref / "index.csv").is_file():
        extra["ref"] = reference_frames(ref, args.size)
    runs = {p.stem: p for p in sorted(work.glob("*-s[0-9]*.pt"))}
    # every bundled version, the older ones trained on another DefocusSynth version (a transfer check)
    runs.update({n: WEIGHTS_DIR / f"{n}.pt" for n in BUNDLED_VERSIONS})
    results = {}
    for name, path in runs.items():
        det = load_detector(path, device="cpu")
        kind = "oracle" if name.startswith("oracle") else det.identity["arch"]
        cache = work / f"eval_{name}_v{args.synth_version}_{args.n_test}_{args.test_seed}.json"
        if cache.is_file() and json.loads(cache.read_text())["checksum"] == det.identity["checksum"]:
            results[name] = json.loads(cache.read_text())["result"]
            continue
        t0 = time.perf_counter()
        results[name] = {**score_model(det, kind, test, args, extra), "seconds": time.perf_counter() - t0}
        cache.write_text(json.dumps({"checksum": det.identity["checksum"], "result": results[name]}, default=float))
    report = {"test": f"synth:{args.n_test}:{args.test_seed}", "version": args.synth_version, "results": results}
    (work / "evaluation.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    table = summary(results, fams)
    (work / "evaluation.md").write_text(table + "\n")
    print(table)


def summary(results: dict, fams: tuple) -> str:
    """Markdown: per-run AUC per family, then mean +- half-range over seeds per architecture."""
    cols = [*fams, "mean"]
    lines = ["| run | " + " | ".join(cols) + " | photo FPR | FF++ AUC |", "|---|" + "---:|" * (len(cols) + 2)]
    groups: dict = {}
    for name, r in results.items():
        vals = [r["auc"].get(f, float("nan")) for f in fams]
        vals.append(float(np.mean(vals)))
        ref = r.get("reference", {}).get("auc", float("nan"))
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals)
                     + f" | {r.get('photo_fpr', float('nan')):.2f} | {ref:.3f} |")
        if "-s" in name and not name.startswith("bundled"):
            groups.setdefault(name.rsplit("-s", 1)[0], []).append((vals, r.get("photo_fpr", np.nan), ref))
    lines += ["", "| architecture (seeds) | " + " | ".join(cols) + " | photo FPR | FF++ AUC |",
              "|---|" + "---:|" * (len(cols) + 2)]
    for kind, rows in groups.items():
        a = np.array([r[0] for r in rows])
        cells = [f"{m:.3f} ± {(hi - lo) / 2:.3f}" for m, lo, hi in zip(a.mean(0), a.min(0), a.max(0))]
        fpr, ref = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
        lines.append(f"| {kind} ({len(rows)}) | " + " | ".join(cells)
                     + f" | {np.mean(fpr):.2f} ± {np.ptp(fpr) / 2:.2f} | {np.mean(ref):.3f} ± {np.ptp(ref) / 2:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("render", *KINDS, "evaluate", "ship"), action="append",
                   help="steps to run (repeatable); default: render, defocus, rgb, two-branch, evaluate")
    p.add_argument("--synth-version", default=SYNTH_VERSION, help="DefocusSynth version to train and test on")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--val-seed", type=int, default=2)
    p.add_argument("--test-seed", type=int, default=11)
    p.add_argument("--model-seed", type=int, default=0, help="seeds initialization, shuffle and flips")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--estimator", action="append", metavar="KEY=VALUE",
                   help="estimator parameter over the defaults (repeatable), e.g. recipe=robust")
    p.add_argument("--workers", type=int, default=0, help="processes rendering DefocusSynth")
    p.add_argument("--work", default="build/bundled", help="cache and run folder")
    p.add_argument("--weights-dir", default=str(WEIGHTS_DIR), help="where `ship` writes the bundled weights")
    p.add_argument("--weights-version", default=BUNDLED_ALIASES["bundled-defocus"].split("@")[1],
                   help="`ship` writes bundled-<kind>@<this>")
    p.add_argument("--reference-maps", default="../shared/reference_maps",
                   help="FaceForensics++ frames to check transfer on (skipped when missing)")
    p.add_argument("--map-norm", choices=("fixed", "minmax"), default=MAP_NORM,
                   help="map normalization of defocus/oracle (anything but the default is an ablation)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    steps = args.only or ["render", "defocus", "rgb", "two-branch", "evaluate"]
    if "render" in steps:
        for n, seed in ((args.n_train, args.train_seed), (args.n_val, args.val_seed), (args.n_test, args.test_seed)):
            render(n, seed, args)
    for kind in KINDS:
        if kind in steps:
            train_one(kind, args)
    if "evaluate" in steps:
        evaluate(args)
    if "ship" in steps:
        ship(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
