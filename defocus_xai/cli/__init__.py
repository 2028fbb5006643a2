"""The ``defocus-xai`` command line.

Each module in this package that defines ``register(subparsers)`` adds one sub-command; the
function it registers (``set_defaults(func=...)``) receives the parsed arguments and returns an
exit code.
"""

import argparse
import importlib
import pkgutil
import sys

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
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, KeyError) as err:
        # Bad input (a missing file, an unreadable image, a malformed checkpoint or store): one clear
        # line naming the problem instead of a traceback. Programming errors still raise.
        print(f"defocus-xai {args.command}: error: {err}", file=sys.stderr)
        return 2


