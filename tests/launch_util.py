"""Helpers for the `hpckit launch` tests: run the CLI in a subprocess, read a run's jobs, compare outputs."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ANALYSIS = REPO / "examples" / "dimuon.py"


def env(**extra: str) -> dict[str, str]:
    """This checkout first on PYTHONPATH (batch jobs inherit it through sbatch/qsub), plus tests/ and examples/."""
    e = dict(os.environ)
    paths = [str(REPO), str(REPO / "examples"), str(REPO / "tests")]
    e["PYTHONPATH"] = os.pathsep.join(paths + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    e.update(extra)
    return e


def hpckit(args: list[str], cwd: Path, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpckit", *args], cwd=cwd, env=env(**extra), capture_output=True,
                          text=True, timeout=timeout)


def run_jobs(run_dir: Path) -> list[str]:
    f = run_dir / "jobs.txt"
    return f.read_text().split() if f.exists() else []


def squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def load(path: Path):
    with open(path, "rb") as fh:
        return pickle.load(fh)


def assert_same_output(out: dict, ref: dict) -> None:
    """Histogram counts and cutflow identical."""
    assert out["cutflow"] == ref["cutflow"]
    h, r = out["mass"], ref["mass"]
    assert sorted(h.axes["dataset"]) == sorted(r.axes["dataset"])
    for ds in r.axes["dataset"]:  # category order follows merge order; compare by name
        np.testing.assert_array_equal(h[{"dataset": ds}].values(flow=True), r[{"dataset": ds}].values(flow=True))


def chunk_records(run_dir: Path) -> list[dict]:
    """The per-chunk records of a run (``chunks.jsonl``)."""
    import json

    lines = (run_dir / "chunks.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "chunk"]
