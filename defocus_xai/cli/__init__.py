"""The ``defocus-xai`` command line.

Each module in this package that defines ``register(subparsers)`` adds one sub-command; the
function it registers (``set_defaults(func=...)``) receives the parsed arguments and returns an
exit code.
"""

import argparse
import importlib
import pkgutil

from .._version import __version__


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command of this package registered."""
    parser = argparse.ArgumentParser(
        prog="defocus-xai",
        description="Defocus-map deepfake forensics: maps, detectors, attributions, analyses, figures.",
    )
    parser.add_argument("--version", action="version", version=f"defocus-xai {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``defocus-xai`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


