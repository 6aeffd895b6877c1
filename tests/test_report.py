"""The run records and report.html of `hpckit run`: every chunk recorded once with its events and bytes
(checked against uproot's own entry counts and the metrics), the page's sections and status, failures
and skipped files listed with their messages, and `hpckit report` on a directory that is not a run.
The page as a browser shows it is checked in test_report_browser.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uproot
from conftest import DATASETS, EXAMPLES, REPO

from hpckit.report import load_run, write_report
from hpckit.report.page import SECTIONS


def hpckit(*args, cwd=REPO, timeout=300):
    return subprocess.run([sys.executable, "-m", "hpckit", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


class Page(HTMLParser):
    """Section ids, worker rows, images and every external reference of a report page."""

    def __init__(self, html: str):
        super().__init__()
        self.sections: list[str] = []
        self.worker_rows: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.status = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "g" and "worker-row" in (a.get("class") or "").split():
            self.worker_rows.append(a.get("data-worker"))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if a.get("id") == "status":
            self.status = a.get("data-status")
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith(("data:", "#")):
                self.external.append(a[key])


def check_page(html: str) -> Page:
    """Every section in order, nothing loaded from outside the page."""
    page = Page(html)
    assert page.sections == list(SECTIONS), page.sections
    assert not page.external, f"the page loads {page.external}"
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html), "CSS loads something from outside"
    return page


def test_run_records_every_chunk_and_the_report_says_what_ran(tmp_path):
    res = tmp_path / "res"
    r = hpckit("run", EXAMPLES / "dimuon.py", "--fileset", EXAMPLES / "fileset.json", "--executor", "futures",
               "--workers", "2", "--chunksize", "10", "--output", res / "out.pkl", "--no-status", "--data", "DoubleMuon")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (res / "chunks.jsonl").read_text().splitlines()]
    chunks = [x for x in lines if x["kind"] == "chunk"]
    entries = {}
    for path in DATASETS.values():
        with uproot.open(path) as f:
            entries[str(path.resolve())] = f["Events"].num_entries
    # every chunk once, covering every entry of every file
    covered = {}
    for c in chunks:
        covered.setdefault(str(Path(c["file"]).resolve()), []).append((c["start"], c["stop"]))
        assert c["events"] == c["stop"] - c["start"] and c["t0"] <= c["t1"] and ":" in c["worker"]
    for f, n in entries.items():
        assert sorted(covered[f]) == [(i, min(i + 10, n)) for i in range(0, n, 10)], f
    metrics = json.loads((res / "out.metrics.json").read_text())
    assert sum(c["bytes"] for c in chunks) == metrics["bytesread"] > 0
    assert [x["event"] for x in lines if x["kind"] == "run"] == ["start", "planned", "end"]

    html = (res / "report.html").read_text()
    page = check_page(html)
    assert page.status == "finished"
    workers = {c["worker"] for c in chunks}
    assert sorted(page.worker_rows) == sorted(workers)  # a local run: one row per worker process
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png;base64,")
    assert "DimuonProcessor" in html and "futures" in html and "8 of 8 done" in html and "80 of 80" in html
    info = json.loads((res / "run.json").read_text())
    assert info["data"] == ["DoubleMuon"] and info["datasets"]["DYJetsToLL"] == {"files": 1, "data": False}

    # `hpckit report` rebuilds the same page from the files
    (res / "report.html").unlink()
    r = hpckit("report", res)
    assert r.returncode == 0, r.stderr
    assert "The run finished." in r.stderr
    assert check_page((res / "report.html").read_text()).worker_rows == page.worker_rows


def test_what_workers_log_becomes_records_and_a_report_section(tmp_path):
    """A processor that logs a warning per chunk: run on worker processes (futures), each line is a record
    in chunks.jsonl naming the worker that ran the chunk, listed under "Worker logs"; run in the driver's own
    process (iterative), the lines stay on the user's terminal and are not recorded twice."""
    import os

    env = {**os.environ, "HPCKIT_TEST_WARN": "1", "HPCKIT_TEST_SLEEP": "0",
           "PYTHONPATH": f"{EXAMPLES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}  # slow_dimuon imports dimuon
    for executor in ("futures", "iterative"):
        res = tmp_path / executor
        r = subprocess.run([sys.executable, "-m", "hpckit", "run", str(REPO / "tests" / "slow_dimuon.py"),
                            "--fileset", str(EXAMPLES / "fileset.json"), "--executor", executor, "--workers", "2",
                            "--chunksize", "10", "--output", str(res / "out.pkl"), "--no-status", "--no-plots"],
                           cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        lines = [json.loads(x) for x in (res / "chunks.jsonl").read_text().splitlines()]
        logs = [x for x in lines if x["kind"] == "log"]
        html = (res / "report.html").read_text()
        check_page(html)
        if executor == "iterative":
            assert not logs and "No warning or error logged by a worker" in html, logs
            continue
        ran = {(os.path.basename(c["file"]), c["start"], c["stop"]): c["worker"] for c in lines if c["kind"] == "chunk"}
        assert len(logs) == len(ran) == 8 and all(x["level"] == "WARNING" for x in logs), logs
        for x in logs:
            start, stop, name = re.fullmatch(r"slow chunk (\d+)-(\d+) of (\S+)", x["message"]).groups()
            assert ran[(name, int(start), int(stop))] == x["worker"], (x, ran)  # the worker that ran the chunk
        assert x["logger"] == "slow_dimuon" and f"slow chunk {start}-{stop} of {name}" in html


def test_a_failed_attempt_that_cannot_be_written_rides_with_the_next_result(tmp_path):
    """A worker that cannot see the run directory (no shared file system) carries its chunks' records back
    with their results; a failed attempt has none, so its record waits in the worker process and rides with
    that process's next chunk result of the same run (the failures an engine retried past reach the report),
    never with another run's, and never into what a merge returns."""
    from dimuon import DimuonProcessor

    from hpckit.events import NanoAODSchema
    from hpckit.events.reader import file_uuid
    from hpckit.processor import WorkItem, records
    from hpckit.processor.records import ChunkRecorder
    from hpckit.processor.serialize import decompress, dump_processor
    from hpckit.processor.work import CARRIED_RECORDS, ChunkJob, merge_payloads

    path = str(next(iter(DATASETS.values())))
    unseen = ChunkRecorder(tmp_path / "not-on-this-node" / "chunks.jsonl")  # its directory does not exist here

    def job() -> ChunkJob:
        return ChunkJob(dump_processor(DimuonProcessor(), 1), NanoAODSchema, "fp", retries=0, compression=None,
                        recorder=unseen)

    run, other = job(), job()
    good = WorkItem("DY", path, "Events", 0, 10, file_uuid(path))
    stale = WorkItem("DY", path, "Events", 10, 20, "0" * 32)  # the file "changed since it was chunked"
    with pytest.raises(Exception, match="changed since it was chunked"):
        run.run(stale)
    # a record is held now; a merge (a coffea-style executor call merges the user's own dicts) is not touched
    assert decompress(merge_payloads([{"records": [1], "n": 1}, {"n": 2}], None)) == {"records": [1], "n": 3}
    assert [r["kind"] for r in other.run(good)[CARRIED_RECORDS]] == ["chunk"]  # another run's result: not it
    carried = run.run(good)[CARRIED_RECORDS]
    assert [r["kind"] for r in carried] == ["failure", "chunk"], carried
    assert carried[0]["chunk"].startswith("chunk 10-20 of ") and "changed since" in carried[0]["error"], carried
    assert carried[1]["start"] == 0 and carried[1]["events"] == 10, carried
    assert [r["kind"] for r in run.run(good)[CARRIED_RECORDS]] == ["chunk"]  # handed over once
    assert records.take_held(run.run_id) == [] and records.take_held(other.run_id) == []


FAILING = '''
from dimuon import DimuonProcessor


class Failing(DimuonProcessor):
    def process(self, events):
        if events.metadata["dataset"] == "DoubleMuon":
            raise ValueError("bad muon in test")
        return super().process(events)
'''


def test_failures_and_skipped_files_are_listed_with_their_messages(tmp_path):
    analysis = tmp_path / "failing.py"
    analysis.write_text(FAILING)
    missing = tmp_path / "gone.root"
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({"DYJetsToLL": [str(DATASETS["DYJetsToLL"])], "DoubleMuon": [str(DATASETS["DoubleMuon"])],
                              "Gone": [str(missing)]}))
    env_path = f"{EXAMPLES}:{REPO}"
    r = subprocess.run([sys.executable, "-m", "hpckit", "run", str(analysis), "--fileset", str(fs), "--treename", "Events",
                        "--executor", "iterative", "--chunksize", "20", "--skipbadfiles", "--no-status", "--no-plots",
                        "--output", str(tmp_path / "out.pkl")], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "PYTHONPATH": env_path})
    assert r.returncode == 1 and "bad muon in test" in r.stderr
    html = (tmp_path / "report.html").read_text()
    page = check_page(html)
    assert page.status == "failed"
    failures = html[html.index('id="failures"'):html.index('id="histograms"')]
    assert "ValueError: bad muon in test" in failures and "DoubleMuon" in failures
    io = html[html.index('id="io"'):html.index('id="failures"')]
    assert str(missing) in io and "Skipped files</th><td>1</td>" in io
    run = load_run(tmp_path)
    assert [f["dataset"] for f in run.failures] == ["DoubleMuon"]
    assert run.status[0] == "failed"


