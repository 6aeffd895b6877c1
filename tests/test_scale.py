"""Scale (issue 21): the persistent file metadata cache (hpckit.processor.metacache) lets a rerun plan
without opening its files, reads a changed file again and never trusts an edited or foreign cache; and
the pieces that go with it: light planning reads, the merge fold's bounded memory, the progress line,
`hpckit jobs` progress from the run records.

Real ROOT files made with uproot in tmp_path; a fresh XDG_CACHE_HOME / XDG_CONFIG_HOME per test.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import uproot

from hpckit import processor
from hpckit.processor.accumulate import FoldTree, tree_accumulate
from hpckit.processor.metacache import MetadataCache, open_cache

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with uproot.recreate(path) as f:  # a TTree (assigning a dict may write an RNTuple)
        f.mktree("Events", {"event": np.int64, "x": np.float64})
        f["Events"].extend({"event": np.arange(n, dtype=np.int64), "x": rng.normal(size=n)})
    return path


@pytest.fixture(autouse=True)
def own_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("HPCKIT_CHECKPOINT_KEY", raising=False)
    monkeypatch.delenv("HPCKIT_METADATA_CACHE", raising=False)


class Sum(processor.ProcessorABC):
    def process(self, events):
        return {"n": len(events), "x": float(np.sum(events.x))}

    def postprocess(self, acc):
        return acc


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return [_write(d / f"f{i}.root", 10 + i, seed=i) for i in range(12)]


def _fileset(files):
    return {"ds": {"treename": "Events", "files": [str(f) for f in files]}}


def _run(fileset, **kw):
    runner = processor.Runner(processor.IterativeExecutor(status=False), chunksize=1000, savemetrics=True, **kw)
    out, m = runner(fileset, processor_instance=Sum())
    return out, m


def _expected(files):
    n, x = 0, 0.0
    for f in files:
        with uproot.open(f) as fh:
            a = fh["Events"]["x"].array(library="np")
        n, x = n + len(a), x + float(a.sum())
    return n, x


def test_rerun_plans_from_the_cache_and_a_changed_file_is_read_again(files):
    """(More than 8 files: up to 8 are always read in full, their open trees serve the chunks.)"""
    fs = _fileset(files)
    _, m1 = _run(fs)
    assert (m1["files"], m1["files_metadata_from_cache"]) == (12, 0)
    out, m2 = _run(fs)  # a new Runner (a new run): everything from the persistent cache
    assert m2["files_metadata_from_cache"] == 12
    assert out["n"] == _expected(files)[0]

    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # touched: mtime differs
    _write(files[1], 40, seed=99)  # rewritten with more entries (size and uuid change)
    data = files[2].read_bytes()
    files[2].write_bytes(data + b"\0" * 16)  # size changed in place (same inode)
    out, m3 = _run(fs)
    assert m3["files_metadata_from_cache"] == 9
    n, x = _expected(files)
    assert out["n"] == n and out["x"] == pytest.approx(x, rel=1e-12)


def test_refresh_metadata_reads_every_file(files):
    fs = _fileset(files)
    _run(fs)
    _, m = _run(fs, refresh_metadata=True)
    assert m["files_metadata_from_cache"] == 0
    _, m = _run(fs, persistent_metadata=False)
    assert m["files_metadata_from_cache"] == 0


def test_cli_refresh_metadata(files, tmp_path):
    import json

    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps(_fileset(files)))
    analysis = tmp_path / "ana.py"
    analysis.write_text("from hpckit import processor\nimport numpy as np\n"
                        "class Sum(processor.ProcessorABC):\n"
                        "    def process(self, events):\n        return {'n': len(events)}\n"
                        "    def postprocess(self, a):\n        return a\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*extra):
        r = subprocess.run([sys.executable, "-m", "hpckit", "run", str(analysis), "--fileset", str(fs), "-e",
                            "iterative", "--no-status", "--no-plots", "-o", str(tmp_path / "out.pkl"), *extra],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return json.loads((tmp_path / "out.metrics.json").read_text())

    _run(_fileset(files))  # an earlier run (in this process, same cache) read them
    assert cli()["files_metadata_from_cache"] == 12
    assert cli("--refresh-metadata")["files_metadata_from_cache"] == 0


def test_edited_cache_is_refused_with_a_warning_and_redone(files, tmp_path):
    fs = _fileset(files)
    _run(fs)
    db = tmp_path / "cache" / "hpckit" / "metadata.sqlite"
    with sqlite3.connect(db) as con:  # someone makes the first file look 1000x longer
        con.execute("UPDATE files_v1 SET entries = 10000 WHERE entries = 10")
        assert con.total_changes == 1
    with pytest.warns(UserWarning, match=r"1 metadata cache entry .* failed the HMAC check"):
        out, m = _run(fs)
    assert m["files_metadata_from_cache"] == 11 and out["n"] == _expected(files)[0]
    with warnings.catch_warnings():  # rewritten with a good MAC: trusted again, silently
        warnings.simplefilter("error")
        _, m = _run(fs)
    assert m["files_metadata_from_cache"] == 12


def test_another_users_or_open_cache_dir_is_refused(files, tmp_path):
    cache = tmp_path / "cache" / "hpckit"
    cache.mkdir(parents=True)
    if os.geteuid() == 0:  # root can hand the directory to another user, as it would be found
        os.chown(cache, 4321, 4321)
        why = "owned by uid 4321"
    else:  # otherwise the same check refuses a directory others may write into
        cache.chmod(0o777)
        why = "writable by group or others"
    with pytest.warns(UserWarning, match=f"not using the file metadata cache: .*{why}"):
        _, m = _run(_fileset(files))
    assert m["files_metadata_from_cache"] == 0
    assert not (cache / "metadata.sqlite").exists()


def test_cache_file_of_someone_else_is_refused(tmp_path):
    (tmp_path / "c").mkdir(mode=0o700)
    db = tmp_path / "c" / "m.sqlite"
    db.write_bytes(b"")
    db.chmod(0o666)
    with pytest.warns(UserWarning, match="writable by group or others"):
        assert open_cache(db) is None


def test_size_cap_drops_the_least_recently_used(tmp_path):
    (tmp_path / "c").mkdir(mode=0o700)
    cache = MetadataCache(tmp_path / "c" / "m.sqlite", max_bytes=64 * 1024)
    specs = [processor.fileset.FileSpec("ds", f"root://host//f{i:05d}.root", "Events") for i in range(3000)]
    for i in range(0, 3000, 500):
        cache.store([(s, {"numentries": 5, "uuid": "u" * 36}) for s in specs[i : i + 500]], "root:0")
    assert 0 < len(cache) < 3000
    assert os.path.getsize(cache.path) <= 96 * 1024
    assert cache.lookup(specs[-10:], "root:0")  # the newest rows survive


def test_remote_entry_forgotten_when_the_file_changed(tmp_path):
    """A remote entry is trusted without a round trip; a chunk seeing another uuid makes the Runner drop it."""
    (tmp_path / "c").mkdir(mode=0o700)
    cache = MetadataCache(tmp_path / "c" / "m.sqlite")
    spec = processor.fileset.FileSpec("ds", "root://host//a.root", "Events")
    cache.store([(spec, {"numentries": 5, "uuid": "old"})], "root:0")
    assert cache.lookup([spec], "root:0") == {0: {"numentries": 5, "uuid": "old"}}
    runner = processor.Runner(processor.IterativeExecutor(status=False), persistent_metadata=cache)
    runner._forget_changed([("root://host//a.root", "root://host//a.root changed since it was chunked (uuid x)")])
    assert cache.lookup([spec], "root:0") == {}


def test_light_planning_read_matches_the_full_read(files, tmp_path):
    from hpckit.processor.planning import read_light
    from hpckit.processor.work import FileMetaTask

    spec = processor.fileset.FileSpec("ds", str(files[3]), "Events")
    full = FileMetaTask({}, 0)(spec)
    identity = full.pop("identity")  # the file as it was read (the Runner re-reads it once that changes)
    assert identity == MetadataCache.identity(str(files[3]))
    assert read_light(str(files[3]), "Events", {}) == full == {"numentries": 13, "uuid": full["uuid"]}
    assert read_light(str(files[3]), "Nope", {}) is None  # left to the full read, which names the error
    light = FileMetaTask({}, 0, light=True)
    assert "error" in light(processor.fileset.FileSpec("ds", str(files[3]), "Nope"))


def test_fold_on_arrival_holds_one_partial_result_per_level():
    """In chunk order (what a pool returns, roughly) the fold holds one partial result per tree level;
    out of order, early results wait; the merged bytes equal the tree's either way."""
    import pickle

    n, width = 2000, 20
    values = [{"s": float(v)} for v in np.random.default_rng(3).normal(size=n) * 1e3]
    tree = FoldTree(n, width)
    for i, v in enumerate(values):
        tree.put(0, i, v)
    assert tree.done and tree.held_max <= 3 < width and tree.waiting_max == 0
    shuffled = FoldTree(n, width)
    order = np.arange(n).reshape(-1, 4)[:, ::-1].ravel()  # each 4 swapped around: 2 workers' jitter
    for i in order:
        shuffled.put(0, int(i), values[i])
    assert shuffled.held_max <= 3 and shuffled.waiting_max <= 3
    assert pickle.dumps(shuffled.root) == pickle.dumps(tree.root) == pickle.dumps(tree_accumulate(values, n, width))


