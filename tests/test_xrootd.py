"""root:// files read from real XRootD servers on loopback (scripts/xrootd-local.sh): every executor gives
the local-file result exactly; replicas fail over on a stopped, killed or frozen server; XRootD errors are
file errors that name the URL and that skipbadfiles skips."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATASETS, EXAMPLES, REPO, assert_matches_reference, reference_dimuon
from dimuon import DimuonProcessor

import xrootd_util
from hpckit import processor
from hpckit.core.errors import ChunkError, FileAccessError, FilesetError

pytestmark = [pytest.mark.xrootd, pytest.mark.timeout(300)]

FILES = {"DYJetsToLL": "nano_dy.root", "DoubleMuon": "nano_dimuon.root"}


@pytest.fixture(scope="module")
def sites() -> dict[str, str]:
    return xrootd_util.sites()


def fileset(base: dict[str, str] | str, replicas: dict[str, list[str]] | None = None) -> dict:
    """The example fileset over URLs: ``base`` per dataset (or one for all), optional replica bases."""
    out = {}
    for ds, name in FILES.items():
        b = base[ds] if isinstance(base, dict) else base
        entry: dict = {"object_path": "Events"}
        if replicas:
            entry["replicas"] = [f"{r}/{name}" for r in replicas.get(ds, [])]
        out[ds] = {"files": {f"{b}/{name}": entry}, "metadata": {"year": 2018}}
    return out


def run(executor, fs, proc=None, chunksize=10, treename=None, **kwargs):
    runner = processor.Runner(executor, chunksize=chunksize, savemetrics=True, xrootdtimeout=3, **kwargs)
    return runner(fs, processor_instance=proc if proc is not None else DimuonProcessor(), treename=treename)


def local_result(chunksize=10):
    return run(processor.IterativeExecutor(status=False), {ds: [str(p)] for ds, p in DATASETS.items()},
               chunksize=chunksize, treename="Events")


def assert_same(out, ref):
    assert out["cutflow"] == ref["cutflow"]
    for ds in ref["mass"].axes[0]:
        assert (out["mass"][ds, :].values() == ref["mass"][ds, :].values()).all(), ds


class Saboteur(DimuonProcessor):
    """The dimuon processor, which also sends ``sig`` to a server once, at the start of the first chunk
    of ``target`` (before that chunk reads its columns): a fault in the middle of a run."""

    def __init__(self, pid: int, sig: int, target: str, marker: str):
        self.pid, self.sig, self.target, self.marker = pid, sig, target, marker

    def process(self, events):
        meta = events.metadata
        if meta["filename"].endswith(self.target) and meta["entrystart"] == 0:
            try:
                with open(self.marker, "x"):
                    os.kill(self.pid, self.sig)
            except (FileExistsError, ProcessLookupError):
                pass
        return super().process(events)


# -- results over root:// equal local-file results ----------------------------------------------------
def _dask_executor():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
    client = Client(cluster)
    return processor.DaskExecutor(client=client, status=False), lambda: (client.close(), cluster.close())


# the local engines share one reading path (futures stands for iterative); Parsl reads remote files through
# the same per-chunk code as Dask (tests/test_cluster.py and test_delivery_slurm.py run Parsl end to end)
@pytest.mark.parametrize("name", ["futures", "dask"])
def test_remote_equals_local(name, sites, tmp_path):
    """Each dataset from a different site; the same histograms and cutflow as the local files, bit for bit."""
    close = lambda: None  # noqa: E731
    if name == "iterative":
        executor = processor.IterativeExecutor(status=False)
    elif name == "futures":
        executor = processor.FuturesExecutor(workers=2, status=False)
    else:
        pytest.importorskip("distributed")
        executor, close = _dask_executor()
    try:
        out, metrics = run(executor, fileset({"DYJetsToLL": sites["site1"], "DoubleMuon": sites["site2"]}))
    finally:
        close()
    ref, ref_metrics = local_result()
    assert_same(out, ref)
    assert_matches_reference(out, reference_dimuon())
    assert metrics["entries"] == ref_metrics["entries"] == 80
    assert metrics["chunks"] == ref_metrics["chunks"] == 8
    if name == "iterative":  # one process: every basket read once, as from the local file
        assert metrics["bytesread"] == ref_metrics["bytesread"] > 0
    assert metrics["bytesread"] > 0
    assert metrics["served_by"] == {f"{sites['site1']}/nano_dy.root": 4, f"{sites['site2']}/nano_dimuon.root": 4}
    assert metrics["failovers"] == 0 and metrics["requests"] > 0


def test_hpckit_run_json_fileset_with_urls_and_checkpoints(sites, tmp_path):
    """`hpckit run` over a JSON fileset mixing root:// (with a replica), file:// and a relative path; the
    URLs are left alone by relative-path resolution, and a second run comes from the checkpoints."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "nano_dimuon.root").write_bytes(DATASETS["DoubleMuon"].read_bytes())
    fs = {
        "DYJetsToLL": {"files": {f"{sites['site1']}/nano_dy.root": {
            "object_path": "Events", "replicas": [f"{sites['site2']}/nano_dy.root", "../local/nano_dy.root"]}}},
        "DoubleMuon": {"files": {"data/nano_dimuon.root": "Events"}},
        "Extra": {"files": {f"file://{DATASETS['DoubleMuon']}": "Events"}},
    }
    path = tmp_path / "fs.json"
    path.write_text(json.dumps(fs))
    args = [sys.executable, "-m", "hpckit", "run", str(EXAMPLES / "dimuon.py"), "--fileset", str(path),
            "--executor", "iterative", "--chunksize", "10", "--checkpoint", str(tmp_path / "ck"), "--no-status",
            "--no-plots", "--output", str(tmp_path / "out.pkl")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for attempt in range(2):
        r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)
        assert r.returncode == 0, r.stderr
        metrics = json.loads((tmp_path / "out.metrics.json").read_text())
        assert metrics["entries"] == 120 and metrics["chunks"] == 12
        assert metrics["chunks_from_checkpoint"] == (0 if attempt == 0 else 12)
    out = pickle.loads((tmp_path / "out.pkl").read_bytes())
    ref = reference_dimuon()
    assert out["cutflow"]["DYJetsToLL"] == ref["cutflow"]["DYJetsToLL"]
    assert out["cutflow"]["DoubleMuon"] == out["cutflow"]["Extra"] == ref["cutflow"]["DoubleMuon"]


