"""``defocus-xai export``: defocus maps and attributions of a data set to the ``.npz`` store.

Examples::

    defocus-xai export --data synth:1000 --detector bundled-defocus --out exports/synth.npz
    defocus-xai export --data synth:1000 --detector bundled-defocus --out exports/synth
    defocus-xai export --data ff++:/data/FF++:test --detector dn.pth --rgb-detector rgb.pth \\
        --methods shap_gradient integrated_gradients --background 10 --out exports/ffpp
    torchrun --nproc_per_node=4 -m defocus_xai export --data synth:100000 --out exports/big

An ``--out`` ending in ``.npz`` is one file (plain ``numpy.load`` reads it); anything else a store
folder. Rerunning the same command resumes an interrupted export (``--no-resume`` starts over).
"""

from __future__ import annotations

import argparse

_METHODS = ("shap_gradient", "shap_deep", "gradient_shap", "integrated_gradients", "deeplift", "saliency",
            "input_x_gradient", "occlusion")


def register(subparsers) -> None:
    """Add the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export",
        help="export defocus maps and attributions to one .npz file or a store folder (resumable, torchrun)",
        description="Stream a data set through a detector and write maps, scores and attributions to one "
                    ".npz file (--out NAME.npz) or to a folder of .npz shards with an index.json "
                    "(see docs/npz_format.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True,
                   help="synth[:N[:SEED]] | folder:PATH | ff++:PATH[:SPLIT] | cifake:PATH[:SPLIT]")
    p.add_argument("--size", type=int, default=None,
                   help="image size the data set delivers (default: the detector's input size)")
    p.add_argument("--detector", default="bundled-defocus", help="bundled-defocus or a checkpoint path")
    p.add_argument("--rgb-detector", default=None, help="bundled-rgb or a checkpoint path (rgb_shaps)")
    p.add_argument("--methods", nargs="+", default=["shap_gradient"], choices=_METHODS, metavar="METHOD",
                   help=f"attribution methods (default shap_gradient; any of {', '.join(_METHODS)})")
    p.add_argument("--engine", choices=("batched", "shap", "captum"), default=None,
                   help="engine of shap_gradient: batched (default; shap's estimator and draws, vectorized), "
                        "shap (shap.GradientExplainer per image) or captum")
    p.add_argument("--out", required=True,
                   help="NAME.npz: one file; anything else: a store folder (needed with --num-shards > 1)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--chunk-size", type=int, default=256, help="samples per shard file")
    p.add_argument("--n-samples", type=int, default=None,
                   help="random draws per sample (shap_gradient, gradient_shap; default 200)")
    p.add_argument("--n-steps", type=int, default=None,
                   help="quadrature steps (integrated_gradients; default 50)")
    p.add_argument("--background", type=int, default=None,
                   help="use the first K samples as background (default: an all-zero input)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-index", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading processes")
    p.add_argument("--no-resume", action="store_true", help="discard this shard's files and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _load(name: str | None, device):
    if name is None:
        return None
    from ..detect.checkpoints import load_detector

    return load_detector(name, device=device)


def run(args) -> int:
    """Run the export described by the parsed ``args``."""
    from .._device import resolve_device
    from ..data.spec import dataset_from_spec
    from ..explain.export import export_attributions
    from ..store import load_attributions, read_index
    from .evaluate import _detector_size

    device = resolve_device(args.device)

    det = _load(args.detector, device)
    try:
        data = dataset_from_spec(args.data, size=args.size or _detector_size(det), role="test")
    except ValueError as err:
        raise SystemExit(f"defocus-xai export: --data {args.data!r}: {err}") from None
    rgb = _load(args.rgb_detector, device)
    out = export_attributions(
        det, data, args.out, methods=tuple(args.methods), rgb_detector=rgb, background=args.background,
        n_samples=args.n_samples, n_steps=args.n_steps, seed=args.seed, batch_size=args.batch_size,
        chunk_size=args.chunk_size, num_shards=args.num_shards, shard_index=args.shard_index,
        resume=not args.no_resume, progress=not args.quiet, device=args.device, engine=args.engine,
        num_workers=args.num_workers)
    if not args.quiet:
        if out.is_file():
            print(f"{out}: {len(load_attributions(out))} samples in one file")
        else:
            idx = read_index(out)
            print(f"{out}: {idx['num_samples']} of {idx.get('total_samples')} samples in {len(idx['shards'])} "
                  f"shard files; complete={idx['complete']}")
    return 0
