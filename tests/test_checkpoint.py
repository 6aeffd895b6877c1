"""Checkpoints: a run killed with SIGKILL resumes and redoes only the unfinished chunks."""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from conftest import EXAMPLES, REPO, assert_matches_reference

import lz4.frame
import pytest

from hpckit import processor
from hpckit.processor.checkpoint import CheckpointKeyError, checkpoint_key

TESTS = Path(__file__).resolve().parent


def _hpckit_run(analysis, fileset, out, checkpoint, extra=(), env=None):
    cmd = [sys.executable, "-m", "hpckit", "run", str(analysis), "--fileset", str(fileset), "--output", str(out),
           "--checkpoint", str(checkpoint), "--chunksize", "4", "--no-status", "--no-plots", *extra]
    e = dict(os.environ, PYTHONPATH=f"{EXAMPLES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {}))
    return subprocess.Popen(cmd, env=e, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _count_checkpoints(d: Path) -> int:
    return sum(1 for _ in d.rglob("*.ckpt"))


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
    with pytest.warns(UserWarning, match=str(path)):
        assert ckpt.load(item, "fp") is None


# --- checkpoints are data you can trust ------------------------------------------------------------

class _Planted:
    """Unpickling this creates the marker: the attack the HMAC check must stop."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(autouse=True)
def private_key_home(tmp_path, monkeypatch):
    """Each test has its own checkpoint key (in a fresh config dir)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("HPCKIT_CHECKPOINT_KEY", raising=False)


def _item(ds="ds", start=0):
    return processor.WorkItem(ds, "/x/f.root", "Events", start, start + 10, "uuid")


def _result(item, n=1):
    return {"out": {"n": n}, "processed": {item.key}}


def test_planted_pickles_are_never_unpickled(tmp_path):
    ckpt = processor.SimpleCheckpointer(tmp_path / "ck")
    item = _item()
    path = ckpt.path(item, "fp")
    path.parent.mkdir(parents=True)
    marker = tmp_path / "PWNED"
    evil = pickle.dumps(_Planted(marker))
    forged_mac = b"HPCKCKP1" + b"\0" * 32 + lz4.frame.compress(evil)
    for planted in (evil, lz4.frame.compress(evil), forged_mac):
        path.write_bytes(planted)
        with pytest.warns(UserWarning, match=f"{path}.*HMAC|{path}.*not an hpckit checkpoint"):
            assert ckpt.load(item, "fp") is None
    assert not marker.exists(), "a planted checkpoint was unpickled"
    # the file would have run code: prove the marker mechanism works
    pickle.loads(evil)
    assert marker.exists()


def test_empty_garbage_and_other_chunks_files_are_redone(tmp_path):
    ckpt = processor.SimpleCheckpointer(tmp_path / "ck")
    a, b = _item(start=0), _item(start=10)
    ckpt.save(_result(a), a, "fp")
    ckpt.save(_result(b), b, "fp")
    pa, pb = ckpt.path(a, "fp"), ckpt.path(b, "fp")
    good_a = pa.read_bytes()
    for data, reason in ((b"", "empty file"), (os.urandom(5000), "not an hpckit checkpoint"),
                         (pb.read_bytes(), "HMAC")):
        pa.write_bytes(data)
        with pytest.warns(UserWarning, match=f"{pa}.*{reason}"):
            assert ckpt.load(a, "fp") is None
    pa.write_bytes(good_a)
    assert ckpt.load(a, "fp") == _result(a)
    assert ckpt.load(a, "other-fingerprint") is None  # no file under another processor's fingerprint
    other_key = processor.SimpleCheckpointer(tmp_path / "ck", key=b"k" * 32)  # another user's key
    with pytest.warns(UserWarning, match="HMAC"):
        assert other_key.load(a, "fp") is None


def test_not_owned_or_in_writable_directory_is_refused(tmp_path):
    ckpt = processor.SimpleCheckpointer(tmp_path / "ck")
    item = _item()
    ckpt.save(_result(item), item, "fp")
    path = ckpt.path(item, "fp")
    assert ckpt.load(item, "fp") == _result(item)
    os.chmod(path.parent, 0o777)  # anyone could have replaced the file
    with pytest.warns(UserWarning, match="writable by others"):
        assert ckpt.load(item, "fp") is None
    os.chmod(path.parent, 0o700)
    if os.getuid() == 0:  # only root can give a file away
        os.chown(path, 65534, 65534)
        with pytest.warns(UserWarning, match="owned by uid 65534"):
            assert ckpt.load(item, "fp") is None
        os.chown(path, 0, 0)
    assert ckpt.load(item, "fp") == _result(item)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700  # written private


def test_key_is_private_and_refused_otherwise(tmp_path):
    key_path = tmp_path / "config" / "hpckit" / "checkpoint.key"
    k1 = checkpoint_key()
    assert key_path.is_file() and len(k1) == 32 and checkpoint_key() == k1
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    os.chmod(key_path, 0o644)
    with pytest.raises(CheckpointKeyError, match="chmod 600"):
        checkpoint_key()
    assert "k1" not in repr(processor.SimpleCheckpointer(tmp_path, key=b"x" * 32))


class PerDataset(processor.ProcessorABC):
    def process(self, events):
        return {events.metadata["dataset"]: len(events)}


def test_dataset_names_never_collide(tmp_path):
    """`DY+jets` and `DY_jets` sanitize to the same text; their checkpoints must stay apart."""
    from conftest import DATA

    f1, f2 = str(DATA / "nano_dy.root"), str(DATA / "nano_dimuon.root")
    ckpt = processor.SimpleCheckpointer(tmp_path / "ck")
    fileset = {"DY+jets": {"files": {f1: "Events"}}, "DY_jets": {"files": {f1: "Events"}},
               "other": {"files": {f2: "Events"}}}
    run = lambda: processor.Runner(processor.IterativeExecutor(status=False), chunksize=10, checkpointer=ckpt,
                                   savemetrics=True)(fileset, processor_instance=PerDataset())
    out1, m1 = run()
    out2, m2 = run()
    assert m1["chunks_from_checkpoint"] == 0 and m2["chunks_from_checkpoint"] == m1["chunks_processed"]
    assert out1 == out2 == {"DY+jets": 40, "DY_jets": 40, "other": 40}
    assert ckpt.path(_item("DY+jets"), "fp") != ckpt.path(_item("DY_jets"), "fp")


def test_checkpoints_on_the_driver_never_save_a_skipped_file(tmp_path):
    """A file skipped during an outage (skipbadfiles) is tried again on a resume: the driver's checkpointer
    (workers without the checkpoint directory) saves a chunk's result only when it holds events, as the
    workers' own checkpoints do."""
    from hpckit.processor.work import DriverCheckpoints

    saver = DriverCheckpoints(processor.SimpleCheckpointer(tmp_path / "ck"), "fp", None)
    item = processor.WorkItem("ds", "/x/f.root", "Events", 0, 10, "uuid")
    saver.save(item, {"metrics": {"skipped": [{"chunk": item.describe(), "error": "timed out"}]}})
    assert not list((tmp_path / "ck").rglob("*.ckpt")) and saver.load(item) is None
    saver.save(item, {"out": {"n": 10}, "metrics": {"entries": 10}})
    assert len(list((tmp_path / "ck").rglob("*.ckpt"))) == 1 and saver.load(item) is not None


def test_dask_dataframes_refuse_checkpoints_on_the_driver_too(tmp_path):
    """use_dataframes builds the output from the workers' frames: a chunk answered by a checkpoint has none,
    so its rows would be missing. Refused with workers that write checkpoints and with the driver's alike."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        ex = processor.DaskExecutor(client=client, use_dataframes=True, status=False, shared_filesystem=False)
        runner = processor.Runner(ex, chunksize=100, checkpointer=processor.SimpleCheckpointer(tmp_path / "ck"))
        with pytest.raises(ValueError, match="use_dataframes=True cannot be combined with a checkpointer"):
            runner(str(EXAMPLES / "fileset.json"), processor_instance=_Count())
    assert not (tmp_path / "ck").exists() or not list((tmp_path / "ck").rglob("*.ckpt"))


class _Count(processor.ProcessorABC):
    def process(self, events):
        return {"n": len(events)}

    def postprocess(self, acc):
        return acc


_NOTEBOOK_CELL = '''
from hpckit import processor


class Cell(processor.ProcessorABC):
    def process(self, events):
        kind = "mc" if self.name in {"dy", "tt", "ww"} else "data"
        return {kind: len(events) * FACTOR}

    def postprocess(self, acc):
        return acc
'''


def _cell_processor(factor: int):
    """A processor class as a notebook cell or stdin defines it: compiled from text Python keeps no file of."""
    namespace = {"__name__": "__main__", "FACTOR": factor}
    exec(compile(_NOTEBOOK_CELL.replace("FACTOR", str(factor)), "<ipython-input-1>", "exec"), namespace)
    proc = namespace["Cell"]()
    proc.name = "dy"
    return proc


def _cell_fingerprint(factor: int, seed: str) -> str:
    """The fingerprint of ``_cell_processor(factor)`` in a fresh ``python -c`` (whose __main__, like a
    notebook kernel's, has no file), with hash randomisation seeded by ``seed``."""
    probe = (f"import sys; sys.path[:0] = [{str(REPO / 'tests')!r}, {str(EXAMPLES)!r}]; "
             "from test_checkpoint import _cell_processor; "
             "from hpckit.processor.checkpoint import processor_fingerprint; "
             f"print(processor_fingerprint(_cell_processor({factor})))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONHASHSEED": seed}, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()[-1]


def test_fingerprint_follows_code_python_has_no_source_of():
    """A notebook user edits process() and reruns with the same checkpoint directory: the fingerprint (the
    checkpoints' key) changes, so no chunk of the old code is reused; the same code gives the same
    fingerprint in another process (hash randomisation included), so a resume still finds its checkpoints."""
    one = _cell_fingerprint(1, "1")
    assert _cell_fingerprint(2, "1") != one
    assert _cell_fingerprint(1, "2") == one


def test_fingerprint_follows_partial_arguments_bound_methods_and_helper_modules(tmp_path, monkeypatch):
    import functools

    from hpckit.processor.checkpoint import processor_fingerprint

    ana = tmp_path / "ana_fp"
    ana.mkdir()
    (ana / "__init__.py").write_text("")
    (ana / "helpers.py").write_text("def weight(n):\n    return n\n")
    (ana / "proc.py").write_text(
        "from ana_fp.helpers import weight\n\n\ndef count(events, scale=1):\n    return {'n': weight(len(events)) * scale}\n\n\n"
        "class Two:\n    def first(self, events):\n        return {'a': len(events)}\n\n"
        "    def second(self, events):\n        return {'b': 2 * len(events)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from ana_fp import proc

    fp = processor_fingerprint
    assert fp(functools.partial(proc.count, scale=1)) != fp(functools.partial(proc.count, scale=2))
    two = proc.Two()
    assert fp(two.first) != fp(two.second)
    before = fp(proc.count)
    (ana / "helpers.py").write_text("def weight(n):\n    return 2 * n\n")  # only the helper module changes
    assert fp(proc.count) != before


class _ByCrossSection(processor.ProcessorABC):
    def process(self, events):
        return {"weighted": len(events) * events.metadata["xsec"]}

    def postprocess(self, acc):
        return acc


def test_a_checkpoint_made_with_other_dataset_metadata_is_not_reused(tmp_path):
    """process() may use the dataset's metadata (a cross section): a rerun with a corrected xsec and the same
    checkpoint directory recomputes every chunk instead of returning the old weights."""
    from conftest import DATASETS

    ckpt = processor.SimpleCheckpointer(tmp_path / "ck")
    for xsec in (1.0, 2.5):
        fileset = {"DY": {"files": {str(DATASETS["DYJetsToLL"]): "Events"}, "metadata": {"xsec": xsec}}}
        runner = processor.Runner(processor.IterativeExecutor(status=False), chunksize=10, checkpointer=ckpt,
                                  savemetrics=True)
        out, metrics = runner(fileset, processor_instance=_ByCrossSection())
        assert out["weighted"] == 40 * xsec and metrics["chunks_from_checkpoint"] == 0, (xsec, out, metrics)
    out, metrics = runner(fileset, processor_instance=_ByCrossSection())  # the same metadata again: reused
    assert out["weighted"] == 100.0 and metrics["chunks_from_checkpoint"] == 4


def test_fingerprint_reads_the_analysis_not_the_python_installed_beside_it(monkeypatch):
    """An analysis module at the top of a directory that also holds the Python installation (a conda in
    $HOME): the fingerprint reads the analysis's own modules, not the standard library's sources."""
    import types as _types

    from hpckit.processor import checkpoint

    stdlib_json = Path(json.__file__).resolve()
    fake = _types.ModuleType("fp_analysis_at_prefix")
    fake.__file__ = str(Path(sys.base_prefix).resolve() / "fp_analysis_at_prefix.py")  # top of the prefix
    monkeypatch.setitem(sys.modules, "fp_analysis_at_prefix", fake)
    read = [part.split(b"\0", 1)[0].decode() for part in checkpoint._analysis_sources(fake)]
    assert str(stdlib_json) not in read, read[:5]
