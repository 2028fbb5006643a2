"""What every ``defocus-xai`` command shares: the help formatter, the usage error, argument checks, and
the translation of library messages into the command line's flag names.

The error convention (``defocus-xai <command>: error: <message>`` on stderr; exit 2 for a usage error,
1 for a runtime error) is described in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

__all__ = ["HelpFormatter", "UsageError", "positive_int", "existing_path", "check_detector_arg",
           "check_data_arg", "flag_names", "BUNDLED_NOTE", "bundled_note", "store_summary", "add_on_error",
           "add_no_progress"]

BUNDLED_NOTE = ("note: bundled detectors are trained on the synthetic DefocusSynth benchmark only; their scores "
                "on real photographs are not calibrated")
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _plain(text: str) -> str:
    """Help text without reST markup: ``:func:`~a.b``` -> ``a.b``, double and single backticks dropped."""
    return _ROLE.sub(r"\1", text).replace("``", "").replace("`", "")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; every option's default shown; no reST backticks.

    The default is appended as ``(default: X)`` unless the help text already says what the default is.

    Examples
    --------
    >>> p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    >>> _ = p.add_argument("--size", type=int, default=128, help="``size`` in px")
    >>> "size in px (default: 128)" in p.format_help()
    True
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = _plain(action.help or "")
        if (action.default is argparse.SUPPRESS or not action.option_strings or action.required
                or "default" in text.lower()):
            return text
        default = action.default
        if isinstance(action, argparse._StoreTrueAction):
            shown = "off"
        elif isinstance(action, argparse._StoreFalseAction):
            shown = "on"
        elif default is None:
            shown = "none"
        elif isinstance(default, (list, tuple)):
            shown = " ".join(map(str, default))
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})".strip()

    def _format_text(self, text: str) -> str:
        return super()._format_text(_plain(text))


class UsageError(Exception):
    """A bad command line (exit status 2): a flag's value is invalid, or a path given does not exist."""


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1.

    Examples
    --------
    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def existing_path(path: str, flag: str) -> Path:
    """``path`` as a Path; a path given on the command line that does not exist is a :class:`UsageError`."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{flag} {path!r}: no such file or folder")
    return p


def check_detector_arg(name: str | None, flag: str = "--detector") -> None:
    """A detector argument is ``bundled-*`` or an existing checkpoint file (else :class:`UsageError`)."""
    if name is not None and not name.startswith("bundled-"):
        existing_path(name, flag)


def check_data_arg(spec: str, flag: str = "--data") -> tuple[str, dict]:
    """Parse a ``--data`` specification; a malformed one or a missing path is a :class:`UsageError`."""
    from ..data.spec import parse_data_spec

    try:
        kind, args = parse_data_spec(spec)
    except ValueError as err:
        raise UsageError(f"{flag} {spec!r}: {err}") from None
    if "path" in args:
        existing_path(args["path"], flag)
    return kind, args


def store_summary(out: Path) -> str:
    """One line on what an export or merge wrote to ``out``: samples in one file, or the folder's shards."""
    from ..store import load_attributions, read_index

    if out.is_file():
        return f"{out}: {len(load_attributions(out))} samples in one file"
    idx = read_index(out)
    return (f"{out}: {idx['num_samples']} of {idx.get('total_samples')} samples in {len(idx['shards'])} "
            f"shard files; complete={idx['complete']}")


def add_on_error(parser: argparse.ArgumentParser, *, item: str = "image", run: str = "the run",
                 skipped: str = "is left out and listed at the end") -> None:
    """Add ``--on-error {raise,skip}``: an unreadable ``item`` stops ``run`` (raise) or ``skipped`` (skip)."""
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help=f"an unreadable {item} stops {run} (raise) or {skipped} (skip)")


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-progress`` (store true): hide the progress bar."""
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar (default: shown)")


def bundled_note(detector_args, data_kind: str) -> str | None:
    """:data:`BUNDLED_NOTE` when a bundled detector scores images that are not DefocusSynth's."""
    if data_kind != "synth" and any(str(d or "").startswith("bundled-") for d in detector_args):
        return BUNDLED_NOTE
    return None


def flag_names(message: str, parser: argparse.ArgumentParser) -> str:
    """A library message with keyword arguments spelled as ``parser``'s flags.

    ``resume=False`` -> ``--no-resume``; ``num_shards=2`` -> ``--num-shards 2``; ``batch_size`` ->
    ``--batch-size`` (names of the parser's options only).

    Examples
    --------
    >>> p = argparse.ArgumentParser(); _ = p.add_argument("--no-resume", action="store_true")
    >>> _ = p.add_argument("--batch-size", type=int)
    >>> flag_names("use resume=False; batch_size must be >= 1", p)
    'use --no-resume; --batch-size must be >= 1'
    """
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs:
            continue
        flag, dest = longs[0], action.dest
        if dest.startswith("no_") and isinstance(action, argparse._StoreTrueAction):
            message = re.sub(rf"(?<![\w-]){dest[3:]}=False\b", flag, message)
            continue
        message = re.sub(rf"(?<![\w-]){dest}=(?=\S)", f"{flag} ", message)
        if "_" in dest:
            message = re.sub(rf"(?<![\w\-.']){dest}\b", flag, message)
    return message
