"""notebooks/quickstart.ipynb runs top to bottom on the CPU (few steps), and its jupytext
twin notebooks/quickstart.py holds the same cells."""

import os

import jupytext
import nbclient
import pytest
from conftest import REPO

from fractaljax import downstream

NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")
TWIN = os.path.join(REPO, "notebooks", "quickstart.py")


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_notebook_and_its_twin_hold_the_same_cells():
    a, b = jupytext.read(NOTEBOOK), jupytext.read(TWIN)
    assert _cells(a) == _cells(b), (
        "notebooks/quickstart.ipynb and .py differ: edit the .py, then run "
        "jupytext --sync notebooks/quickstart.py"
    )
    tags = [c.metadata.get("tags", []) for c in a.cells]
    assert ["parameters"] in tags  # papermill / nbmake can set the settings cell
    # No retired Colab TPU set-up: JAX finds a TPU VM by itself.
    text = "\n".join(s for _, s in _cells(a))
    assert "setup_tpu" not in text and "COLAB_TPU_ADDR" not in text


def test_notebook_runs_on_cpu(tmp_path, monkeypatch):
    """Executed in a fresh kernel, as nbmake does, with 4 steps and small probes; the
    kernel writes its run under tmp_path and reads the suite's prepared TFDS sets."""
    monkeypatch.setenv("FRACTALJAX_NOTEBOOK_STEPS", "4")
    monkeypatch.setenv("FRACTALJAX_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline figures
    monkeypatch.setenv("HOME", str(tmp_path))  # nothing of the kernel's in the user's home
    nb = jupytext.read(NOTEBOOK)
    # Smaller probe sets than the notebook's default, through its parameters cell.
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = params.source.replace("10_000, 10_000", "1_000, 500")
    assert "1_000, 500" in params.source
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"the notebook failed: {str(e)[-3000:]}")
    out = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "on cpu" in out
    assert "best layer (on validation)" in out
    # Which set it probed on: Fashion-MNIST wherever its files are (CI), never a silent
    # fall-back to digits.
    fell_back = "using scikit-learn's digits" in out
    if downstream.fashion_mnist_available() or os.environ.get("FRACTALJAX_REQUIRE_DATA"):
        assert not fell_back, out[-2000:]
    else:
        assert fell_back
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the class grid, the curves, the probes
    assert (tmp_path / "run" / "pretrain" / "checkpoints").exists()
