"""examples/interactive.ipynb executed for real (nbclient + ipykernel) against the local Slurm: it opens a
cluster, runs a processor twice, edits the processor's file, runs again and closes; everything is checked
from the executed notebook's outputs, the physics against plain uproot + awkward."""

from __future__ import annotations

import ast
import json
import re
import shutil

import awkward as ak
import pytest
import uproot
from conftest import DATASETS
from launch_util import REPO, squeue_ids
from slurm_util import require_slurm

pytestmark = pytest.mark.slurm


def _pairs(min_pt: float) -> int:
    """Events with at least two muons above ``min_pt``, from the files directly."""
    total = 0
    for path in DATASETS.values():
        with uproot.open(path) as f:
            pt = f["Events"]["Muon_pt"].array()
        total += int(ak.sum(ak.sum(pt > min_pt, axis=1) >= 2))
    return total


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_interactive_notebook(tmp_path):
    require_slurm()
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    shutil.copy(REPO / "examples" / "interactive.ipynb", tmp_path)
    (tmp_path / "fileset.json").write_text(
        json.dumps({ds: {"files": {str(p): "Events"}} for ds, p in DATASETS.items()}))
    nb = nbformat.read(tmp_path / "interactive.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    opened, _, runs, plot, edited, closed = code

    html = next(o for o in opened.outputs if o.output_type == "execute_result")["data"]["text/html"]
    assert "hpckit cluster" in html and "<b>up</b>" in html and "dashboard" in html and "slurm-local" in html

    out = _text(runs)
    found = [ast.literal_eval(m) for m in re.findall(r"pairs: (\{.*?\})", out)]
    assert found == [{"min_pt=0": _pairs(0)}] * 2, out
    assert "same workers: True" in out

    assert any("image/png" in o.get("data", {}) for o in plot.outputs), "the histogram did not render inline"

    out = _text(edited)
    assert re.findall(r"pairs: (\{.*?\})", out) == [repr({"min_pt=10": _pairs(10)})], out
    assert "same workers: True" in out  # the new code ran on the very same worker processes
    assert _pairs(10) != _pairs(0)

    # the progress bars: rich's notebook widgets (Output widgets), one per run; the widget state nbclient
    # saves is each one's last update it saw, which is the finished bar for most runs (not always all)
    widgets = json.dumps(nb.metadata.get("widgets", {}))
    # (under load the saved state can be an earlier update of a bar: its total, 8 chunks, is always there)
    assert widgets.count("Processing") >= 3 and re.search(r"\b\d/8\b", widgets), (
        "no notebook progress bar in the widget state", re.findall(r"\d+/\d+", widgets))

    m = re.search(r"closed; its jobs: (\[.*?\]) still in squeue: \[\]", _text(closed))
    assert m, _text(closed)
    jobs = ast.literal_eval(m.group(1))
    assert len(jobs) >= 2 and not set(jobs) & squeue_ids()
