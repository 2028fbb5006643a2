"""``defocus-xai prepare``: data sets from their original downloads (``prepare ffpp``: FaceForensics++ videos
and mask videos -> the face-crop frames and masks that ``FaceForensicsDataset`` reads). docs/prepare.md.
"""

from __future__ import annotations

import argparse
import sys

from ._common import UsageError, add_no_progress, add_on_error, existing_path, positive_int

_PROG = "defocus-xai prepare ffpp"


def register(subparsers) -> None:
    """Add the ``prepare`` sub-command (with its ``ffpp`` sub-command) to an ``argparse`` sub-parser set.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``parser.add_subparsers()``.

    Examples
    --------
    >>> import argparse
    >>> from defocus_xai.cli import prepare
    >>> p = argparse.ArgumentParser(); prepare.register(p.add_subparsers())
    >>> p.parse_args(["prepare", "ffpp", "FF++", "--out", "o"]).frames_per_video
    32
    """
    p = subparsers.add_parser(
        "prepare",
        help="prepare a data set from its original download (ffpp: FaceForensics++ videos -> face crops)",
        description="Prepare a data set from its original download.",
    )
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    sub = p.add_subparsers(dest="dataset", metavar="DATASET")
    f = sub.add_parser(
        "ffpp",
        help="FaceForensics++ videos and mask videos -> face-crop frames and masks",
        description="Sample frames of every FaceForensics++ video, crop the largest face as FaceForensics++ "
                    "does (dlib's frontal face detector, box x1.3, square), crop the mask videos with the "
                    "same boxes, and write the layout FaceForensicsDataset reads. Resumable: complete "
                    "videos are skipped. Needs the 'ffpp' extra: pip install -e \".[ffpp]\".",
    )
    f.add_argument("root", metavar="ROOT", help="the download's root (original_sequences/, manipulated_sequences/)")
    f.add_argument("--out", required=True, metavar="DIR", help="output root (may be ROOT) (required)")
    f.add_argument("--frames-per-video", type=int, default=32,
                   help="evenly spaced frames per video (default: 32; 0 for every frame)")
    f.add_argument("--methods", nargs="*", default=None, metavar="METHOD",
                   help="manipulation methods (default: those of Deepfakes, Face2Face, FaceSwap, "
                        "NeuralTextures, FaceShifter present; none given: real videos only)")
    f.add_argument("--compression", default="c23", help="raw, c23 or c40 (default: c23)")
    f.add_argument("--frames-dir", default="v1faces", help="frame folder level name (default: v1faces)")
    f.add_argument("--scale", type=float, default=1.3, help="face box enlargement (default: 1.3)")
    f.add_argument("--shard-index", type=int, default=0, help="shard to process, from 0 (default: 0)")
    f.add_argument("--num-shards", type=positive_int, default=1,
                   help="split the sorted video list into this many contiguous shards (default: 1)")
    add_on_error(f, item="video", skipped="is listed in the report")
    add_no_progress(f)
    f.set_defaults(func=run_ffpp)


def run_ffpp(args: argparse.Namespace) -> int:
    """Run ``prepare ffpp`` for parsed arguments; print the closing line; return the exit code.

    A missing ``ROOT`` or a bad flag value is a usage error (exit 2); an unreadable video (with
    ``--on-error raise``) or a missing ``ffpp`` extra a runtime error (exit 1).

    Examples
    --------
    >>> from defocus_xai.cli import main
    >>> main(["prepare", "ffpp", "/data/FF++", "--out", "/data/FF++"])    # doctest: +SKIP
    0
    """
    from ..data.prepare import prepare_ffpp

    existing_path(args.root, "ROOT")
    if args.frames_per_video < 0:
        raise UsageError(f"--frames-per-video must be >= 0, got {args.frames_per_video}")
    if not 0 <= args.shard_index < args.num_shards:
        raise UsageError(f"--shard-index must be in [0, --num-shards - 1], got {args.shard_index} with "
                         f"--num-shards {args.num_shards}")
    try:
        report = prepare_ffpp(
            args.root, args.out,
            frames_per_video=args.frames_per_video or None,
            methods=args.methods,
            compression=args.compression,
            frames_dir=args.frames_dir,
            scale=args.scale,
            shard_index=args.shard_index,
            num_shards=args.num_shards,
            on_error=args.on_error,
            progress=not args.no_progress,
        )
    except ImportError as err:
        print(f"{_PROG}: error: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0
