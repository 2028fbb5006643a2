"""MkDocs hooks: pages whose content comes from the repository itself, so it lives in one place.

* ``benchmarks.md`` gets ``bench/RESULTS.md`` (the headline table) and then each ``bench/results_*.md``
  (the per-topic records, in name order) appended verbatim; with none of them, a line saying so.
* ``cli.md``: the marker ``<!-- cli-reference -->`` is replaced by the ``--help`` text of every
  sub-command of ``defocus-xai``, generated from the argparse parser of the installed package, so the
  page cannot drift from the code.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
CLI_MARKER = "<!-- cli-reference -->"
HELP_WIDTH = "100"


def benchmark_results(bench: Path = BENCH) -> str:
    """Markdown of the recorded benchmark results: ``RESULTS.md``, then every ``results_*.md``."""
    parts = [p for p in [bench / "RESULTS.md"] if p.is_file()] + sorted(bench.glob("results_*.md"))
    if not parts:
        return "*No benchmark results are recorded in `bench/` yet.*\n"
    return "\n\n".join(p.read_text(encoding="utf-8").rstrip() + "\n" for p in parts)


def _subcommands(parser):
    import argparse

    for action in parser._actions:  # argparse keeps sub-parsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(sorted(action.choices.items()))
    return {}


def cli_reference() -> str:
    """Markdown of ``defocus-xai --help`` and of every sub-command's ``--help``."""
    from defocus_xai.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps to the terminal width: make the page reproducible
    try:
        parser = build_parser()
        parts = ["## `defocus-xai`", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in _subcommands(parser).items():
            parts += [f"## `defocus-xai {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    """Fill the generated parts of ``benchmarks.md`` and ``cli.md``."""
    if page.file.src_uri == "benchmarks.md":
        return markdown.rstrip() + "\n\n" + benchmark_results()
    if page.file.src_uri == "cli.md" and CLI_MARKER in markdown:
        return markdown.replace(CLI_MARKER, cli_reference())
    return markdown
