"""``defocus-xai export``: defocus maps and attributions of a data set to the ``.npz`` store.

Examples:

    defocus-xai export --data synth:1000 --detector bundled-defocus --out exports/synth.npz
    defocus-xai export --data synth:1000 --detector bundled-defocus --out exports/synth
    defocus-xai export --data unlabeled:photos/ --detector runs/defocus/best.pt --out exports/photos.npz
    defocus-xai export --data ff++:/data/FF++:test --detector dn.pth --rgb-detector rgb.pth \\
        --methods shap_gradient integrated_gradients --background-size 10 --out exports/ffpp
    defocus-xai export --data synth:1000 --background zeros --sampler shap --out exports/zeros.npz
    torchrun --nproc_per_node=4 -m defocus_xai export --data synth:100000 --out exports/big

The attribution reference (--background) is recorded in the store's meta: "data" (default) takes the first
--background-size real samples of the data's training split (synth: DefocusSynth's training seed; ff++ and
cifake: the train split), or of the explained data when it has none (folder:, unlabeled:); "zeros" one
all-zero input; "blur" each input's blurred copy. --wrapper paper224 explains the paper's wrapper.

An --out ending in .npz is one file (plain numpy.load reads it); anything else a store folder. Rerunning
the same command resumes an interrupted export (--no-resume starts over). One export writes into an
output at a time; an output made with other settings or another shard split is refused.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import (UsageError, add_on_error, bundled_note, check_data_arg, check_detector_arg, existing_path,
                      positive_int, store_summary)

_METHODS = ("shap_gradient", "shap_deep", "gradient_shap", "integrated_gradients", "deeplift", "saliency",
            "input_x_gradient", "occlusion")
_DATA_HELP = ("synth[:N[:SEED]][:vVERSION] | folder:PATH (PATH/real/**, PATH/fake/**) | ff++:PATH[:SPLIT] | "
              "cifake:PATH[:SPLIT] | unlabeled:PATH (image files below PATH, or one image: label -1, "
              "attributions and scores only)")


def register(subparsers) -> None:
    """Add the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export",
        help="export defocus maps and attributions to one .npz file or a store folder (resumable, torchrun)",
        description=__doc__,
    )
    p.add_argument("--data", required=True, help=_DATA_HELP)
    p.add_argument("--size", type=positive_int, default=None,
                   help="image size the data set delivers (default: the detector's input size)")
    p.add_argument("--detector", default="bundled-defocus", help="bundled-defocus or a checkpoint path")
    p.add_argument("--rgb-detector", default=None,
                   help="bundled-rgb or a checkpoint path, explained on the images too (rgb_shaps)")
    p.add_argument("--methods", nargs="+", default=["shap_gradient"], choices=_METHODS, metavar="METHOD",
                   help=f"attribution methods, any of {', '.join(_METHODS)}")
    p.add_argument("--engine", choices=("batched", "shap", "captum"), default=None,
                   help="engine of shap_gradient: batched (shap's estimator, all samples in bounded passes; "
                        "its draws are set by --sampler), shap (shap.GradientExplainer per image, shap's "
                        "draws) or captum (captum's GradientShap) (default: batched)")
    p.add_argument("--sampler", choices=("stratified", "shap"), default=None,
                   help="draws of the batched engine: stratified (every background sample equally often, "
                        "stratified t; lower variance) or shap (shap's own draws) (default: stratified with "
                        "the batched engine, shap with the others)")
    p.add_argument("--wrapper", choices=("paper224",), default=None,
                   help="explain the paper's wrapper (map resized to 224 and min-max normalized before the "
                        "detector) instead of the detector on the map grid (default: none)")
    p.add_argument("--out", required=True,
                   help="NAME.npz: one file; anything else: a store folder (needed with --num-shards > 1)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per batch")
    p.add_argument("--chunk-size", type=positive_int, default=256, help="samples per shard file")
    p.add_argument("--n-samples", type=positive_int, default=None,
                   help="random draws per sample (shap_gradient, gradient_shap; default: 200)")
    p.add_argument("--n-steps", type=positive_int, default=None,
                   help="quadrature steps (integrated_gradients; default: 50)")
    p.add_argument("--background", choices=("data", "zeros", "blur"), default="data",
                   help="attribution reference: data (real samples of the training split, else of the "
                        "explained data), zeros (an all-zero input) or blur (each input's blurred copy) "
                        "(default: data)")
    p.add_argument("--background-size", type=positive_int, default=10, metavar="K",
                   help="real samples of the data reference (default: 10, as the paper)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    p.add_argument("--shard-index", type=int, default=0, help="which shard of --num-shards to export")
    p.add_argument("--num-shards", type=positive_int, default=1,
                   help="split the data set into this many contiguous shards (one process or machine each)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading processes")
    add_on_error(p, run="the export")
    p.add_argument("--no-resume", action="store_true", help="discard this shard's files and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=run)


def unlabeled_data(path: Path, *, size: int, on_error: str):
    """The image files below ``path`` (or the one image ``path``) as a data set with label -1."""
    from ..data import ImageDataset, list_images

    files = list_images(path) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"--data unlabeled:{path}: no image files found below it")
    root = path if path.is_dir() else path.parent
    return ImageDataset.unlabeled(files, root=root, size=size, on_error=on_error)


def _check(args) -> str:
    """Check the arguments up front (usage errors); return the kind of ``--data``."""
    if not 0 <= args.shard_index < args.num_shards:
        raise UsageError(f"--shard-index must be in [0, --num-shards), got {args.shard_index} of "
                         f"{args.num_shards}")
    check_detector_arg(args.detector, "--detector")
    check_detector_arg(args.rgb_detector, "--rgb-detector")
    if args.data.startswith("unlabeled:"):
        existing_path(args.data.partition(":")[2], "--data")
        return "unlabeled"
    return check_data_arg(args.data)[0]


def _load(name: str | None, device):
    if name is None:
        return None
    from ..detect.checkpoints import load_detector

    return load_detector(name, device=device)


def reference_data(spec: str, kind: str, *, size: int, k: int, on_error: str):
    """The training split the data reference comes from (None: none known; the explained data is used)."""
    from ..data.spec import SYNTH_DEFAULT_SEED, dataset_from_spec, parse_data_spec

    if kind == "synth":
        from ..data import DefocusSynth

        return DefocusSynth(4 * k, size=size, seed=SYNTH_DEFAULT_SEED["train"],
                            version=parse_data_spec(spec)[1].get("version"))
    if kind in ("ff++", "cifake"):
        return dataset_from_spec(spec, size=size, role="train", split="train", on_error=on_error)
    return None


def _summary(out: Path, skipped) -> None:
    for path, reason in skipped:
        print(f"defocus-xai export: skipped {str(path)!r}: {reason}", file=sys.stderr)
    print(f"{store_summary(out)}; skipped {len(skipped)}")


def _settings(args):
    """The attribution options of the command line as one :class:`AttributionSettings`."""
    from ..explain import AttributionSettings

    method = "shap_gradient" if "shap_gradient" in args.methods else args.methods[0]
    try:
        return AttributionSettings(method=method, background=args.background, background_size=args.background_size,
                                   wrapper=args.wrapper, n_samples=args.n_samples, n_steps=args.n_steps,
                                   seed=args.seed, engine=args.engine, sampler=args.sampler,
                                   batch_size=args.batch_size)
    except ValueError as err:
        raise UsageError(str(err).replace("engine=", "--engine ").replace("sampler=", "--sampler ")) from None


def run(args) -> int:
    """Run the export described by the parsed ``args``."""
    from .._device import resolve_device
    from ..data.io import ImageLoadError
    from ..data.spec import dataset_from_spec
    from ..explain.export import export_attributions
    from .evaluate import _detector_size

    kind = _check(args)
    device = resolve_device(args.device)
    det = _load(args.detector, device)
    size = args.size or _detector_size(det)
    if kind == "unlabeled":
        data = unlabeled_data(Path(args.data.partition(":")[2]), size=size, on_error=args.on_error)
    else:
        data = dataset_from_spec(args.data, size=size, role="test", on_error=args.on_error)
    ref = None
    if args.background == "data":
        ref = reference_data(args.data, kind, size=size, k=args.background_size, on_error=args.on_error)
    rgb = _load(args.rgb_detector, device)
    note = bundled_note([args.detector, args.rgb_detector], kind)
    if note:
        print(f"defocus-xai export: {note}", file=sys.stderr)
    try:
        out = export_attributions(
            det, data, args.out, methods=tuple(args.methods), rgb_detector=rgb, settings=_settings(args),
            background_data=ref, chunk_size=args.chunk_size, num_shards=args.num_shards,
            shard_index=args.shard_index, resume=not args.no_resume, progress=not args.quiet, device=args.device,
            num_workers=args.num_workers)
    except ImageLoadError as err:
        raise ImageLoadError(err.path, f"{err.reason} (--on-error skip leaves unreadable images out)") from None
    if not args.quiet:
        _summary(out, list(getattr(data, "skipped", [])))
    return 0
