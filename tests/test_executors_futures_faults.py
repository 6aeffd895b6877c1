"""FuturesExecutor: a pool process killed (a real SIGKILL, from outside) in the middle of a chunk costs that
chunk one attempt, not the run: the pool is replaced, the chunk re-run, the output equals the plain
uproot+awkward reference; over ``retries`` the run fails naming the chunk."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, assert_matches_reference

import sys

sys.path.insert(0, str(EXAMPLES))
from dimuon import DimuonProcessor  # noqa: E402

from hpckit import processor  # noqa: E402
from hpckit.core.errors import EngineError  # noqa: E402


class MarkedDimuon(DimuonProcessor):
    """Drops ``<pid>-<n>`` in ``marker_dir`` as each chunk starts, then takes a moment: a kill lands mid-chunk."""

    def __init__(self, marker_dir: Path, sleep: float = 0.4):
        self.marker_dir, self.sleep = str(marker_dir), sleep

    def process(self, events):
        open(os.path.join(self.marker_dir, f"{os.getpid()}-{time.time_ns()}"), "w").close()
        time.sleep(self.sleep)
        return super().process(events)


def _kill_after(markers: Path, n: int, killed: list[int]) -> threading.Thread:
    """Once ``n`` chunks have started, SIGKILL the pool process that started the newest one."""

    def loop():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            names = sorted(markers.iterdir(), key=lambda p: int(p.name.split("-")[1]))
            if len(names) >= n:
                pid = int(names[-1].name.split("-")[0])
                if pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                return
            time.sleep(0.02)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def _run(fileset_path, markers, retries, grouped=False):
    # grouped: the chunks go a merge group (4 chunks) a task, the kill lands in the middle of a group
    extra = {"group_chunks": True, "treereduction": 4} if grouped else {}
    ex = processor.FuturesExecutor(workers=2, status=False, retries=retries, **extra)
    runner = processor.Runner(ex, chunksize=8)
    return runner(str(fileset_path), processor_instance=MarkedDimuon(markers)), ex


@pytest.mark.timeout(120)
@pytest.mark.parametrize("grouped", [False, True])
def test_killed_pool_process_costs_one_chunk_not_the_run(tmp_path, fileset_path, reference, grouped):
    markers = tmp_path / "markers"
    markers.mkdir()
    killed: list[int] = []
    t = _kill_after(markers, 3, killed)
    out, ex = _run(fileset_path, markers, retries=1, grouped=grouped)
    t.join(5)
    assert len(killed) == 1
    assert_matches_reference(out, reference)
    assert ex.stats["pools_replaced"] == 1 and ex.stats["retried"] >= 1, ex.stats
    # 10 chunks; the ones cut short ran again (their markers twice)
    assert len(list(markers.iterdir())) > 10
    assert ex.stats["grouped_chunks"] == (10 if grouped else 0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("grouped", [False, True])
def test_killed_pool_process_over_retries_fails_naming_the_chunk(tmp_path, fileset_path, grouped):
    markers = tmp_path / "markers"
    markers.mkdir()
    killed: list[int] = []
    t = _kill_after(markers, 2, killed)
    with pytest.raises(EngineError, match=r"chunk .*the pool process running it died 1 times .*retries=0"):
        _run(fileset_path, markers, retries=0, grouped=grouped)
    t.join(5)
    assert len(killed) == 1


def test_long_chunks_are_not_grouped(tmp_path, fileset_path, reference):
    """Chunks that take a while (here >= 0.2 s each, 4x the limit) go to the pool one by one even when
    there are many of them, so the last merge group cannot hold the run's tail."""
    markers = tmp_path / "markers"
    markers.mkdir()
    ex = processor.FuturesExecutor(workers=2, status=False, treereduction=2)  # 20 chunks >= 4 x 2 x 2: judged
    out = processor.Runner(ex, chunksize=4)(str(fileset_path), processor_instance=MarkedDimuon(markers, sleep=0.2))
    assert_matches_reference(out, reference)
    assert len(list(markers.iterdir())) == 20  # the judgement was made (more chunks than 4 x 2 x 2)
    assert ex.stats["grouped_chunks"] == 0
