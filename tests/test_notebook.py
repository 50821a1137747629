"""``examples/quickstart.ipynb`` runs top to bottom at small sizes (``JAXDYN_NOTEBOOK_SMALL=1``) in a
real Jupyter kernel, and is committed without outputs.

A kernel that cannot start fails the test (only a missing nbclient/ipykernel skips it). The kernel
is a child of this process and inherits its CPU affinity (tests/conftest.py pins it to one core):
a cell appended here checks it.
"""

import json
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the test extra (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs the test extra (nbclient)")
pytest.importorskip("ipykernel", reason="the notebook test needs the test extra (ipykernel)")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"

pytestmark = pytest.mark.timeout(300)


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip the notebook's outputs"


def test_notebook_runs_at_small_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDYN_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAXDYN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json, os\nprint(json.dumps({'affinity': sorted(os.sched_getaffinity(0)) "
        "if hasattr(os, 'sched_getaffinity') else None, 'n_rows': len(rows)}))"))
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError (with the cell and its traceback) on any error
    last = json.loads(nb.cells[-1].outputs[0]["text"])
    if hasattr(os, "sched_getaffinity"):
        assert last["affinity"] == sorted(os.sched_getaffinity(0)), "the kernel is not pinned like the suite"
    assert last["n_rows"] >= 3
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the notebook's figures were not drawn"
    assert (tmp_path / "cache").is_dir()  # the trained network went to the cache the test named
