"""The public API's conventions, enforced on every public signature (DESIGN.md, "Conventions").

* paired sides are keyword-only ``real*=`` / ``fake*=`` (real named first), so no call can swap them;
* in analyses the attribution is the first parameter; model-consuming functions take ``detector`` first;
* ``n_samples`` only where random draws are made, ``background`` only for the attribution reference;
* the top-level namespace is curated; ``plot`` draws only; the store is torch-free; rooms are small.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import defocus_xai as dx

PACKAGE = Path(dx.__file__).parent
SUBPACKAGES = ("analysis", "data", "defocus", "detect", "explain", "pipeline", "plot", "store")

#: Functions (qualified ``module.name``) that draw random samples and may take ``n_samples``.
RANDOM_DRAWS = {"attribute", "export_attributions", "AttributionSettings", "randomization_test",
                "stage_randomization", "run_demo"}
#: Functions whose ``background`` is the attribution reference (computed with, or named in a caption).
ATTRIBUTION_REFERENCE = {"attribute", "export_attributions", "AttributionSettings", "randomization_test",
                         "stage_randomization", "run_demo", "attribution_background", "alignment_histogram",
                         "alignment_comparison", "attribution_overlay", "randomization_plot", "localization_curves"}
#: Generic nn.Module helpers, where the argument is any module, not a detector.
MODULE_HELPERS = {"unwrap", "borrowed", "module_device", "reinitialize_", "randomizable_layers"}


def _public_callables():
    seen = {}
    for mod in (dx, *(getattr(dx, name) for name in SUBPACKAGES)):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            seen[id(obj)] = (f"{mod.__name__}.{name}", name, obj)
    return list(seen.values())


CALLABLES = _public_callables()


def _params(obj):
    try:
        sig = inspect.signature(obj.__init__ if inspect.isclass(obj) and "__init__" in vars(obj) else obj)
    except (TypeError, ValueError):  # builtins without a signature
        return []
    return [p for p in sig.parameters.values() if p.name not in ("self", "cls")]


@pytest.mark.parametrize("qualname,name,obj", CALLABLES, ids=[c[0] for c in CALLABLES])
def test_signature_follows_the_vocabulary(qualname, name, obj):
    params = _params(obj)
    names = [p.name for p in params]
    paired = [p for p in params if p.name.startswith(("real", "fake"))]
    for p in paired:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{qualname}: {p.name} must be keyword-only"
    reals = [i for i, n in enumerate(names) if n.startswith("real")]
    fakes = [i for i, n in enumerate(names) if n.startswith("fake")]
    if reals and fakes:
        assert min(reals) < min(fakes), f"{qualname}: the real side is named before the fake side"
    if qualname.startswith("defocus_xai.analysis.") and {"attribution", "attributions"} & set(names):
        assert names[0] in ("attribution", "attributions"), f"{qualname}: the attribution comes first"
    positional = [p.name for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    if "detector" in positional:
        assert positional[0] == "detector", f"{qualname}: the detector comes first"
    if name not in MODULE_HELPERS:
        assert "model" not in names, f"{qualname}: a detector argument is named `detector`"
    if "n_samples" in names:
        assert name in RANDOM_DRAWS, f"{qualname}: `n_samples` means random draws; use n_steps / n"
    if "background" in names:
        assert name in ATTRIBUTION_REFERENCE, f"{qualname}: `background` means the attribution reference"


def test_top_level_namespace_is_curated():
    assert len(dx.__all__) <= 36, len(dx.__all__)
    assert len(set(dx.__all__)) == len(dx.__all__)
    for name in dx.__all__:
        assert hasattr(dx, name), name
    plumbing = {"write_shard", "write_index", "read_index", "validate_arrays", "INDEX_NAME", "shard_range",
                "DEFAULT_EPS", "sample_seed", "make_baseline", "trapezoid_auc"}
    assert not plumbing & set(dir(dx))
    for name in ("estimate_defocus", "load_detector", "attribute", "export_attributions",
                 "load_attributions", "variance_test", "alignment_scores", "paper_figures", "run_demo"):
        assert name in dx.__all__, name


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_subpackage_exports_exist(sub):
    mod = getattr(dx, sub)
    assert mod.__all__, sub
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, f"{sub}.__all__ names missing attributes: {missing}"


def _imports(path: Path) -> set[str]:
    """Absolute names of the defocus_xai modules that ``path`` imports."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("defocus_xai")}


def test_plot_draws_only():
    for path in (PACKAGE / "plot").rglob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("defocus_xai.explain", "defocus_xai.pipeline",
                                                             "defocus_xai.detect", "defocus_xai.cli"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"


FLOORS = ["store", "analysis", "data", "defocus", "detect", "explain", "pipeline", "cli"]


def test_no_import_from_a_floor_above():
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).parts[0]
        if top not in FLOORS:
            continue
        level = FLOORS.index(top)
        for mod in _imports(path):
            parts = mod.split(".")
            if len(parts) > 1 and parts[1] in FLOORS:
                assert FLOORS.index(parts[1]) <= level, f"{path.relative_to(PACKAGE)} imports {mod}"


def test_store_and_analysis_are_torch_free():
    # Import the two subpackages without the top-level __init__ (which imports everything).
    code = ("import sys, types; pkg = types.ModuleType('defocus_xai'); "
            f"pkg.__path__ = [{str(PACKAGE)!r}]; sys.modules['defocus_xai'] = pkg; "
            "import defocus_xai.store, defocus_xai.analysis; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rooms_are_small():
    big = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 400}
    assert not big, f"modules over 400 lines: {big}"


def test_no_reference_to_files_outside_the_repository():
    hits = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "UPSTREAM" in p.read_text()]
    assert not hits, hits


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_no_public_name_shadows_a_submodule(sub):
    folder = PACKAGE / sub
    modules = {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if p.is_dir()}
    shadowed = sorted(set(getattr(dx, sub).__all__) & modules - {m for m in modules if
                                                                  inspect.ismodule(getattr(getattr(dx, sub), m, None))})
    assert not shadowed, f"{sub}: public names that hide a submodule of the same name: {shadowed}"
