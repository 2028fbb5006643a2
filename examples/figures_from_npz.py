"""Every paper figure from existing ``.npz`` attribution stores, with a ``figures.md`` index.

Examples
--------
From a store written by ``defocus-xai export``, ``examples/export_ffpp.py`` or ``dx.export_attributions``
(a store folder or one ``.npz`` file)::

    python examples/figures_from_npz.py exports/ffpp_test --out figures/ffpp_test

Several stores are read as one, in order, e.g. the shard directories of several machines before
``defocus-xai merge`` (each one warns that it holds only part of the export)::

    python examples/figures_from_npz.py exports/run_shard0 exports/run_shard1 --out figures/run --formats png

The reference notebooks' files (object arrays: numpy reads them only by unpickling, which runs code from
the file, so only for files you trust)::

    python examples/figures_from_npz.py --legacy-pair shap_data_real.npz shap_data_fake_Deepfakes.npz \\
        --allow-legacy-pickle --out figures/reference

On built-in data (a small store of DefocusSynth exported with the bundled detectors first)::

    python examples/figures_from_npz.py --demo --out figures/demo

Which figures are drawn depends on the keys present (``docs/figures.md``); ``figures.md`` in the output
folder lists each file with its caption and numbers.
"""

import argparse
import sys
from pathlib import Path

import defocus_xai as dx


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("stores", nargs="*", metavar="STORE", help="store directories or .npz files")
    p.add_argument("--out", required=True, help="output folder of the figures (created)")
    p.add_argument("--legacy-pair", nargs=2, metavar=("REAL_NPZ", "FAKE_NPZ"),
                   help="the reference notebooks' shap_data_real.npz and shap_data_fake_<Method>.npz")
    p.add_argument("--allow-legacy-pickle", action="store_true",
                   help="allow reading the reference's pickled object arrays (trusted files only)")
    p.add_argument("--formats", nargs="+", default=["png", "pdf"], help="matplotlib formats (default png pdf)")
    p.add_argument("--max-examples", type=int, default=3, help="example pairs per per-example figure")
    p.add_argument("--threshold", type=float, default=0.1, help="binary mask threshold (default 0.1)")
    p.add_argument("--window", type=int, default=15, help="local variance window (default 15)")
    p.add_argument("--embed-method", choices=("tsne", "pca", "umap"), default="tsne")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    p.add_argument("--n-permutations", type=int, default=200, help="alignment baseline permutations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dpi", type=int, default=300)
    p.add_argument("--demo", action="store_true",
                   help="no store: export 24 DefocusSynth samples with the bundled detectors to OUT/demo_store")
    args = p.parse_args(argv)
    given = sum([bool(args.stores), args.legacy_pair is not None, args.demo])
    if given != 1:
        p.error("give STORE(s), --legacy-pair REAL FAKE or --demo (exactly one of them)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.demo:
        source = out / "demo_store"
        dx.export_attributions(dx.load_detector("bundled-defocus"), dx.DefocusSynth(24, size=128, seed=1), source,
                               rgb_detector=dx.load_detector("bundled-rgb"), background=4, n_samples=16,
                               progress=False)
    elif args.legacy_pair:
        source = tuple(args.legacy_pair)
    else:
        source = args.stores if len(args.stores) > 1 else args.stores[0]
    store = dx.load_attributions(source, allow_legacy_pickle=args.allow_legacy_pickle)
    print(f"{len(store)} samples ({int((store['labels'] == 1).sum())} fake), keys: {', '.join(store.keys())}")
    settings = dx.pipeline.PipelineSettings(threshold=args.threshold, window=args.window, n_boot=args.n_boot,
                                            n_permutations=args.n_permutations, seed=args.seed,
                                            embed_method=args.embed_method, max_examples=args.max_examples)
    paths = dx.paper_figures(store, out, settings=settings, formats=tuple(args.formats), dpi=args.dpi)
    print(f"{len(paths)} files written; index: {paths[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
