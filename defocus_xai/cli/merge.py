"""``defocus-xai merge``: join the export directories of several machines into one store."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add the ``merge`` sub-command."""
    p = subparsers.add_parser(
        "merge",
        help="join export directories (shards of one data set) into one store",
        description="Hard-link (or copy) the shard files of several exports made with the same settings "
                    "into one directory and write its index.json; overlapping samples are an error.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="export directories (or their index.json)")
    p.add_argument("--out", required=True, help="destination directory")
    p.add_argument("--copy", action="store_true", help="copy instead of hard-linking")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..explain.export import merge_exports
    from ..explain.store import read_index

    out = merge_exports(args.dirs, args.out, link=not args.copy)
    if not args.quiet:
        idx = read_index(out)
        print(f"{out}: {idx['num_samples']} of {idx.get('total_samples')} samples; complete={idx['complete']}")
    return 0
