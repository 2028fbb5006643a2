"""Defocus maps of every image in a folder (recursively), with the folder structure kept.

Examples
--------
Maps of your images (``photos/a.jpg`` -> ``maps/a_sigma.{png,npy,json}`` and ``maps/a_preview.png``,
``photos/x/b.png`` -> ``maps/x/b_*``), plus a triptych (image, sparse map, dense map) of the first 4::

    python examples/maps_for_folder.py photos/ --out maps/ --preview 4

On built-in data (8 DefocusSynth images rendered into ``maps/synth_images`` first)::

    python examples/maps_for_folder.py --synth 8 --out maps/

The maps come from one call of ``defocus-xai maps`` on the folder (see ``docs/estimator.md`` for the
file format: a 16-bit PNG of ``sigma * 1000``, the float32 ``.npy`` in pixels, a ``.json`` with the
original size, the scale per axis and the estimator's configuration, and a colour preview); the
triptychs use ``dx.estimate_defocus`` and ``dx.plot.defocus_triptych``.
"""

import argparse
import sys
from pathlib import Path

import defocus_xai as dx
from defocus_xai.cli import main as cli
from defocus_xai.cli.maps import find_images


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("folder", nargs="?", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--size", type=int, default=299, help="map size in px (default 299)")
    p.add_argument("--recipe", choices=("ours", "reference"), default="ours", help="estimator recipe")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--preview", type=int, default=0, metavar="K",
                   help="also write a triptych PNG of the first K images into OUT/preview")
    p.add_argument("--synth", type=int, default=0, metavar="N",
                   help="no folder: render N DefocusSynth images into OUT/synth_images and map those")
    args = p.parse_args(argv)
    if (args.folder is None) == (args.synth == 0):
        p.error("give a FOLDER or --synth N (one of the two)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.synth:
        folder = out / "synth_images"
        code = cli(["synth", "--n", str(args.synth), "--size", "128", "--seed", "1", "--out", str(folder),
                    "--quiet"])
        if code:
            return code
        folder = folder / "images"
    else:
        folder = Path(args.folder)
        if not folder.is_dir():
            print(f"maps_for_folder: not a folder: {folder}", file=sys.stderr)
            return 2
    options = ["--size", str(args.size), "--recipe", args.recipe, "--batch-size", str(args.batch_size)]
    if args.device:
        options += ["--device", args.device]
    code = cli(["maps", str(folder), "--out", str(out), *options])
    if code:
        return code

    if args.preview:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        (out / "preview").mkdir(parents=True, exist_ok=True)
        for f, _ in find_images([folder])[:args.preview]:
            image = dx.load_image(f)
            result = dx.estimate_defocus(image, size=args.size, recipe=args.recipe, device=args.device)
            fig = dx.plot.defocus_triptych(image, result=result, title=f.name)
            fig.savefig(out / "preview" / f"{f.stem}_triptych.png", dpi=120)
            plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
