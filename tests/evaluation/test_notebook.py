"""The modelling notebook runs top to bottom (on its small size) and calls the package."""

import json
import os

import pytest

from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "modelling_and_evaluation.ipynb"


def test_the_notebook_follows_crisp_dm_and_copies_no_package_code():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    headings = [c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    order = ["Business understanding", "Data understanding", "Data preparation", "Modelling", "Evaluation", "Deployment"]
    found = [next(i for i, h in enumerate(headings) if name in h) for name in order]
    assert found == sorted(found)
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "def " not in code and "class " not in code  # it calls the package, it does not redefine it


@pytest.mark.slow
def test_the_notebook_executes(monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    monkeypatch.setenv("PYCEMAKER_NOTEBOOK_SIZE", "small")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plots were drawn