def test_a_line_cut_short_is_counted_not_fatal(tmp_path):
    """A kill in the middle of a write leaves half a line: the report shows what is whole and says so."""
    rec = {"kind": "chunk", "t0": 100.0, "t1": 101.5, "worker": "h:1", "job": None, "dataset": "A", "file": "a.root",
           "start": 0, "stop": 10, "events": 10, "bytes": 500, "retries": 0}
    (tmp_path / "run.json").write_text(json.dumps({"started": 99.0, "finished": None, "pid": 2**22 + 7,
                                                   "host": "elsewhere", "analysis": "a.py"}))
    (tmp_path / "chunks.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps(rec)[:40])
    run = load_run(tmp_path)
    assert len(run.chunks) == 1 and run.bad_lines == 1 and run.status[0] == "killed"
    html = write_report(tmp_path).read_text()
    assert "1 line(s) cut short" in html and "did not finish" in html
    assert check_page(html).worker_rows == ["h:1"]


def test_a_chunk_the_engine_ran_twice_is_counted_once(tmp_path):
    """Dask runs a task again when the worker holding its result is lost; both runs write a record. The report
    counts the chunk's events once, says how many chunks ran again, and still shows both workers' work."""
    rec = {"kind": "chunk", "t0": 100.0, "t1": 101.5, "worker": "h:1", "job": None, "dataset": "A", "file": "a.root",
           "start": 0, "stop": 10, "events": 10, "bytes": 500, "retries": 0}
    other = {**rec, "start": 10, "stop": 20, "t0": 101.0, "t1": 102.0}
    again = {**rec, "worker": "h:2", "t0": 103.0, "t1": 104.0}
    (tmp_path / "run.json").write_text(json.dumps({"started": 99.0, "finished": 105.0, "pid": 2**22 + 7,
                                                   "host": "elsewhere", "analysis": "a.py"}))
    (tmp_path / "chunks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (rec, other, again)))
    run = load_run(tmp_path)
    assert run.events_done == 20 and len(run.unique_chunks) == 2 and len(run.chunks) == 3
    html = write_report(tmp_path).read_text()
    assert "2 done; 1 run again by the engine (counted once)" in html and ">20<" in html.replace(" ", "")
    assert sorted(check_page(html).worker_rows) == ["h:1", "h:2"]


def test_report_of_a_directory_that_is_not_a_run(tmp_path):
    r = hpckit("report", tmp_path)
    assert r.returncode == 1
    assert f"{tmp_path} holds none of run.json" in r.stderr.replace("\n", "")
    assert "Traceback" not in r.stderr


@pytest.mark.slurm
@pytest.mark.timeout(150)
def test_failed_worker_jobs_are_red_rows_with_their_stderr(tmp_path):
    """Worker jobs that exit 3 before a worker starts: the launch fails; its report has one failed row
    per job and each job's state, exit code and stderr tail among the failures."""
    from launch_util import ANALYSIS, hpckit as launch_cli, run_jobs
    from slurm_util import require_slurm

    require_slurm()
    run_dir = tmp_path / "run"
    r = launch_cli(["launch", str(ANALYSIS), "--site", "slurm-local", "--backend", "dask", "--workers", "2",
                    "--fileset", str(EXAMPLES / "fileset.json"), "--run-dir", str(run_dir), "--worker-timeout", "60",
                    "--no-status", "--set", 'worker_init=["echo hpckit-test: no such environment >&2", "exit 3"]'],
                   cwd=tmp_path, timeout=140)
    assert r.returncode == 1, r.stderr
    jobs = run_jobs(run_dir)
    assert len(jobs) == 2
    html = (run_dir / "report.html").read_text()
    page = check_page(html)
    assert page.status == "failed"
    assert sorted(page.worker_rows) == sorted(f"job {j}" for j in jobs)
    assert html.count('class="worker-row failed"') == 2
    failures = html[html.index('id="failures"'):html.index('id="histograms"')]
    assert "WorkerTimeout: every worker job ended before a worker connected" in failures
    for j in jobs:
        assert f"<b>job {j}</b><pre>FAILED (exit 3:0)" in failures
    assert failures.count("hpckit-test: no such environment") >= 2  # the launch error and each job's stderr tail


def test_records_go_only_into_a_file_and_directory_of_the_users_own(tmp_path):
    """On a node without the shared file system the run directory's path does not exist, and another user of
    the node may make it (its /tmp): a worker does not append its records there (they are carried back with
    the results instead), nor through a link planted as chunks.jsonl."""
    import os

    from hpckit.processor.records import ChunkRecorder

    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "chunks.jsonl").symlink_to(victim)
    assert ChunkRecorder(linked / "chunks.jsonl")({"kind": "chunk"}) is False and victim.read_text() == "mine\n"
    if os.getuid() == 0:  # a real second owner needs root
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o777)
        os.chown(theirs, 65534, 65534)
        assert ChunkRecorder(theirs / "chunks.jsonl")({"kind": "chunk"}) is False
        assert not (theirs / "chunks.jsonl").exists()
    ours = tmp_path / "ours"
    ours.mkdir()
    assert ChunkRecorder(ours / "chunks.jsonl")({"kind": "chunk"}) is True