# -- replicas and faults -----------------------------------------------------------------------------
def test_server_stopped_before_the_run_all_chunks_from_the_replica(sites):
    with xrootd_util.server("hpckit-stopped") as srv:
        down = srv.url
        srv.stop()
        out, metrics = run(processor.FuturesExecutor(workers=2, status=False), fileset(down, {
            "DYJetsToLL": [sites["site2"]], "DoubleMuon": [sites["site2"]]}))
    assert_matches_reference(out, reference_dimuon())
    assert metrics["entries"] == 80
    assert metrics["served_by"] == {f"{sites['site2']}/nano_dy.root": 4, f"{sites['site2']}/nano_dimuon.root": 4}


def test_futures_pool_does_not_fork_a_process_that_read_over_xrootd(sites):
    """Once the XRootD client has read in this process, the Futures pool is made by a fork server, not by
    forking this process: XRootD's threads and fork handlers made fork() hang for good (seen here: the
    driver stuck in fork() after planning against a stopped server). In a fresh interpreter a local run
    forks (inherited open files); after a root:// read it does not, and still gives the local result."""
    from hpckit.processor.executors.futures import fork_is_safe

    code = ("import sys; from hpckit.processor.executors.futures import fork_is_safe; "
            "from hpckit.events.reader import open_tree; open_tree(sys.argv[1], 'Events'); "
            "print(fork_is_safe()); open_tree(sys.argv[2], 'Events'); print(fork_is_safe())")
    r = subprocess.run([sys.executable, "-c", code, str(DATASETS["DYJetsToLL"]), f"{sites['site1']}/nano_dy.root"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]  # a local file: fork; after a root:// read: no fork

    out, metrics = run(processor.FuturesExecutor(workers=2, status=False), fileset(sites["site1"]))
    assert not fork_is_safe()
    assert_matches_reference(out, reference_dimuon())
    assert metrics["entries"] == 80


def test_futures_pool_without_fork_does_not_rerun_a_script_without_a_main_guard(tmp_path):
    """The fork server's workers do not import the driver's script: a coffea-style script with no
    ``if __name__ == "__main__":`` guard, with the XRootD client loaded (so no fork), runs once and gives the
    result, instead of every worker starting the analysis again (multiprocessing's default for spawned and
    fork-server workers; the pool then broke)."""
    script = tmp_path / "analysis.py"
    script.write_text(
        "import sys\n"
        "import XRootD.client  # loaded: the pool may not fork this process\n"
        f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        "from dimuon import DimuonProcessor\n"
        "from hpckit import processor\n"
        "from hpckit.events import NanoAODSchema\n"
        "print('script body ran', flush=True)\n"
        "runner = processor.Runner(processor.FuturesExecutor(workers=2, status=False), schema=NanoAODSchema,\n"
        "                          chunksize=10)\n"
        f"out = runner({str(EXAMPLES / 'fileset.json')!r}, processor_instance=DimuonProcessor())\n"
        "print('muons', sum(c['muons'] for c in out['cutflow'].values()), flush=True)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("script body ran") == 1, r.stdout
    assert "muons 102" in r.stdout, r.stdout  # 18 + 84, as the local reference


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_server_fails_mid_run_replica_takes_over(sig, sites, tmp_path):
    """Killed: the reads fail at once; frozen (SIGSTOP): they time out after xrootdtimeout. Either way the
    chunk moves to the replica within its attempt: no retry spent, no event lost or counted twice."""
    with xrootd_util.server(f"hpckit-mid-{sig}") as srv:
        try:
            proc = Saboteur(srv.pid, sig, "nano_dy.root", str(tmp_path / "fired"))
            out, metrics = run(processor.IterativeExecutor(status=False, retries=1), fileset(srv.url, {
                "DYJetsToLL": [sites["site2"]], "DoubleMuon": [sites["site2"]]}), proc=proc)
        finally:
            os.kill(srv.pid, signal.SIGCONT) if sig == signal.SIGSTOP else None
    assert (tmp_path / "fired").exists()
    ref, _ = local_result()
    assert_same(out, ref)
    assert metrics["entries"] == 80 and metrics["chunks"] == 8
    assert metrics["failovers"] >= 1
    assert metrics["retries"] == 0
    served = metrics["served_by"]
    assert sum(served.values()) == 8
    assert served[f"{sites['site2']}/nano_dy.root"] == 4  # the first chunk onwards moved to the replica


def _freeze_without_replica(sites, tmp_path, **kwargs):
    with xrootd_util.server("hpckit-frozen") as srv:
        try:
            proc = Saboteur(srv.pid, signal.SIGSTOP, "nano_dimuon.root", str(tmp_path / "fired"))
            fs = fileset(srv.url)
            return fs, run(processor.IterativeExecutor(status=False, retries=1), fs, proc=proc, chunksize=40, **kwargs)
        finally:
            os.kill(srv.pid, signal.SIGCONT)


def test_frozen_server_without_replica_retries_then_names_the_url(sites, tmp_path):
    with pytest.raises(ChunkError) as info:
        _freeze_without_replica(sites, tmp_path)
    msg = str(info.value)
    assert "nano_dimuon.root" in msg and "root://127.0.0.1:" in msg
    assert "tried up to 2 times" in msg and ("timeout" in msg or "expired" in msg)


def test_frozen_server_without_replica_skipped_with_skipbadfiles(sites, tmp_path):
    with pytest.warns(UserWarning, match="skipp"):
        fs, (out, metrics) = _freeze_without_replica(sites, tmp_path, skipbadfiles=True)
    ref = reference_dimuon({"DYJetsToLL": DATASETS["DYJetsToLL"]})
    assert out["cutflow"] == ref["cutflow"]  # DoubleMuon's only chunk was skipped, DY's counted once
    assert metrics["entries"] == 40
    [skipped] = metrics["skipped"]
    assert skipped["file"] == list(fs["DoubleMuon"]["files"])[0]


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_missing_file_and_directory_are_file_errors(what, sites):
    url = f"{sites['site1']}/nope.root" if what == "missing" else sites["site1"]
    fs = {"X": {"files": {url: "Events"}}, "DYJetsToLL": [f"{sites['site1']}/nano_dy.root"]}
    with pytest.raises(FileAccessError) as info:
        run(processor.IterativeExecutor(status=False), fs, treename="Events")
    assert url in str(info.value)
    assert ("file not found" if what == "missing" else "is a directory") in str(info.value)
    assert info.value.permanent  # not retried: it will not appear by itself
    with pytest.warns(UserWarning, match="skipping"):
        out, metrics = run(processor.IterativeExecutor(status=False), fs, treename="Events", skipbadfiles=True)
    assert metrics["entries"] == 40 and [s["file"] for s in metrics["skipped"]] == [url]
    assert out["cutflow"]["DYJetsToLL"] == reference_dimuon()["cutflow"]["DYJetsToLL"]


def test_missing_primary_served_by_replica(sites):
    fs = {"DYJetsToLL": {"files": {f"{sites['site1']}/gone.root": {
        "object_path": "Events", "replicas": [f"{sites['site2']}/nano_dy.root"]}}}}
    out, metrics = run(processor.IterativeExecutor(status=False), fs)
    assert out["cutflow"]["DYJetsToLL"] == reference_dimuon()["cutflow"]["DYJetsToLL"]
    assert metrics["served_by"] == {f"{sites['site2']}/nano_dy.root": 4}


# -- bad input, before any worker starts --------------------------------------------------------------
class Never(processor.ProcessorABC):
    def process(self, events):
        raise AssertionError("no chunk may run")

    def postprocess(self, acc):
        return acc


def test_replica_holding_another_file_is_an_error_naming_both(sites):
    a, b = f"{sites['site1']}/nano_dy.root", f"{sites['site2']}/nano_dimuon.root"
    fs = {"DYJetsToLL": {"files": {a: {"object_path": "Events", "replicas": [b]}}}}
    with pytest.raises(FilesetError) as info:
        run(processor.FuturesExecutor(workers=2, status=False), fs, proc=Never(), skipbadfiles=True)
    assert a in str(info.value) and b in str(info.value) and "different file" in str(info.value)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("root://", "no valid host"),
        ("root://127.0.0.1:99999//data/f.root", "port '99999'"),
        ("root://127.0.0.1:1094", "no file path"),
        ("gsiftp://host//f.root", "unknown URL scheme 'gsiftp'"),
        ("root:/host//f.root", "one slash"),
        ("file://host/f.root", "file:///absolute/path"),
    ],
)
def test_malformed_urls_name_the_entry(name, expected):
    with pytest.raises(FilesetError, match="dataset 'D'") as info:
        run(processor.IterativeExecutor(status=False), {"D": {"files": {name: "Events"}}}, proc=Never())
    assert expected in str(info.value) and name in str(info.value)


