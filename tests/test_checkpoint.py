"""Checkpoints: a run killed with SIGKILL resumes and redoes only the unfinished chunks."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import EXAMPLES, REPO, assert_matches_reference

from hpckit import processor

TESTS = Path(__file__).resolve().parent


def _hpckit_run(analysis, fileset, out, checkpoint, extra=(), env=None):
    cmd = [sys.executable, "-m", "hpckit", "run", str(analysis), "--fileset", str(fileset), "--output", str(out),
           "--checkpoint", str(checkpoint), "--chunksize", "4", "--no-status", "--no-plots", *extra]
    e = dict(os.environ, PYTHONPATH=f"{EXAMPLES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {}))
    return subprocess.Popen(cmd, env=e, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _count_checkpoints(d: Path) -> int:
    return sum(1 for _ in d.rglob("*.pkl.lz4"))


def test_killed_run_resumes_from_checkpoints(tmp_path, fileset_path, reference):
    ckpt, out = tmp_path / "ckpt", tmp_path / "out.pkl"
    total = 20  # 2 files x 40 events at chunksize 4
    proc = _hpckit_run(TESTS / "slow_dimuon.py", fileset_path, out, ckpt, ["--executor", "iterative"])
    deadline = time.time() + 120
    while _count_checkpoints(ckpt) < 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _count_checkpoints(ckpt)
    assert 5 <= done_before < total
    assert not out.exists()

    proc = _hpckit_run(TESTS / "slow_dimuon.py", fileset_path, out, ckpt, ["--executor", "futures", "--workers", "2"],
                       env={"HPCKIT_TEST_SLEEP": "0"})
    log = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, log
    metrics = json.loads(out.with_name("out.metrics.json").read_text())
    assert metrics["chunks_from_checkpoint"] == done_before
    assert metrics["chunks_processed"] == total - done_before
    assert_matches_reference(pickle.loads(out.read_bytes()), reference)


class Counts(processor.ProcessorABC):
    def __init__(self, weight=1):
        self.weight = weight

    def process(self, events):
        return {"n": len(events) * self.weight}


def test_changed_processor_does_not_reuse_checkpoints(tmp_path, fileset_path):
    ckpt = processor.SimpleCheckpointer(tmp_path / "ck")
    run = lambda p: processor.Runner(processor.IterativeExecutor(status=False), chunksize=10, checkpointer=ckpt,
                                     savemetrics=True)(str(fileset_path), processor_instance=p)
    out1, m1 = run(Counts(1))
    out2, m2 = run(Counts(1))
    out3, m3 = run(Counts(2))
    assert (out1, out2, out3) == ({"n": 80}, {"n": 80}, {"n": 160})
    assert (m1["chunks_from_checkpoint"], m2["chunks_from_checkpoint"], m3["chunks_from_checkpoint"]) == (0, 8, 0)


def test_checkpoint_write_is_atomic(tmp_path):
    """A reader never sees a partial checkpoint: files appear only by rename."""
    ckpt = processor.SimpleCheckpointer(tmp_path)
    item = processor.WorkItem("ds", "/x/f.root", "Events", 0, 10, "uuid")
    ckpt.save({"out": {"n": 1}, "processed": {item.key}}, item, "fp")
    path = ckpt.path(item, "fp")
    assert ckpt.load(item, "fp") == {"out": {"n": 1}, "processed": {item.key}}
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    path.write_bytes(path.read_bytes()[:10])  # corrupt: ignored and redone, not fatal
    assert ckpt.load(item, "fp") is None
