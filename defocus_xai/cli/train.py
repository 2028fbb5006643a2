"""``defocus-xai train``: train a defocus, RGB or two-branch detector; seeded, resumable.

Writes into ``--out DIR``: ``best.pt``/``best.json`` (the detector to use, loadable with
``dx.detect.load_detector``), ``last.pt``/``last.json``, ``checkpoint.pt`` (optimizer and RNG state for
resuming: rerun the same command), ``history.json`` and ``train_summary.json``.
"""

from __future__ import annotations

import json
import math

from ._common import add_no_progress, check_data_arg, positive_int

#: Accepted --data forms (kept here so that --help does not import torch).
DATA_SPEC_HELP = (
    "synth[:N[:SEED]][:vVERSION] (the built-in DefocusSynth benchmark; default seeds: train 0, val 2, "
    "evaluate 1; VERSION 1.0 or 2.0, default the generator's default), folder:PATH (PATH/real/**, "
    "PATH/fake/**), ff++:PATH (FaceForensics++ root; split train / val / test by role or --split), "
    "cifake:PATH (CIFAKE root; train or test split)"
)


def register(subparsers) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train", help="train a detector (defocus, rgb or two-branch)", description=__doc__,
    )
    p.add_argument("--data", required=True, help=f"training data: {DATA_SPEC_HELP}")
    p.add_argument("--val-data", default=None,
                   help="validation data (same forms); selects the best epoch (default: none, except the "
                        "FF++ val split for ff++ training data)")
    p.add_argument("--model", choices=("defocus", "rgb", "two-branch"), default="defocus",
                   help="what the detector reads: defocus maps, RGB images, or both")
    p.add_argument("--backbone", default="small-cnn", help="small-cnn or a timm model name (random init)")
    p.add_argument("--epochs", type=positive_int, default=5, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (Adam, cosine schedule)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="Adam weight decay")
    p.add_argument("--size", type=positive_int, default=128, help="image and map size in pixels")
    p.add_argument("--map-norm", choices=("minmax", "fixed"), default="fixed",
                   help="defocus map normalization: per-sample min-max, or fixed (sigma / --sigma-max)")
    p.add_argument("--sigma-max", type=float, default=5.0, help="sigma in px that maps to 1 (--map-norm fixed)")
    p.add_argument("--recipe", choices=("ours", "robust", "reference"), default="ours", help="defocus map recipe")
    p.add_argument("--propagation", choices=("guided", "matting", "none"), default="guided",
                   help="sparse-to-dense propagation of the defocus map (--recipe ours)")
    p.add_argument("--fusion", choices=("concat", "product"), default="concat", help="two-branch fusion")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialization, order and augmentation")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--no-cache", action="store_true", help="recompute the inputs every epoch")
    p.add_argument("--no-augment", action="store_true", help="no random horizontal flips")
    p.add_argument("--no-resume", action="store_true", help="start over even if DIR has a checkpoint")
    add_no_progress(p)
    p.add_argument("--out", required=True, help="output folder, created")
    p.set_defaults(func=run)


def detector_from_args(args):
    """The detector named by the parsed arguments."""
    from ..detect import DefocusDetector, RGBDetector, TwoBranchDetector

    estimator = {"size": args.size, "recipe": args.recipe}
    if args.recipe == "ours":
        estimator["propagation"] = args.propagation
    if args.model == "defocus":
        return DefocusDetector(args.backbone, estimator=estimator, map_norm=args.map_norm,
                               sigma_max=args.sigma_max)
    if args.model == "rgb":
        return RGBDetector(args.backbone, input_size=args.size)
    return TwoBranchDetector(args.backbone, args.backbone, estimator=estimator, map_norm=args.map_norm,
                             sigma_max=args.sigma_max, input_size=args.size, fusion=args.fusion)


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def run(args) -> int:
    """Run ``defocus-xai train``."""
    import sys
    from pathlib import Path

    import torch

    from ..data.spec import dataset_from_spec, parse_data_spec
    from ..detect import train_detector

    check_data_arg(args.data)
    if args.val_data is not None:
        check_data_arg(args.val_data, "--val-data")
    torch.manual_seed(args.seed)
    train = dataset_from_spec(args.data, size=args.size, role="train")
    val_spec = args.val_data
    if val_spec is None and parse_data_spec(args.data)[0] == "ff++":
        val_spec = args.data
    val = dataset_from_spec(val_spec, size=args.size, role="val") if val_spec else None
    detector = detector_from_args(args)
    command = "defocus-xai " + " ".join(sys.argv[1:]) if sys.argv and "defocus" in sys.argv[0] else None
    meta = {"training_data": f"{args.data} ({train!r})", "validation_data": val_spec, "command": command}
    res = train_detector(
        detector, train, val_data=val, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, device=args.device, seed=args.seed, out=args.out,
        resume=not args.no_resume, progress=not args.no_progress, num_workers=args.workers,
        cache=not args.no_cache, augment=not args.no_augment, meta=meta,
    )
    out = Path(args.out)
    summary = {"model": args.model, "config": res.detector.config(), "data": args.data, "val_data": val_spec,
               "epochs": args.epochs, "best_epoch": res.best_epoch, "seconds": res.seconds,
               "prepare_seconds": res.prepare_seconds, "history": res.history,
               "best": str(res.best_path) if res.best_path else None}
    (out / "train_summary.json").write_text(json.dumps(_clean(summary), indent=2) + "\n")
    last = res.history[-1] if res.history else {}
    if res.resumed_epoch:
        print(f"resuming from {out / 'checkpoint.pt'}: {res.resumed_epoch} of {args.epochs} epochs were done")
    print(f"trained {args.model} detector: best epoch {res.best_epoch}, last train loss "
          f"{last.get('train_loss', float('nan')):.4f}; saved {res.best_path}")
    return 0
