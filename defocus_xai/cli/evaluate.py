"""``defocus-xai evaluate``: score a data set with a detector; metrics overall and per family.

Writes into ``--out DIR``: ``metrics.json`` (overall metrics, the detector's identity, the data),
``per_group.csv`` (each fake family / manipulation method against all real images, and "all") and
``scores.csv`` (one row per image: index, label, family, probability of being fake).
"""

from __future__ import annotations

import json
import sys

from ._common import add_no_progress, add_on_error, bundled_note, check_data_arg, check_detector_arg, positive_int
from .train import DATA_SPEC_HELP


def register(subparsers) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser(
        "evaluate", help="evaluate a detector on a data set (metrics JSON + per-family CSV)", description=__doc__,
    )
    p.add_argument("--detector", default="bundled-defocus",
                   help="bundled-defocus, bundled-rgb, or a checkpoint path (ours or the paper's)")
    p.add_argument("--arch", choices=("defocus", "rgb", "two-branch"), default=None,
                   help="force the detector architecture (default: detected)")
    p.add_argument("--data", required=True, help=f"evaluation data: {DATA_SPEC_HELP}")
    p.add_argument("--split", default=None, help="FF++ / CIFAKE split (default: test)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="image size the data set delivers (default: the detector's map/input size, else 128)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per batch")
    p.add_argument("--threshold", type=float, default=0.5, help="probability above which an image is called fake")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    add_on_error(p)
    add_no_progress(p)
    p.add_argument("--out", required=True, help="output folder, created")
    p.set_defaults(func=run)


def _detector_size(det) -> int:
    """The image size to feed ``det``: its input grid, else 128."""
    return det.input_size or 128


def run(args) -> int:
    """Run ``defocus-xai evaluate``."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from ..data.io import ImageLoadError
    from ..data.spec import dataset_from_spec
    from ..detect import evaluate_detector, load_detector
    from .train import _clean

    kind = check_data_arg(args.data)[0]
    check_detector_arg(args.detector)
    det = load_detector(args.detector, arch=args.arch, device=args.device)
    size = args.size or _detector_size(det)
    data = dataset_from_spec(args.data, size=size, role="test", split=args.split, on_error=args.on_error)
    note = bundled_note([args.detector], kind)
    if note:
        print(f"defocus-xai evaluate: {note}", file=sys.stderr)
    try:
        metrics, per_group, scores = evaluate_detector(
            det, data, batch_size=args.batch_size, device=args.device, num_workers=args.workers,
            progress=not args.no_progress, threshold=args.threshold)
    except ValueError as err:  # non-finite scores, unreadable images: say which detector and data
        hint = " (--on-error skip leaves unreadable images out)" if isinstance(err, ImageLoadError) else ""
        raise ValueError(f"--detector {args.detector} on --data {args.data}: {err}{hint}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skipped = [list(s) for s in getattr(data, "skipped", [])]
    report = {"metrics": metrics, "detector": det.identity, "data": args.data, "data_repr": repr(data),
              "size": size, "n_skipped": len(skipped), "skipped": skipped[:100]}
    (out / "metrics.json").write_text(json.dumps(_clean(report), indent=2, default=str) + "\n")
    per_group.to_csv(out / "per_group.csv")
    labels = getattr(data, "labels", None)
    labels = list(labels) if labels is not None else [data[i]["label"] for i in range(len(data))]
    fams = getattr(data, "sample_families", None) or getattr(data, "families", None)
    fams = list(fams) if fams is not None else [""] * len(scores)
    pd.DataFrame({"index": np.arange(len(scores)), "label": labels, "family": fams,
                  "score": scores}).to_csv(out / "scores.csv", index=False)
    for path, reason in skipped:
        print(f"defocus-xai evaluate: skipped {path!r}: {reason}", file=sys.stderr)
    print(per_group[["n_real", "n_fake", "roc_auc", "average_precision", "accuracy", "eer"]]
          .to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {out / 'metrics.json'}, {out / 'per_group.csv'}, {out / 'scores.csv'}; skipped {len(skipped)}")
    return 0
