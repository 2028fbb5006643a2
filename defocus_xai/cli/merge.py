"""``defocus-xai merge``: join the store folders of several machines into one store (a folder or one .npz)."""

from __future__ import annotations

from ._common import existing_path, store_summary


def register(subparsers) -> None:
    """Add the ``merge`` sub-command."""
    p = subparsers.add_parser(
        "merge",
        help="join store folders (shards of one data set) into one store folder or one .npz file",
        description="Join the shard files of several exports made with the same settings: hard-linked "
                    "(or copied) into one folder with a new index.json, or assembled into one .npz file "
                    "when --out ends in .npz. Overlapping samples, different settings or grids are an error; "
                    "one merge or export writes into --out at a time.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="store folders (or their index.json)")
    p.add_argument("--out", required=True, help="destination folder, or NAME.npz for one file")
    p.add_argument("--copy", action="store_true", help="copy instead of hard-linking")
    p.add_argument("--quiet", action="store_true", help="no summary")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the merge described by the parsed ``args``."""
    from ..store import merge_exports

    for d in args.dirs:
        existing_path(d, "DIR")
    out = merge_exports(args.dirs, args.out, link=not args.copy)
    if not args.quiet:
        print(store_summary(out))
    return 0