def test_bad_replicas_name_the_entry(sites):
    good = f"{sites['site1']}/nano_dy.root"
    cases = [
        ({"object_path": "Events", "replicas": f"{sites['site2']}/nano_dy.root"}, "'replicas' must be a list"),
        ({"object_path": "Events", "replicas": ["ftp://x//f.root"]}, "replica of"),
        ({"object_path": "Events", "replicas": [good]}, "listed twice"),
        ({"object_path": "Events", "replica": []}, "unknown key(s) ['replica']"),
    ]
    for entry, expected in cases:
        with pytest.raises(FilesetError) as info:
            run(processor.IterativeExecutor(status=False), {"D": {"files": {good: entry}}}, proc=Never())
        assert expected in str(info.value) and "dataset 'D'" in str(info.value) and good in str(info.value)


def test_without_the_xrootd_extra_fails_at_once_with_the_install_line(tmp_path):
    """The packages are installed here, so a subprocess hides them with an import hook (a real failed import,
    not a mock of hpckit): the Runner must refuse the root:// fileset before opening anything."""
    code = r"""
import sys, importlib.abc
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("XRootD", "fsspec_xrootd", "pyxrootd"):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Hide())
from hpckit import processor
try:
    processor.Runner(processor.IterativeExecutor(status=False))(
        {"D": ["root://127.0.0.1:1//x/f.root"]}, processor_instance=object(), treename="Events")
except ImportError as err:
    print("ERR", type(err).__name__, err)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert "ERR RemoteSupportMissing" in r.stdout, r.stdout + r.stderr
    assert "pip install 'hpckit[xrootd]'" in r.stdout and "root://127.0.0.1:1//x/f.root" in r.stdout


def test_servers_refuse_non_loopback_clients(sites):
    """xrd.allow: a client connecting from this host's non-loopback address is turned away."""
    import psutil
    from XRootD import client

    from hpckit.io.storage import configure_xrootd_client

    configure_xrootd_client()  # timeouts checked every second, not every 15 s

    addrs = [a.address for al in psutil.net_if_addrs().values() for a in al
             if a.family == 2 and not a.address.startswith("127.")]
    if not addrs:
        pytest.skip("this host has no non-loopback IPv4 address to connect from")
    port = sites["site1"].split(":")[2].split("/")[0]
    status, _ = client.FileSystem(f"root://{addrs[0]}:{port}").stat("/", timeout=3)
    assert not status.ok
    ok, _ = client.FileSystem(f"root://127.0.0.1:{port}").stat(sites["site1"].split(port, 1)[1][1:], timeout=5)
    assert ok.ok


