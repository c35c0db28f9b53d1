"""The shipped notebook, executed by a real Jupyter kernel at small size, shows its figures inline."""

from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "book_chapter5_notebook.py"
N_FIGURE_CELLS = 6  # the cells that end with `fig`: plane, residuals, 3D fit, three replays


def test_executed_notebook_shows_every_figure_inline(tmp_path):
    nb = jupytext.read(NOTEBOOK)
    small = ["--out", str(tmp_path), "--epochs", "1", "--grid", "9", "--steps", "40"]
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"import sys\nsys.argv = [sys.argv[0], *{small!r}]"))
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= N_FIGURE_CELLS
    assert all(o["data"]["image/png"].startswith("iVBORw0KGgo") for o in images)  # base64 of the PNG signature
