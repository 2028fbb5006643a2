"""``defocus-xai maps``: defocus maps of image files and folders.

Per image: ``<stem>_sigma.png`` (16-bit, sigma x 1000), ``<stem>_sigma.npy`` (float32 px),
``<stem>_sigma.json`` (sizes, scales, estimator config) and ``<stem>_preview.png`` (colour), each written
atomically. The formats: ``docs/estimator.md`` ("Command line").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from ._common import add_no_progress, add_on_error

PNG_SCALE = 1000.0
_PNG_MAX = 65535
PREVIEW_COLORMAP = "viridis"
_PROG = "defocus-xai maps"


def register(subparsers) -> None:
    """Add the ``maps`` sub-command to an ``argparse`` sub-parser set.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``parser.add_subparsers()``.

    Examples
    --------
    >>> import argparse
    >>> from defocus_xai.cli import maps
    >>> p = argparse.ArgumentParser(); maps.register(p.add_subparsers())
    >>> p.parse_args(["maps", "a.png", "--out", "o"]).size
    299
    """
    p = subparsers.add_parser(
        "maps",
        help="write defocus maps (sigma in px) of images: 16-bit PNG, .npy, .json and a colour preview",
        description="Estimate defocus-blur maps of image files and folders (searched recursively). "
                    "Each map is written as <stem>_sigma.png (16-bit, sigma * 1000), <stem>_sigma.npy "
                    "(float32 px), <stem>_sigma.json (original size, scale per axis, estimator config) "
                    "and <stem>_preview.png (colour preview, 0 to sigma_max).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES",
                   help="image files or folders (folders: every .png/.jpg/.jpeg/.bmp/.tif/.tiff/.webp "
                        "file below them, sub-folders kept in --out)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder, created (required)")
    p.add_argument("--size", type=int, default=299, help="map grid in px (default: 299)")
    p.add_argument("--std1", type=float, default=None,
                   help="first re-blur std in px (default: 1.5, or 2.0 with --recipe reference)")
    p.add_argument("--std2", type=float, default=None,
                   help="second re-blur std in px (default: 2.0, or 2.5 with --recipe reference)")
    p.add_argument("--propagation", choices=("guided", "matting", "none"), default="guided",
                   help="sparse-to-dense propagation (default: guided)")
    p.add_argument("--recipe", choices=("ours", "robust", "reference"), default="ours",
                   help="estimator recipe (default: ours)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default: 16)")
    add_on_error(p, skipped="is skipped and listed at the end")
    p.add_argument("--no-preview", action="store_true",
                   help="do not write the colour preview PNGs (default: write them)")
    add_no_progress(p)
    p.set_defaults(func=run)


def find_images(paths) -> list[tuple[Path, Path]]:
    """Image files named by ``paths`` (files, or folders searched recursively), with their output names.

    Parameters
    ----------
    paths : sequence of str or Path
        Files are taken as given; folders contribute every image file below them (by extension,
        hidden files and folders left out, natural order).

    Returns
    -------
    list of (Path, Path)
        ``(file, name)``: ``name`` is the output path without suffix relative to the output folder
        (``stem`` for a file, ``sub/folders/stem`` for a file found in a folder).

    Raises
    ------
    FileNotFoundError
        A path that does not exist.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "x").mkdir(); (d / "x" / "a.png").touch()
    >>> [str(name) for _, name in find_images([d])]
    ['x/a']
    """
    from ..data import list_images

    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [(f, f.relative_to(p).with_suffix("")) for f in list_images(p)]
        elif p.is_file():
            found.append((p, Path(p.stem)))
        else:
            raise FileNotFoundError(f"no such file or folder: {str(p)!r}")
    return found


def _flags(message: str) -> str:
    """An estimator error message with the estimator's setting names spelled as this command's flags."""
    message = re.sub(r"\b(std1|std2|size|propagation|recipe)\b(?=\s*(=|<|must))", r"--\1", message)
    return re.sub(r"(<\s*)(std1|std2)\b", r"\1--\2", message)


def _error(message: str, code: int) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return code


def _write_atomically(writers: dict) -> None:
    """Run ``writer(tmp)`` for each ``{final: writer}``, then rename all: no partial file is ever left."""
    tmps = {}
    try:
        for final, write in writers.items():
            tmps[final] = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            write(tmps[final])
        for final, tmp in tmps.items():
            os.replace(tmp, final)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


def _png16(sigma: np.ndarray, config: dict):
    from PIL import Image, PngImagePlugin

    q = np.clip(np.rint(sigma.astype(np.float64) * PNG_SCALE), 0, _PNG_MAX).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add_text("defocus_xai:scale", repr(PNG_SCALE))
    info.add_text("defocus_xai:unit", "sigma px = value / scale")
    info.add_text("defocus_xai:config", json.dumps(config, sort_keys=True))
    return lambda path: Image.fromarray(q).save(path, format="PNG", pnginfo=info)


def _preview(sigma: np.ndarray, vmax: float):
    from matplotlib import colormaps
    from PIL import Image

    rgb = colormaps[PREVIEW_COLORMAP](np.clip(sigma / vmax, 0.0, 1.0))[..., :3]
    image = Image.fromarray(np.rint(rgb * 255).astype(np.uint8))
    return lambda path: image.save(path, format="PNG")


def _npy(sigma: np.ndarray):
    def write(path):
        with open(path, "wb") as f:
            np.save(f, sigma.astype(np.float32))
    return write


def _write_map(target: Path, source: Path, original: tuple, sigma: np.ndarray, edgeless: bool,
               config: dict, preview: bool) -> None:
    """All files of one map, atomically (``target`` is the output path without suffix)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    (h, w), (gh, gw) = original, sigma.shape
    files = {target.with_name(f"{target.name}_sigma.png"): _png16(sigma, config),
             target.with_name(f"{target.name}_sigma.npy"): _npy(sigma)}
    meta = {
        "source": str(source),
        "original_size": [int(h), int(w)],
        "map_size": [int(gh), int(gw)],
        "resize_scale": {"y": gh / h, "x": gw / w},
        "scale": PNG_SCALE,
        "unit": "sigma in pixels of the map grid = png value / scale; in pixels of the original image: "
                "sigma / resize_scale (per axis)",
        "edgeless": bool(edgeless),
        "estimator": config,
    }
    if preview:
        name = f"{target.name}_preview.png"
        files[target.with_name(name)] = _preview(sigma, config["sigma_max"])
        meta["preview"] = {"file": name, "colormap": PREVIEW_COLORMAP, "vmin": 0.0,
                           "vmax": config["sigma_max"]}
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    files[target.with_name(f"{target.name}_sigma.json")] = lambda path: Path(path).write_text(text)
    _write_atomically(files)


