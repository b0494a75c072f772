"""Every notebook runs top to bottom in a fresh kernel, on the bundled sample, at a fixed as-of time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# What each notebook's main view must show once it has run: a piece of rendered HTML of its widgets.
EXPECTED = {
    "01_explore.ipynb": "data-action='contact_seller'",
    "02_batch.ipynb": "389 orders, 380 decided, 9 without a decision",
    "03_what_if.ipynb": "No order changes its decision",
    "04_author.ipynb": "The policy reads and compiles; all rule examples pass.",
}


def test_the_notebooks_are_there():
    assert [p.name for p in PATHS] == sorted(EXPECTED)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_is_stored_stripped_with_a_fixed_as_of(path: Path):
    book = nbformat.read(path, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "strip outputs before committing"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'AS_OF = "2026-11-26T12:00:00Z"' in params[0].source
    assert "as_of=AS_OF" in "".join(c.source for c in code)  # never today's date
    assert "now(" not in "".join(c.source for c in code if c is not params[0])


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_runs_headless(path: Path):
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(book, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, "\n".join(f"{o.ename}: {o.evalue}" for o in errors)
    assert any(WIDGET_VIEW in o.get("data", {}) for o in outputs), "the notebook displays no widget"
    state = json.dumps(book.metadata.get("widgets", {}).get(WIDGET_STATE, {}))
    assert EXPECTED[path.name].replace("'", "\\'") in state or EXPECTED[path.name] in state
