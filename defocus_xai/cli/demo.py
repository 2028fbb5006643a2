"""``defocus-xai demo``: the whole pipeline on DefocusSynth with the bundled detectors, one report.

Examples::

    defocus-xai demo --out demo_out                 # default N, a few minutes on a laptop CPU
    defocus-xai demo --out demo_out --n 400 --device cuda

Open ``demo_out/report.md`` afterwards: every figure with its numbers and a one-line reading.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``demo`` sub-command."""
    from ..pipeline import DEFAULT_N

    p = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on DefocusSynth with the bundled detectors and write a report",
        description="Defocus maps, detection metrics, attribution export, every analysis and every figure on "
                    "the built-in DefocusSynth benchmark with the bundled detectors; writes DIR/report.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"DefocusSynth samples, even (default {DEFAULT_N})")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the data and of every random step (default 1, held out from the bundled "
                        "detectors' training seed 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--detector", default="bundled-defocus", help="bundled-defocus or a checkpoint path")
    p.add_argument("--rgb-detector", default="bundled-rgb", help="bundled-rgb or a checkpoint path")
    p.add_argument("--quiet", action="store_true", help="no progress bars, only the final summary")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``defocus-xai demo`` and print its summary once."""
    from ..pipeline import run_demo

    res = run_demo(args.out, n=args.n, seed=args.seed, device=args.device, detector=args.detector,
                   rgb_detector=args.rgb_detector, progress=not args.quiet)
    print("\n" + res.summary())
    return 0
