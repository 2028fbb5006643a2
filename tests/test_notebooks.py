"""The notebooks in ``notebooks/``: committed clean, and each one runs end to end at small N.

Each notebook is executed with nbclient in its own temporary working folder, on a kernel that runs
*this* interpreter (a kernel spec written to a temporary folder with ``sys.executable``; nothing is
installed for the user). The parameters cell reads ``DX_NOTEBOOK_N`` and ``DX_NOTEBOOK_OUT`` from the
environment. All notebooks share one output folder, as they do for a user: ``01_shapley_export`` writes the
attribution store and ``02``, ``03`` and ``05`` reuse it through the resumable export (run alone, each
computes it itself).
"""

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient", reason="nbclient is needed to run the notebooks (pip install -e .[test])")
pytest.importorskip("ipykernel", reason="ipykernel is needed to run the notebooks (pip install -e .[test])")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NAMES = ["00_quickstart", "01_shapley_export", "02_binary_mask", "03_local_variance", "04_tsne",
         "05_alignment_score"]
# Small, but above the t-SNE perplexity of 04_tsne (30) and the SHAP background (10 samples).
SMALL_N = 32


def _read(name):
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def test_the_six_notebooks_exist():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean_and_parameterized(name):
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, name
    for cell in code:  # committed without outputs
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: a cell has outputs"
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), f"{name}: the first code cell is the parameters cell"
    assert "import defocus_xai as dx" in first.source
    for var in ("DX_NOTEBOOK_N", "DX_NOTEBOOK_OUT", "DATA = dx.DefocusSynth(", "DEVICE ="):
        assert var in first.source, f"{name}: the parameters cell lacks {var}"
    assert "FaceForensicsDataset" in first.source  # the commented example for real data
    # no logic of its own: no function or class definitions, no loops, no imports after the first cell
    for cell in code[1:]:
        for line in cell.source.splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("def ", "class ", "for ", "while ", "import ", "from ")), \
                f"{name}: {stripped!r}"
    assert nb.cells[0].cell_type == "markdown"


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
    """A kernel spec named ``python3`` that starts this interpreter, in a temporary folder."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / "python3")
    ksm = KernelSpecManager(kernel_dirs=[str(kernels)])
    spec = ksm.get_kernel_spec("python3")
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve()
    return ksm


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory):
    return tmp_path_factory.mktemp("notebook_outputs")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, monkeypatch, kernel_spec_manager, shared_out):
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    out = shared_out
    monkeypatch.setenv("DX_NOTEBOOK_N", str(SMALL_N))
    monkeypatch.setenv("DX_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("DX_NOTEBOOK_DEVICE", "cpu")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    nb = _read(name)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager)
    client = NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    stderr = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if o.output_type == "stream" and o.get("name") == "stderr")
    assert "Warning" not in stderr, f"{name} printed warnings on stderr:\n{stderr[:2000]}"
    prefix = name.split("_")[0]
    written = sorted(p.name for p in out.glob(f"{prefix}_*.png"))
    assert written, f"{name} saved no figure under {out}"
