"""``defocus-xai synth``: write a DefocusSynth benchmark to disk.

Output layout (``--out DIR``)::

    DIR/images/000000_real.png           8-bit RGB image
    DIR/gt/000000_real.npz               sigma (H, W) float32 px, depth (H, W) float32 m,
                                         mask (H, W) uint8 (plain arrays, allow_pickle=False)
    DIR/index.csv                        file, label, family, source_id, seed, index,
                                         jpeg_quality, f_number, focal_length, focus_distance,
                                         version, gt (paths relative to DIR)

Every file is written to a temporary name in its folder and then renamed, so an interrupted
run leaves no half-written file; ``index.csv`` is written last.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile

#: Fake family names of the newest version (kept here so ``--help`` does not import torch); a test checks them
#: against synth.FAMILIES_V2.
_FAMILY_NAMES = ("no_dof", "splice", "depth_inconsistent", "generator_smoothing", "face_swap")
_VERSIONS = ("1.0", "2.0")
_COLUMNS = ["file", "label", "family", "source_id", "seed", "index", "jpeg_quality", "f_number", "focal_length",
            "focus_distance", "version", "gt"]


def _atomic_write(path: str, write) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it to ``path``."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _parse_jpeg(text: str):
    if text.lower() in ("none", "off", "0"):
        return None
    parts = [int(p) for p in text.replace(",", ":").split(":")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return tuple(parts)
    raise argparse.ArgumentTypeError(f"--jpeg must be 'none', Q or LO:HI, got {text!r}")


def run(args: argparse.Namespace) -> int:
    """Render ``args.n`` samples and write images, ground truth and the index."""
    import numpy as np
    from PIL import Image

    from .._progress import progress
    from ..data.synth import DefocusSynth

    ds = DefocusSynth(args.n, size=args.size, families=tuple(args.families) if args.families else None,
                      seed=args.seed, fake_fraction=args.fake_fraction, jpeg=args.jpeg, version=args.version)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "gt"), exist_ok=True)
    rows = []
    for i in progress(range(len(ds)), desc="synth", unit="img", enabled=not args.quiet):
        s = ds[i]
        stem = f"{i:06d}_{s['family']}"
        rel_img, rel_gt = f"images/{stem}.png", f"gt/{stem}.npz"
        u8 = np.round(s["image"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
        _atomic_write(os.path.join(out, rel_img), lambda fh, u8=u8: Image.fromarray(u8).save(fh, format="PNG"))
        gt = {"sigma": s["sigma"][0].numpy(), "depth": s["depth"][0].numpy(), "mask": s["mask"][0].numpy()}
        _atomic_write(os.path.join(out, rel_gt), lambda fh, gt=gt: np.savez(fh, **gt))
        rows.append({"file": rel_img, "gt": rel_gt, **{k: s[k] for k in _COLUMNS if k in s}})

    def write_index(fh):
        import io

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        fh.write(text.getvalue().encode("utf-8"))

    _atomic_write(os.path.join(out, "index.csv"), write_index)
    if not args.quiet:
        print(f"wrote {len(rows)} samples to {out}")
    return 0


def register(subparsers) -> None:
    """Add the ``synth`` sub-command."""
    p = subparsers.add_parser(
        "synth",
        help="write a DefocusSynth benchmark (PNG images, ground-truth .npz, index.csv)",
        description="Render DefocusSynth samples (physically rendered depth of field with ground truth) "
                    "to PNG images, one ground-truth .npz per sample (sigma, depth, mask) and index.csv.",
    )
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--size", type=int, default=128, help="image height and width (default 128)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data set (default 0)")
    p.add_argument("--families", nargs="+", default=None, choices=_FAMILY_NAMES, metavar="FAMILY",
                   help=f"fake families (default: every family of the version; {', '.join(_FAMILY_NAMES)}; "
                        "face_swap needs --version 2.0)")
    p.add_argument("--version", choices=_VERSIONS, default=None,
                   help="generator version (default: the library's default, DefocusSynth's SYNTH_VERSION)")
    p.add_argument("--fake-fraction", type=float, default=0.5,
                   help="fraction of fakes; 0.5 (default) gives real/fake pairs of one scene")
    p.add_argument("--jpeg", type=_parse_jpeg, default=(75, 95),
                   help="JPEG quality: 'none', Q, or LO:HI drawn per scene (default 75:95)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)