def test_remote_reads_coalesced_one_request_per_basket_window(sites):
    """The first chunk of a cold process reads branch by branch (it cannot know what the processor will
    touch); from then on the branches used before come in one vector request per basket window."""
    from hpckit.events import reader

    reader.close_all()
    reader._HOT.clear()  # a cold process
    fs = {ds: [f"{sites['site1']}/{name}"] for ds, name in FILES.items()}
    out, metrics = run(processor.IterativeExecutor(status=False), fs, chunksize=40, treename="Events")
    assert_matches_reference(out, reference_dimuon())
    assert metrics["columns"] == sorted(["nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"])
    assert metrics["requests"] == 6 + 1  # one basket per branch in these files: one window per file


@pytest.mark.parametrize("runner", ["new-runner", "same-runner-with-checkpoints"])
def test_a_remote_file_replaced_between_two_runs_in_one_process_is_read_anew(runner, sites, tmp_path):
    """A notebook reruns over root:// after the file on the server was remade under the same name: the second
    run, in the same process, plans and reads the new file (each run drops the process's remote handles; a
    chunk whose file's uuid differs from its handle's reopens it; with a checkpointer a reused Runner reads
    the uuid afresh, since checkpoints are found by it), never the first run's events."""
    kept = processor.Runner(processor.IterativeExecutor(status=False), chunksize=10, xrootdtimeout=3,
                            checkpointer=processor.SimpleCheckpointer(tmp_path / "ck"))
    base = sites["site1"]
    disk = Path("/" + base.split("//", 2)[2])  # root://host:port//path: the server exports this directory
    name = f"remade-{os.getpid()}.root"
    try:
        for source in (DATASETS["DYJetsToLL"], DATASETS["DoubleMuon"]):
            part = disk / f".{name}"
            shutil.copyfile(source, part)
            part.chmod(0o644)  # readable by the server's user
            part.replace(disk / name)
            fs = {"S": {"files": {f"{base}/{name}": "Events"}}}
            if runner == "new-runner":
                out, _ = run(processor.IterativeExecutor(status=False), fs)
            else:
                out = kept(fs, processor_instance=DimuonProcessor(), treename="Events")
            assert out["cutflow"]["S"] == reference_dimuon({"S": source})["cutflow"]["S"], source.name
    finally:
        (disk / name).unlink(missing_ok=True)
