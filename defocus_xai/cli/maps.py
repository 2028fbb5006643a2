"""``defocus-xai maps``: write defocus maps of image files.

For every input image ``<stem>.<ext>`` it writes, in ``--out``:

* ``<stem>_sigma.png``  -- 16-bit gray PNG of ``round(sigma * scale)`` with ``scale = 1000`` (one
  unit = 1/1000 px of sigma on the ``size`` grid); the scale and the estimator config are stored in
  the PNG text chunks ``defocus_xai:scale`` and ``defocus_xai:config``;
* ``<stem>_sigma.json`` -- sidecar with the scale, unit, source file, ``edgeless`` flag and the
  estimator config (the recipe of the map);
* ``<stem>_sigma.npy``  -- the float32 sigma map ``(size, size)`` in pixels.

To read a PNG back: ``sigma = np.asarray(Image.open(p), dtype=np.float32) / scale``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PNG_SCALE = 1000.0
_PNG_MAX = 65535


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
        help="write defocus maps (sigma in px) of images as 16-bit PNG + .npy + .json",
        description="Estimate defocus-blur maps of image files. Each map is written as "
                    "<stem>_sigma.png (16-bit, sigma * 1000), <stem>_sigma.npy (float32 px) and "
                    "<stem>_sigma.json (scale and estimator config).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--size", type=int, default=299, help="map size in px (default 299)")
    p.add_argument("--std1", type=float, default=None, help="first re-blur std (default 1.5)")
    p.add_argument("--std2", type=float, default=None, help="second re-blur std (default 2.0)")
    p.add_argument("--propagation", choices=("guided", "matting", "none"), default="guided",
                   help="sparse-to-dense propagation (default guided)")
    p.add_argument("--recipe", choices=("ours", "reference"), default="ours",
                   help="estimator recipe (default ours)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    p.set_defaults(func=run)


def _load(path: Path) -> np.ndarray:
    try:
        from ..data.io import load_image
    except ImportError:  # pragma: no cover - the data package ships with the library
        load_image = None
    if load_image is not None:
        return load_image(path)
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - reported with the file name
        raise ValueError(f"cannot read image {str(path)!r}: {exc}") from exc


def _write(out: Path, stem: str, sigma: np.ndarray, edgeless: bool, config: dict, source: Path):
    from PIL import Image, PngImagePlugin

    q = np.clip(np.rint(sigma.astype(np.float64) * PNG_SCALE), 0, _PNG_MAX).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    info.add_text("defocus_xai:scale", repr(PNG_SCALE))
    info.add_text("defocus_xai:unit", "sigma px = value / scale")
    info.add_text("defocus_xai:config", json.dumps(config, sort_keys=True))
    Image.fromarray(q).save(out / f"{stem}_sigma.png", pnginfo=info)
    np.save(out / f"{stem}_sigma.npy", sigma.astype(np.float32))
    meta = {
        "source": str(source),
        "scale": PNG_SCALE,
        "unit": "sigma in pixels of the size x size grid = png value / scale",
        "edgeless": bool(edgeless),
        "estimator": config,
    }
    (out / f"{stem}_sigma.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def run(args: argparse.Namespace) -> int:
    """Run ``defocus-xai maps`` with parsed arguments; returns the exit code.

    Examples
    --------
    >>> from defocus_xai.cli import main
    >>> main(["maps", "photo.jpg", "--out", "maps/"])  # doctest: +SKIP
    0
    """
    import torch
    from tqdm.auto import tqdm

    from ..defocus import DefocusEstimator

    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"defocus-xai maps: no such file(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        print(f"defocus-xai maps: several inputs share the file stem(s) {dup}; their maps would "
              "overwrite each other", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    est = DefocusEstimator(args.size, std1=args.std1, std2=args.std2,
                           propagation=args.propagation, recipe=args.recipe, device=args.device)
    config = est.config()
    device = torch.device(args.device) if args.device else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    with tqdm(total=len(paths), unit="img", desc="defocus maps") as bar:
        for start in range(0, len(paths), args.batch_size):
            chunk = paths[start:start + args.batch_size]
            try:
                images = [_load(p) for p in chunk]
            except ValueError as exc:
                print(f"defocus-xai maps: {exc}", file=sys.stderr)
                return 1
            from ..defocus.estimator import resize_batch
            from .._images import as_image_batch

            # Images of different sizes are resized one by one to the map grid, then batched.
            batch = torch.cat([resize_batch(as_image_batch(im, device=device,
                                                           name=str(p)), args.size)
                               for im, p in zip(images, chunk)])
            with torch.no_grad():
                res = est(batch)
            dense = res.dense[:, 0].cpu().numpy()
            edgeless = res.edgeless.cpu().numpy()
            for p, sigma, flag in zip(chunk, dense, edgeless):
                _write(out, p.stem, sigma, flag, config, p)
            bar.update(len(chunk))
    return 0
