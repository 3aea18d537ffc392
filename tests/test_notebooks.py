"""The planners' notebooks (issue 13.7) run top to bottom on the medium sample, as the named users `brain users
demo` makes, and their maps load nothing from the network. Committed notebooks carry no outputs.

The notebooks read through `brain.open` (tested on both backends in test_api.py); here they run on DuckDB.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import AS_OF, ROOT, run_cli

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REMOTE = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    d = tmp_path_factory.mktemp("notebooks")
    url = f"duckdb:///{d / 'brain.duckdb'}"
    run_cli("sample", "--scale", "medium", "--out", d / "medium")
    run_cli("ingest", d / "medium" / "manifest.yaml", "--db", url)
    run_cli("users", "demo", "--db", url)
    return url


def test_there_are_notebooks_and_none_carries_outputs():
    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "brain.open(" in code[0].source, f"{path.name} must open with brain.open as a named user"
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} carries outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_notebook_runs_top_to_bottom_and_its_maps_stay_offline(path, medium, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAIN_DB", medium)
    monkeypatch.setenv("BRAIN_AS_OF", AS_OF)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    maps = list(tmp_path.glob("*.html"))
    assert len(maps) == sum(c.source.count("deck_html(deck") for c in nb.cells if c.cell_type == "code")
    for html in maps:
        text = html.read_text(encoding="utf-8")
        assert "deck" in text and not REMOTE.search(text), f"{html.name} loads something from the network"