def test_futures_driver_holds_at_most_treereduction(files):
    ex = processor.FuturesExecutor(workers=2, status=False, treereduction=4)
    runner = processor.Runner(ex, chunksize=3, savemetrics=True)
    out, m = runner(_fileset(files), processor_instance=Sum())
    assert m["chunks"] > 40 and out["n"] == _expected(files)[0]
    assert ex.stats["held_max"] <= 4  # one partial result per level: log4(chunks) levels
    assert ex.stats["waiting_max"] <= 64  # no further ahead than the submission window


def test_progress_line_shows_total_rate_eta_and_failures():
    from rich.text import Text

    from hpckit.processor.progress import ChunkProgress

    p = ChunkProgress(True, 10)  # never started: nothing drawn, the columns rendered by hand
    p.advance(4, 400)
    p.failed(2)
    p.set_workers(3)
    task = p._progress.tasks[0]
    rendered = [c.render(task) for c in p._progress.columns]
    text = " ".join(str(r) for r in rendered if isinstance(r, (Text, str)))
    assert "4/10" in text and "chunks/s" in text and "2 failed" in text and "3 workers" in text
    assert "ETA" in text


def test_jobs_progress_from_the_run_records(files, tmp_path):
    """`hpckit jobs` reads a launch's progress from chunks.jsonl: here the records of a real run, cut
    as if the run were still going."""
    from hpckit.processor.records import ChunkRecorder
    from hpckit.report.rundata import progress_line

    rec = ChunkRecorder(tmp_path / "run" / "chunks.jsonl")
    rec.reset()
    _, m = _run(_fileset(files), recorder=rec)
    lines = (tmp_path / "run" / "chunks.jsonl").read_text().splitlines()
    assert progress_line(tmp_path / "run").startswith(f"{m['chunks']}/{m['chunks']} chunks")
    half = [ln for ln in lines if '"event":"end"' not in ln][: 2 + m["chunks"] // 2]
    (tmp_path / "run" / "chunks.jsonl").write_text("\n".join(half) + "\n")
    line = progress_line(tmp_path / "run")
    assert line.startswith(f"{m['chunks'] // 2}/{m['chunks']} chunks") and "chunks/s" in line and "ended" not in line


def test_planning_alone_spreads_over_the_futures_pool(files):
    """``Runner.preprocess`` without a processor plans many files on the pool's workers (light reads, a
    batch a task), gives the chunks the driver alone gives, and leaves no worker process behind."""
    import psutil

    fs = _fileset(files)
    alone = list(processor.Runner(processor.IterativeExecutor(status=False), chunksize=7,
                                  persistent_metadata=False).preprocess(fs))

    def kids() -> set[int]:
        from services import own_descendants

        alive = set()
        for pid in own_descendants():
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.add(pid)
        return alive

    before = kids()
    gen = processor.Runner(processor.FuturesExecutor(workers=2, status=False), chunksize=7,
                           persistent_metadata=False).preprocess(fs)
    pooled = [next(gen)]  # every file is planned by now: by the pool's two workers, still up
    assert len(kids() - before) == 2
    pooled.extend(gen)
    assert pooled == alone and len(alone) > len(files)
    assert not kids() - before


def test_processed_chunks_are_ranges_per_file_in_the_driver(files):
    """The driver holds which chunks came back for the whole run: as one key per chunk that grew with the
    chunk count (~190 bytes a chunk); now consecutive chunks of a file are one range."""
    runner = processor.Runner(processor.FuturesExecutor(workers=2, status=False), chunksize=4,
                              persistent_metadata=False)
    raw = runner.run(_fileset(files), processor_instance=Sum())
    processed = raw["processed"]
    assert len(processed) > 2 * len(files)  # several chunks a file were merged in ...
    keys = list(processed)
    assert len(keys) == len(files)  # ... and each file's chunks are one range: its whole tree
    assert {(k[1], k[3], k[4]) for k in keys} == {(str(f), 0, uproot.open(f)["Events"].num_entries) for f in files}
    assert raw["out"]["n"] == _expected(files)[0]