def _load(jobs, on_error: str, skipped: list, size: int) -> list:
    """``[(file, name, image)]`` of the readable ``jobs``; unreadable ones go to ``skipped`` or raise."""
    from ..data.io import ImageLoadError, load_image
    from ..defocus.resize import upscale_note

    loaded = []
    for path, name in jobs:
        try:
            image = load_image(path)
        except ImageLoadError as exc:
            if on_error == "raise":
                raise
            skipped.append((path, exc.reason))
            continue
        note = upscale_note(image.shape[:2], size)
        if note is not None:
            print(f"{_PROG}: warning: {path}: {note}", file=sys.stderr)
        loaded.append((path, name, image))
    return loaded


class _UsageError(Exception):
    """A bad command line (exit code 2); the message names the flag."""


def _check(args):
    """``(jobs, estimator)`` for valid arguments, else :class:`_UsageError` naming the flag."""
    import torch

    from .._device import resolve_device
    from ..defocus import DefocusEstimator

    if args.batch_size < 1:
        raise _UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        device = resolve_device(args.device)
    except RuntimeError as exc:
        raise _UsageError(f"--device {args.device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise _UsageError(f"--device {args.device!r}: CUDA is not available")
    try:
        jobs = find_images(args.images)
        est = DefocusEstimator(size=args.size, std1=args.std1, std2=args.std2,
                               propagation=args.propagation, recipe=args.recipe, device=device)
    except (FileNotFoundError, ValueError) as exc:
        raise _UsageError(_flags(str(exc))) from None
    if not jobs:
        raise _UsageError(f"no image files found in {', '.join(args.images)}")
    names = [str(name) for _, name in jobs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _UsageError(f"several inputs share the output name(s) {dup}; their maps would "
                          "overwrite each other")
    return jobs, est


def run(args: argparse.Namespace) -> int:
    """Run ``defocus-xai maps`` with parsed arguments; returns the exit code.

    0: done (skipped files, with ``--on-error skip``, are listed); 1: an image could not be read or a
    map not written; 2: a usage error (bad flag value, missing input, clashing output names).

    Examples
    --------
    >>> from defocus_xai.cli import main
    >>> main(["maps", "photo.jpg", "photos/", "--out", "maps/"])  # doctest: +SKIP
    0
    """
    import torch

    from .._images import as_image_batch
    from .._progress import progress
    from ..data.io import ImageLoadError
    from ..defocus.resize import resize_batch

    try:
        jobs, est = _check(args)
    except _UsageError as exc:
        return _error(str(exc), 2)
    out, config = Path(args.out), est.config()
    written, skipped = 0, []
    with progress(total=len(jobs), unit="img", desc="defocus maps", enabled=not args.no_progress) as bar:
        for start in range(0, len(jobs), args.batch_size):
            try:
                loaded = _load(jobs[start:start + args.batch_size], args.on_error, skipped, args.size)
            except ImageLoadError as exc:
                return _error(f"{exc} ({written} maps written before it; --on-error skip skips "
                              "unreadable images)", 1)
            if loaded:
                # Images of different sizes are resized one by one to the map grid, then batched.
                batch = torch.cat([resize_batch(as_image_batch(im, device=est.device, name=str(p)), args.size)
                                   for p, _, im in loaded])
                with torch.no_grad(), warnings.catch_warnings():
                    # Edgeless images are reported below, by file name.
                    warnings.filterwarnings("ignore", "estimate_defocus: no edge", RuntimeWarning)
                    res = est(batch)
                for (path, name, image), sigma, flag in zip(loaded, res.dense[:, 0].cpu().numpy(),
                                                            res.edgeless.cpu().numpy()):
                    try:
                        _write_map(out / name, path, image.shape[:2], sigma, flag, config,
                                   not args.no_preview)
                    except OSError as exc:
                        return _error(f"cannot write the maps of {str(path)!r} to {str(out)!r}: {exc}", 1)
                    written += 1
                    if flag:
                        print(f"{_PROG}: warning: {path}: no edge found (constant or featureless image); "
                              "its map is all zeros", file=sys.stderr)
            bar.update(min(args.batch_size, len(jobs) - start))
    for path, reason in skipped:
        print(f"{_PROG}: skipped {str(path)!r}: {reason}", file=sys.stderr)
    print(f"wrote {written} maps to {out}, skipped {len(skipped)}")
    return 0
