"""The ``defocus-xai`` command line.

Each module in this package that defines ``register(subparsers)`` adds one sub-command; the
function it registers (``set_defaults(func=...)``) receives the parsed arguments and returns an
exit code. Every sub-command gets :class:`~defocus_xai.cli._common.HelpFormatter` (defaults shown, no
reST markup) and one error convention: ``defocus-xai <command>: error: <message>`` on stderr, exit
status 2 for a usage error, 1 for a runtime error (see ``docs/cli.md``).
"""

import argparse
import importlib
import pkgutil
import sys

from .._version import __version__
from ._common import HelpFormatter, UsageError, flag_names


class _CommandParser(argparse.ArgumentParser):
    """A sub-command's parser: always the shared :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command of this package registered.

    Examples
    --------
    >>> "export" in build_parser().format_help()
    True
    """
    parser = argparse.ArgumentParser(
        prog="defocus-xai", formatter_class=HelpFormatter,
        description="Defocus-map deepfake forensics: maps, detectors, attributions, analyses, figures.",
    )
    parser.add_argument("--version", action="version", version=f"defocus-xai {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser


def main(argv=None) -> int:
    """Entry point of the ``defocus-xai`` console script; returns the exit status.

    0: success; 2: a usage error (a bad flag or value, a path given that does not exist); 1: a runtime
    error (a file that exists but cannot be read, a malformed checkpoint or store, non-finite results, a
    full disk, an output another process writes into). Errors are one line on stderr,
    ``defocus-xai <command>: error: <message>``, naming flags as they are typed.

    Examples
    --------
    >>> main(["merge", "no/such/store", "--out", "x"])  # doctest: +SKIP
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    sub = _subparser(parser, args.command)
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        sub.print_usage(sys.stderr)
        print(f"{sub.prog}: error: {flag_names(str(err), sub)}", file=sys.stderr)
        return 2
    except (ValueError, OSError, KeyError) as err:
        # Bad input (an unreadable image, a malformed checkpoint or store, NaN results): one clear line
        # naming the problem instead of a traceback. Programming errors still raise.
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{sub.prog}: error: {flag_names(str(msg), sub)}", file=sys.stderr)
        return 1
