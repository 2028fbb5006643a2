"""Export defocus maps, scores and SHAP values of a FaceForensics++ tree to an ``.npz`` store.

Examples
--------
The test split of Deepfakes and FaceSwap, 8 frames per video, both bundled detectors::

    python examples/export_ffpp.py /data/FF++ --out exports/ffpp_test --methods Deepfakes FaceSwap \\
        --split test --frames-per-video 8 --compression c23

Your own checkpoints (``defocus-xai train`` or the paper's ``.pth``), the official split files, and the
first of 4 machines (run the others with ``--shard-index 1..3``, then ``defocus-xai merge``)::

    python examples/export_ffpp.py /data/FF++ --out exports/run --detector best.pt --rgb-detector none \\
        --split-files /data/FF++/splits --num-shards 4 --shard-index 0

On built-in data (a tiny FF++-shaped tree of DefocusSynth images written to OUT/ffpp_demo first)::

    python examples/export_ffpp.py --demo --out exports/demo

The FF++ layout (``original_sequences/youtube/<compression>/<frames-dir>/<id>/*.png`` and
``manipulated_sequences/<Method>/<compression>/<frames-dir>/<target>_<source>/*.png``) and the split
policy are those of ``dx.FaceForensicsDataset``; the store format is ``docs/npz_format.md``. Rerunning
the same command resumes an interrupted export. Then draw the figures with
``python examples/figures_from_npz.py OUT --out FIGURES``.
"""

import argparse
import sys
from pathlib import Path

import defocus_xai as dx


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("root", nargs="?", help="FaceForensics++ root (holding original_sequences/, "
                                           "manipulated_sequences/)")
    p.add_argument("--out", required=True, help="output directory of the store")
    p.add_argument("--methods", nargs="+", default=list(dx.data.FF_METHODS), metavar="METHOD",
                   help=f"manipulation methods (default: {' '.join(dx.data.FF_METHODS)})")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test")
    p.add_argument("--split-files", default=None, help="folder with the official train/val/test.json")
    p.add_argument("--frames-per-video", type=int, default=8, help="frames per video folder (default 8)")
    p.add_argument("--compression", default="raw", help="raw, c23 or c40 (default raw)")
    p.add_argument("--frames-dir", default="v1faces", help="frame folder level (default v1faces)")
    p.add_argument("--size", type=int, default=None,
                   help="image size the data set delivers (default: the detector's input size)")
    p.add_argument("--detector", default="bundled-defocus", help="bundled-defocus or a checkpoint path")
    p.add_argument("--rgb-detector", default="bundled-rgb",
                   help="bundled-rgb, a checkpoint path, or 'none' (no rgb_shaps)")
    p.add_argument("--attribution-methods", nargs="+", default=["shap_gradient"], metavar="METHOD",
                   help=f"attribution methods (default shap_gradient; any of {', '.join(dx.explain.METHODS)})")
    p.add_argument("--n-samples", type=int, default=None, help="SHAP draws per sample (default 200)")
    p.add_argument("--background", type=int, default=10,
                   help="SHAP background: the first K real frames of the training split (default 10, as the "
                        "paper); 0: an all-zero input")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--chunk-size", type=int, default=256, help="samples per shard file")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--shard-index", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--num-workers", type=int, default=0, help="image-loading processes")
    p.add_argument("--demo", action="store_true",
                   help="no root: write a tiny FF++-shaped tree of DefocusSynth images to OUT/ffpp_demo")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if (args.root is None) == (not args.demo):
        p.error("give the FF++ ROOT or --demo (one of the two)")
    return args


def write_demo_tree(root: Path, n_videos: int = 6, frames: int = 2, size: int = 128,
                    method: str = "Deepfakes") -> Path:
    """A FaceForensics++-shaped tree of DefocusSynth images: real video ``<k>`` and its fake ``<k>_<k+1>``.

    Frame ``j`` of video ``k`` is DefocusSynth scene ``k * frames + j`` (real) and a fake of the same
    scene, so every fake frame has its real frame. The split is by real video id (70/10/20).
    """
    from PIL import Image

    synth = dx.DefocusSynth(2 * n_videos * frames, size=size, seed=1, families=("splice",))
    real_dir = root / "original_sequences" / "youtube" / "raw" / "v1faces"
    fake_dir = root / "manipulated_sequences" / method / "raw" / "v1faces"
    for k in range(n_videos):
        vid, donor = f"{k:03d}", f"{(k + 1) % n_videos:03d}"
        for j in range(frames):
            real, fake = synth[2 * (k * frames + j)], synth[2 * (k * frames + j) + 1]
            for sample, folder in ((real, real_dir / vid), (fake, fake_dir / f"{vid}_{donor}")):
                folder.mkdir(parents=True, exist_ok=True)
                pixels = (sample["image"].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
                Image.fromarray(pixels).save(folder / f"{j:04d}.png")
    return root


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.demo:
        root = write_demo_tree(out.parent / f"{out.name}_ffpp_demo")
        methods, split = ("Deepfakes",), None
    else:
        root, methods, split = Path(args.root), tuple(args.methods), (None if args.split == "all" else args.split)

    detector = dx.load_detector(args.detector, device=args.device)
    rgb = None if args.rgb_detector.lower() == "none" else dx.load_detector(args.rgb_detector, device=args.device)
    size = args.size or detector.input_size            # the grid of the detector's defocus maps
    dataset = dx.FaceForensicsDataset(root, methods=methods, split=split, frames_per_video=args.frames_per_video,
                                      compression=args.compression, split_files=args.split_files,
                                      frames_dir=args.frames_dir, size=size)
    if args.demo:
        # tiny data: fewer draws and a smaller background keep the demo at a few seconds
        args.n_samples, args.background = args.n_samples or 8, min(args.background, 2)
    # the reference: real frames of the training split, as the paper (the demo tree has no split)
    reference = None if args.demo else dx.FaceForensicsDataset(
        root, methods=methods, split="train", frames_per_video=args.frames_per_video, compression=args.compression,
        split_files=args.split_files, frames_dir=args.frames_dir, size=size)
    print(f"{len(dataset)} frames from {root} ({', '.join(methods)}, split {split or 'all'}); "
          f"{len(dataset.excluded_videos)} video folders left out")
    dx.export_attributions(detector, dataset, out, methods=tuple(args.attribution_methods), rgb_detector=rgb,
                           background=args.background or "zeros", background_data=reference, n_samples=args.n_samples,
                           seed=args.seed,
                           batch_size=args.batch_size, chunk_size=args.chunk_size, num_shards=args.num_shards,
                           shard_index=args.shard_index, device=args.device, num_workers=args.num_workers,
                           progress=not args.quiet)
    if args.num_shards > 1:
        print(f"shard {args.shard_index} of {args.num_shards} written to {out}; when every shard is done, join "
              "the directories with `defocus-xai merge DIR ... --out STORE` (or write them all into one --out)")
        return 0
    store = dx.load_attributions(out)
    print(f"store {out}: {len(store)} samples, keys {', '.join(store.keys())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
