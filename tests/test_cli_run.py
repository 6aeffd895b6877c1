"""`hpckit run` writes the output, metrics JSON and plots, and reports errors plainly."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
from conftest import EXAMPLES, REPO, assert_matches_reference


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "hpckit", *map(str, args)], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_run_example_writes_everything(executor, tmp_path, reference):
    out = tmp_path / "res" / "out.pkl"
    r = _run("run", EXAMPLES / "dimuon.py", "--fileset", EXAMPLES / "fileset.json", "--executor", executor,
             "--workers", "2", "--chunksize", "7", "--output", out, "--no-status")
    assert r.returncode == 0, r.stderr
    assert_matches_reference(pickle.loads(out.read_bytes()), reference)
    metrics = json.loads((tmp_path / "res" / "out.metrics.json").read_text())
    assert metrics["chunks"] == 12 and metrics["entries"] == 80
    png = tmp_path / "res" / "out-mass.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "80 events in 12 chunks" in r.stderr


def test_run_reports_missing_file_plainly(tmp_path):
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({"X": {"files": {str(tmp_path / "nope.root"): "Events"}}}))
    r = _run("run", EXAMPLES / "dimuon.py", "--fileset", fs, "--output", tmp_path / "o.pkl", "--no-status")
    assert r.returncode == 1
    assert f"file not found: {tmp_path / 'nope.root'}" in r.stderr.replace("\n", "")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.pkl").exists()


def test_run_unknown_processor_class(tmp_path):
    r = _run("run", EXAMPLES / "dimuon.py", "--fileset", EXAMPLES / "fileset.json", "--processor", "Nope",
             "--output", tmp_path / "o.pkl", "--no-status")
    assert r.returncode == 1 and "DimuonProcessor" in r.stderr
