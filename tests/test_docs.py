"""The documentation site: the MkDocs hooks, the navigation, and a strict build.

The build test runs ``mkdocs build --strict`` (warnings are errors: broken links, missing pages, docstrings
mkdocstrings cannot render) into a temporary folder. It is skipped, saying why, when MkDocs or
mkdocstrings are not installed (``pip install -e .[test]`` installs them).
"""

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _subcommands():
    from defocus_xai.cli import build_parser

    return _hooks()._subcommands(build_parser())


def _nav_pages(nav):
    for item in nav:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for value in item.values():
                yield from ([value] if isinstance(value, str) else _nav_pages(value))


def test_benchmark_results_headline_then_records(tmp_path):
    hooks = _hooks()
    assert "No benchmark results" in hooks.benchmark_results(tmp_path)
    (tmp_path / "results_b.md").write_text("# B\n")
    (tmp_path / "results_a.md").write_text("# A\n")
    text = hooks.benchmark_results(tmp_path)
    assert text.index("# A") < text.index("# B")
    (tmp_path / "RESULTS.md").write_text("# All results\n")
    text = hooks.benchmark_results(tmp_path)
    assert text.startswith("# All results\n") and text.index("# All") < text.index("# A\n") < text.index("# B")


def test_cli_reference_has_every_subcommand_and_option():
    import argparse

    text = _hooks().cli_reference()
    subcommands = _subcommands()
    assert {"synth", "maps", "train", "evaluate", "export", "merge"} <= set(subcommands)
    for name, parser in subcommands.items():
        assert f"## `defocus-xai {name}`" in text
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert option in text, f"defocus-xai {name} {option} is missing from the CLI reference"


def test_cli_page_uses_the_generated_reference():
    hooks = _hooks()
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert hooks.CLI_MARKER in page
    for name in _subcommands():  # the hand-written table names every sub-command too
        assert f"| `{name}` |" in page, f"docs/cli.md's table lacks {name}"


def test_every_page_is_in_the_nav_and_exists():
    yaml = pytest.importorskip("yaml")

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("", lambda loader, suffix, node: None)  # tolerate !!python/... tags
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)
    nav = list(_nav_pages(config["nav"]))
    for page in nav:
        assert (DOCS / page).is_file(), f"mkdocs.yml lists {page}, which is not in docs/"
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(set(pages) - set(nav)) == [], "pages of docs/ that the navigation does not reach"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mkdocs_build_strict(tmp_path):
    for module, package in (("mkdocs", "mkdocs"), ("mkdocstrings", "mkdocstrings[python]"),
                            ("mkdocstrings_handlers.python", "mkdocstrings[python]")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} is not installed (pip install -e .[test]): the docs build cannot be checked")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(site)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    for name in _subcommands():
        assert f'id="defocus-xai-{name}"' in cli, f"the built CLI page lacks defocus-xai {name}"
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("defocus_xai.defocus.estimate_defocus", "defocus_xai.explain.export_attributions",
                 "defocus_xai.explain.attribute", "defocus_xai.detect.load_detector",
                 "defocus_xai.analysis.alignment_scores", "defocus_xai.pipeline.paper_figures",
                 "defocus_xai.store.load_attributions"):
        assert f'id="{name}"' in api, f"the API page lacks {name}"
    # every public function and class of the documented packages is on the page
    ids = set(re.findall(r'id="(defocus_xai[^"]*)"', api))
    for module_name in re.findall(r"^::: (\S+)", (DOCS / "api.md").read_text(encoding="utf-8"), flags=re.M):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:  # a single object documented on its own
            continue
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if callable(obj) and not {f"{module_name}.{name}", f"{getattr(obj, '__module__', '')}.{name}"} & ids:
                pytest.fail(f"{module_name}.{name} is not on the API page")
    bench = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert "No benchmark results" in bench or "bench/" in bench
    assert not (site / "_hooks.py").exists()


def test_notebooks_page_lists_every_notebook():
    page = (DOCS / "notebooks.md").read_text(encoding="utf-8")
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"`{notebook.name}`" in page, f"docs/notebooks.md does not list {notebook.name}"
