"""Inputs with limits, and nothing left behind: alias bombs, oversized or endless files, duplicate
files, chunks that never finish, files that never heal, pool workers outliving a killed driver."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import DATA, EXAMPLES, REPO

from hpckit import processor
from hpckit.deploy.site import MAX_SITE_BYTES, SiteError, load_site
from hpckit.core.errors import ChunkError, FileAccessError, FilesetError
from hpckit.events.reader import open_tree
from hpckit.processor.work import retry_file_errors

TESTS = Path(__file__).resolve().parent
BOMB = """name: bomb
scheduler: local
source: [x]
verified_on: 2026-01-01
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

_MEASURE = """
import resource, sys, time, json
t = time.perf_counter()
from hpckit.deploy.site import load_site, SiteError
t0 = time.perf_counter()
err = None
try:
    load_site(sys.argv[1])
except SiteError as exc:
    err = str(exc)
print(json.dumps({"s": time.perf_counter() - t0, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "error": err}))
"""


def _measure(path: Path) -> dict:
    def limit():  # a runaway parse would be stopped here rather than eat the machine
        resource.setrlimit(resource.RLIMIT_CPU, (30, 30))

    r = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=120,
                       preexec_fn=limit, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_yaml_alias_bomb_refused_fast_and_small(tmp_path):
    """The billion-laughs site file is refused at the first anchor; the process grows < 100 MB."""
    bomb, plain = tmp_path / "bomb.yaml", tmp_path / "plain.yaml"
    bomb.write_text(BOMB)
    plain.write_text("\n".join(BOMB.splitlines()[:4]) + "\n")
    base, m = _measure(plain), _measure(bomb)
    assert base["error"] is None
    assert "anchors (&name) are not allowed" in m["error"] and str(bomb) in m["error"]
    grew_mb = (m["maxrss_kb"] - base["maxrss_kb"]) / 1024
    print(f"alias bomb: refused in {m['s'] * 1e3:.1f} ms, peak RSS {m['maxrss_kb'] / 1024:.0f} MB "
          f"({grew_mb:+.1f} MB over a plain site)")
    assert grew_mb < 100
    from hpckit.deploy.site import parse_set

    assert parse_set("source=[&a x, *a]") == (["source"], "[&a x, *a]")  # --set: kept as text, not expanded


def test_site_file_size_capped(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n# " + "x" * MAX_SITE_BYTES + "\n")
    with pytest.raises(SiteError, match=f"{big}.*more than the limit"):
        load_site(big)
    with pytest.raises(SiteError, match="not a regular file"):
        load_site("/dev/zero")


def test_fileset_dev_zero_and_oversized(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hpckit", "run", str(EXAMPLES / "dimuon.py"), "--fileset", "/dev/zero",
                        "--output", str(tmp_path / "o.pkl"), "--no-status"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "/dev/zero is not a regular file" in " ".join((r.stdout + r.stderr).split())
    sparse = tmp_path / "huge.json"
    with open(sparse, "wb") as fh:  # 1 GB that costs no disk
        fh.truncate(1 << 30)
    with pytest.raises(FilesetError, match="more than the limit"):
        processor.Runner(processor.IterativeExecutor(status=False))(str(sparse), processor_instance=Count())


class Count(processor.ProcessorABC):
    def process(self, events):
        return {"n": len(events)}


class Forever(processor.ProcessorABC):
    def process(self, events):
        while True:  # a stuck analysis; also ignores ordinary exceptions
            try:
                time.sleep(3600)
            except Exception:  # noqa: BLE001
                pass


def test_file_listed_twice_is_an_error(tmp_path):
    f = str(DATA / "nano_dy.root")
    with pytest.raises(FilesetError, match=f"file {f} is listed twice"):
        processor.Runner(processor.IterativeExecutor(status=False))(
            {"ds": [f, os.path.join(os.path.dirname(f), ".", "nano_dy.root")]}, Count(), treename="Events")
    with pytest.raises(FilesetError, match=f"file {f} is listed twice; it"):
        processor.Runner(processor.IterativeExecutor(status=False))({"ds": [f, f]}, Count(), treename="Events")
    js = tmp_path / "fs.json"
    js.write_text('{"ds": {"files": {"a.root": "Events", "a.root": "Events"}}}')
    with pytest.raises(FilesetError, match="'a.root' appears twice"):
        processor.Runner(processor.IterativeExecutor(status=False))(str(js), Count())


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_chunk_timeout_ends_a_stuck_chunk(executor):
    ex = processor.IterativeExecutor(status=False) if executor == "iterative" else \
        processor.FuturesExecutor(workers=2, status=False)
    runner = processor.Runner(ex, chunksize=1000, chunk_timeout=1.5)
    with pytest.raises(ChunkError) as exc:
        runner({"ds": [str(DATA / "nano_dy.root")]}, Forever(), treename="Events")
    msg = str(exc.value)
    assert "chunk_timeout=1.5" in msg and "nano_dy.root" in msg and "chunk 0-" in msg


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = (DATA / "nano_dy.root").read_bytes()
    files = {"empty": b"", "garbage": os.urandom(5000), "truncated": good[: len(good) // 2]}
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / f"{name}.root"
        out[name].write_bytes(data)
    return out


def test_files_that_never_heal_are_not_retried(tmp_path):
    for name, path in _bad_files(tmp_path).items():
        calls = []

        def attempt():
            calls.append(1)
            t = open_tree(str(path), "Events")
            t.tree["Muon_pt"].array()

        with pytest.raises(FileAccessError):
            retry_file_errors(attempt, str(path), retries=3)
        assert len(calls) == 1, f"{name} file was retried {len(calls) - 1} times"


def test_killed_run_leaves_no_pool_workers(tmp_path, fileset_path):
    """SIGKILL a real `hpckit run --executor futures`: its pool workers end within seconds."""
    env = dict(os.environ, PYTHONPATH=f"{EXAMPLES}{os.pathsep}{REPO}", HPCKIT_TEST_SLEEP="5")
    proc = subprocess.Popen([sys.executable, "-m", "hpckit", "run", str(TESTS / "slow_dimuon.py"), "--fileset",
                             str(fileset_path), "--executor", "futures", "--workers", "2", "--chunksize", "4",
                             "--no-status", "--no-plots", "--output", str(tmp_path / "o.pkl")],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.time() + 120
        while time.time() < deadline and len(children) < 2:
            children = [c for c in parent.children(recursive=True) if c.is_running()]
            time.sleep(0.1)
        assert len(children) >= 2, "the pool workers never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(children, timeout=10)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"pool workers outlived the killed driver: {[p.pid for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in children:  # whatever the outcome, leave nothing behind
            try:
                c.kill()
            except psutil.NoSuchProcess:
                pass
