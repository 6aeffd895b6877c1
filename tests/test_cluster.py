"""Many nodes, not one: `hpckit launch` across the cluster of scripts/cluster-local.sh, and what a single node hides.

What these check: the nodes are separate (hostname, address, /tmp; no route out; noshare nodes see no
repository), Dask and Parsl workers on node1-3 dial the login node's cluster address (TLS, CurveZMQ) and the
output equals `hpckit run --executor iterative` with chunks on every node; the run directory names the
address that ran; a node killed mid-run loses no chunk; a SIGKILLed launch then `hpckit cancel` leaves no job
or worker on any node. Render and interface checks (no cluster needed) run first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tarfile
import time
from pathlib import Path

import pytest
from cluster_util import (LOGIN_ADDR, NOSHARE_NODES, SHARED_NODES, chunk_records, cluster, cluster_lock,
                          cluster_xrootd, fileset, login_hpckit, login_popen, node_processes, on, scratch_dir,
                          squeue_ids)
from launch_util import ANALYSIS, assert_same_output, hpckit, load, run_jobs
from taskvine_util import cctools_build

from hpckit.deploy import load_site, render_files
from hpckit.deploy.network import manager_address

SLOW = str(Path(__file__).parent / "slow_dimuon.py")

# one pytest-xdist worker runs them in turn: the node-breaking ones hold the cluster exclusively, and the other
# workers waiting on that lock sat idle (three full runs of the same tests: pytest 602, 842 and 598 s; the CPUs
# idle 458 s and 898 s of the first two)
pytestmark = pytest.mark.xdist_group("cluster")


# ---- no cluster needed ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["chtc", "perlmutter", "lpc", "cluster-local", "cluster-noshare"])
def test_render_never_names_loopback_for_a_real_site(name):
    """A TaskVine factory rendered for a real site dials the site's address, never 127.0.0.1 (workers on
    another node would dial themselves); the loopback-only site keeps 127.0.0.1."""
    text = render_files(load_site(name).site, "taskvine")["vine_factory.sh"]
    assert "127.0.0.1" not in text and "localhost" not in text, text.splitlines()[-1]
    assert manager_address(load_site(name).site) != "127.0.0.1"
    assert "127.0.0.1 9123" in render_files(load_site("slurm-local").site, "taskvine")["vine_factory.sh"]


def test_missing_interface_is_one_line(tmp_path):
    """Perlmutter's hsn0 off-site: one line naming the interfaces there are, not dask's traceback (with Slurm
    here: without sbatch the launch falls back to a local run, where no interface is used)."""
    from slurm_util import require_slurm

    require_slurm()
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({"d": {"files": {str(ANALYSIS.parent.parent / "data" / "nano_dy.root"): "Events"}}}))
    r = hpckit(["launch", str(ANALYSIS), "--site", "slurm-local", "--backend", "dask", "--fileset", str(fs),
                "--set", "network.interface=hsn0", "--run-dir", str(tmp_path / "run"), "--no-status"],
               cwd=tmp_path, timeout=120)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("hpckit: WARNING")]
    assert len(lines) == 1 and "hsn0 is not on this host" in lines[0] and "lo (127.0.0.1)" in lines[0], r.stderr


def test_site_heartbeat_reaches_both_engines():
    """``network.heartbeat_s``: Parsl's heartbeat_threshold (a quarter of it as the period) and Dask's worker_ttl;
    unset, neither is written (the engines' own defaults)."""
    site = load_site("cluster-local", ["network.heartbeat_s=10"]).site
    assert "heartbeat_threshold=10," in render_files(site, "parsl")["parsl_config.py"]
    assert "heartbeat_period=2," in render_files(site, "parsl")["parsl_config.py"]
    assert json.loads(render_files(site, "dask")["dask_cluster.json"])["kwargs"]["scheduler_options"]["worker_ttl"] == "10s"
    plain = load_site("cluster-local").site
    assert "heartbeat" not in render_files(plain, "parsl")["parsl_config.py"]
    assert "worker_ttl" not in render_files(plain, "dask")["dask_cluster.json"]


def test_no_shared_filesystem_is_a_doctor_failure_naming_the_pieces(tmp_path):
    """cluster-noshare (shared_filesystem: false, Slurm): the env tarball, batch logs and the engine's keys are
    copied onto the nodes (Dask, Parsl) and checkpoints are written by the client, so doctor names only what
    still needs a shared file system: local input paths, TaskVine (its factory's jobs are not staged); launch refuses those in one
    line before submitting. A node scratch the client cannot address (``$TMPDIR``) is one line naming the fix."""
    from hpckit.doctor import run_checks

    fs = fileset(tmp_path)
    chk = {c.name: c for c in run_checks("cluster-noshare", [], "parsl", fileset=str(fs))}["shared file system"]
    assert chk.result == "fail" and "input path /" in chk.detail, chk
    for gone in ("run directory", "CurveZMQ keys", "env tarball"):
        assert gone not in chk.detail, chk.detail
    remote = tmp_path / "remote.json"
    remote.write_text(json.dumps({"A": {"files": {"root://192.0.2.10:1094//data/a.root": "Events"}}}))
    ok = {c.name: c for c in run_checks("cluster-noshare", [], "parsl", fileset=str(remote))}["shared file system"]
    assert ok.result == "pass", ok
    vine = {c.name: c for c in run_checks("cluster-noshare", [], "taskvine", fileset=str(remote))}["shared file system"]
    assert vine.result == "fail" and "run directory" in vine.detail, vine  # its factory's jobs are not staged
    assert "shared file system" not in {c.name for c in run_checks("cluster-local", [], "dask")}
    r = hpckit(["launch", str(ANALYSIS), "--site", "cluster-noshare", "--set", "env_delivery.mode=none",
                "--fileset", str(fs), "--run-dir", str(tmp_path / "run"), "--no-status"], cwd=tmp_path, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert "no shared file system" in lines[0] and f"input path {DATASETS_FIRST(fs)}" in lines[0], lines[0]
    assert not run_jobs(tmp_path / "run")
    from hpckit.deploy.sharing import needs_shared_filesystem
    from hpckit.engines import ENGINES

    site = load_site("cluster-noshare").site
    assert needs_shared_filesystem(site, ENGINES["parsl"], remote, None, tmp_path / "ckpt") == []  # the client writes them
    pieces = needs_shared_filesystem(site, ENGINES["taskvine"], remote, None, tmp_path / "ckpt")
    assert f"checkpoint directory {tmp_path / 'ckpt'} (each worker writes its chunks' checkpoints there)" in pieces
    r = hpckit(["render", "--site", "cluster-noshare", "--backend", "parsl", "--out", str(tmp_path / "r"),
                "--set", "env_delivery.node_scratch=${TMPDIR:-/tmp}"], cwd=tmp_path, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "env_delivery.node_scratch" in r.stderr and "fix: --set env_delivery.node_scratch=/tmp" in r.stderr, r.stderr


def DATASETS_FIRST(fs: Path) -> str:  # noqa: N802 - the first input path of a fileset JSON
    doc = json.loads(fs.read_text())
    return next(iter(next(iter(doc.values()))["files"]))


def _san(cert_pem: bytes) -> list[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    return [str(v) for v in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            .get_values_for_type(x509.IPAddress)]


def test_run_certificate_is_valid_for_the_scheduler_address(tmp_path):
    """The run's certificate names the address workers dial: a TLS client that checks host names accepts it
    for that address and refuses it for another."""
    import socket
    import ssl
    import threading

    from hpckit.io.tls import write_tls_files

    files = write_tls_files(tmp_path / "tls", hosts=("127.0.0.1",))
    assert _san(files.cert.read_bytes()) == ["127.0.0.1"]
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.cert, files.key)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]

        def serve() -> None:
            for _ in range(2):
                conn, _ = srv.accept()
                try:
                    with server_ctx.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    pass

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        client_ctx = ssl.create_default_context(cafile=str(files.ca))  # check_hostname=True
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version()
        with socket.create_connection(("127.0.0.1", port)) as raw, pytest.raises(ssl.SSLCertVerificationError):
            client_ctx.wrap_socket(raw, server_hostname="192.0.2.99")
        t.join(timeout=10)


# ---- on the cluster --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def iterative_out(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("iterative")
    r = hpckit(["run", str(ANALYSIS), "--fileset", str(fileset(d)), "--executor", "iterative", "--chunksize", "5",
                "--no-status", "--no-plots", "--output", str(d / "ref.pkl")], cwd=d)
    assert r.returncode == 0, r.stderr
    return load(d / "ref.pkl")


@pytest.mark.timeout(120)
def test_nodes_are_separate_machines():
    """Real srun: each shared node has its own hostname, address and /tmp; no route leaves the cluster; the
    noshare nodes see neither the repository nor the shared scratch."""
    with cluster_lock(), scratch_dir() as d:
        token = d.name
        script = (f'touch /tmp/{token}-$(hostname); echo "$(hostname) $(ip -4 -o addr show cl0 | '
                  "awk '{print $4}') $(ls /tmp | grep -c " + token + ")\"")
        r = on("login", "srun", "-p", "shared", "-N3", "sh", "-c", script, timeout=60)
        assert r.returncode == 0, r.stderr
        rows = sorted(line.split() for line in r.stdout.splitlines())
        assert [row[0] for row in rows] == list(SHARED_NODES), rows
        assert len({row[1] for row in rows}) == 3 and all(row[1].startswith("192.0.2.") for row in rows), rows
        assert all(row[2] == "1" for row in rows), f"a node saw another node's /tmp: {rows}"
        assert not list(Path("/tmp").glob(f"{token}-*")), "a node's /tmp is the host's"
        # no route out: a connect to any other address fails at once, before a packet is sent
        probe = "import socket; print(socket.socket().connect_ex(('10.0.0.1', 80)))"
        assert on("node1", "python3", "-c", probe).stdout.strip() == "101"  # ENETUNREACH
        bare = on("login", "srun", "-p", "noshare", "-N1", "sh", "-c",
                  f"ls /work | wc -l; ls {d.parent} | wc -l; hostname", timeout=60)
        assert bare.returncode == 0 and bare.stdout.split()[:2] == ["0", "0"], bare.stdout + bare.stderr


MINE = f"/tmp/hpckit-{os.getuid()}"  # this user's own directory in each node's /tmp (templates/common/macros.j2: own_dir)


def _env_dirs(key: str) -> dict[str, tuple[int, float] | None]:
    """(inode, mtime) of each shared node's unpacked environment, None where there is none."""
    out = {}
    for n in SHARED_NODES:
        r = on(n, "stat", "-c", "%i %Y", f"{MINE}/envs/{key}")
        out[n] = tuple(r.stdout.split()) if r.returncode == 0 else None
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)  # packs the session's tarball when no other test did
def test_launch_from_login_spreads_over_nodes_and_unpacks_once_per_node(packed_env, iterative_out):
    """`hpckit launch --site cluster-local --env env.tar.gz` on the login node, Dask then Parsl: workers on
    node1-3 dial 192.0.2.10 (never loopback), chunks on all three nodes, output equal to the iterative run,
    the run directory holds the address that ran, no job left. The tarball is unpacked once per node into
    its own /tmp (3 nodes: 3 unpacks) by the first launch and reused untouched by the second."""
    with tarfile.open(packed_env, "r:gz") as tf:  # hpckit-env.json is the first member
        manifest = json.load(tf.extractfile(tf.next()))
    key = manifest.get("env_key", manifest["lock_hash"]).removeprefix("sha256:")[:16]  # the node's unpack dir
    with cluster_lock(), scratch_dir() as d:
        tarball = d / "env.tar.gz"
        shutil.copyfile(packed_env, tarball)
        for n in SHARED_NODES:  # cold: no unpacked copy on any node
            on(n, "rm", "-rf", f"{MINE}/envs/{key}")
        unpacked = None
        for backend in ("dask", "parsl"):
            run_dir = d / f"run-{backend}"
            r = login_hpckit(["launch", SLOW, "--site", "cluster-local", "--backend", backend, "--workers", "3",
                              "--wait-workers", "3",  # node3's worker may connect after the others have done it all
                              "--env", str(tarball), "--fileset", str(fileset(d)), "--chunksize", "5",
                              "--run-dir", str(run_dir), "--worker-timeout", "150", "--no-status", "--no-plots"],
                             timeout=360, HPCKIT_TEST_SLEEP="2")  # 16 chunks: time for each worker to take some
            assert r.returncode == 0, r.stderr
            assert_same_output(load(run_dir / "out.pkl"), iterative_out)
            nodes = {rec["worker"].split(":")[0] for rec in chunk_records(run_dir)}
            assert nodes == set(SHARED_NODES), f"{backend}: chunks ran on {nodes}"
            if backend == "dask":
                script = (run_dir / "job_script.sh").read_text()
                assert f"tls://{LOGIN_ADDR}:" in script and "insert-scheduler" not in script, script
                assert _san((run_dir / "tls" / "cert.pem").read_bytes()) == [LOGIN_ADDR]
            else:
                submitted = "".join(p.read_text() for p in run_dir.glob("runinfo/*/submit_scripts/parsl.*")
                                    if p.suffix not in (".stdout", ".stderr"))
                assert f"-a {LOGIN_ADDR} " in submitted and "127.0.0.1" not in submitted, submitted
            assert not set(run_jobs(run_dir)) & squeue_ids()
            dirs = _env_dirs(key)
            assert all(dirs.values()), f"not unpacked on every node: {dirs}"
            if unpacked is not None:
                assert dirs == unpacked, "the second launch unpacked again instead of reusing each node's copy"
            unpacked = dirs


@pytest.mark.xdist_group("image")  # the image tests count its containers (podman ps --filter ancestor=)
@pytest.mark.slow
@pytest.mark.timeout(900)  # builds the session's image when no other test did
def test_built_image_runs_on_each_node(built_image, iterative_out):
    """Image delivery across nodes: `hpckit launch --site cluster-local` with the session's built image
    (`hpckit build`, rootful podman, no registry: every node uses the host's image store): each job on node1-3
    runs its Dask worker with `podman run --network=host` in the node's namespace, dialling 192.0.2.10 over
    TLS; every worker reports the image's environment (/opt/hpckit/env, the client's lock), chunks land on all
    three nodes, output equal to the iterative run, no job left."""
    from conftest import DATASETS

    with cluster_lock(), scratch_dir() as d:
        run_dir = d / "run"
        # the inputs in the shared scratch, the one directory bound into the containers: the repository may be
        # a bind of its own inside the nodes' namespaces (a clone under /tmp), which runc refuses to bind again
        fs = d / "fileset.json"
        for f in DATASETS.values():
            shutil.copyfile(f, d / f.name)
        fs.write_text(json.dumps({ds: {"files": {str(d / f.name): "Events"}} for ds, f in DATASETS.items()}))
        r = login_hpckit(["launch", SLOW, "--site", "cluster-local", "--backend", "dask", "--workers", "3",
                          "--wait-workers", "3", "--set", "container.runtime=podman", "--set", f"container.image={built_image}",
                          "--set", "container.base=localhost/hpckit-debian:bookworm", "--set", "env_delivery.mode=image",
                          "--set", f"container.binds={json.dumps([str(d)])}", "--fileset", str(fs),
                          "--chunksize", "2", "--run-dir", str(run_dir), "--worker-timeout", "150", "--no-status",
                          "--no-plots"], timeout=360)  # 40 chunks of 0.3 s (the container's default sleep): some for each
        assert r.returncode == 0, r.stderr
        assert_same_output(load(run_dir / "out.pkl"), iterative_out)
        nodes = {rec["worker"].split(":")[0] for rec in chunk_records(run_dir)}
        assert nodes == set(SHARED_NODES), f"chunks ran on {nodes}"
        metrics = json.loads((run_dir / "out.metrics.json").read_text())
        envs = {w["worker"].split(":")[0]: w["environment"] for w in metrics["worker_environments"]}
        assert set(envs) == set(SHARED_NODES) and all(e["env_dir"] == "/opt/hpckit/env" for e in envs.values()), envs
        assert "podman run" in (run_dir / "job_script.sh").read_text()
        assert not set(run_jobs(run_dir)) & squeue_ids()


def _cctools_on_scratch(d: Path) -> dict[str, str]:
    """PATH and PYTHONPATH of a cctools build (vine_factory, vine_worker, ndcctools) copied into the shared
    scratch, which the login and shared nodes see (their /tmp is their own); skipped without a working build."""
    root, site_packages = cctools_build()
    dest = d / "cctools"
    shutil.copytree(root, dest, symlinks=True)
    site = site_packages.relative_to(root)
    repo = Path(__file__).resolve().parents[1]
    return {"PATH": os.pathsep.join([str(dest / "bin"), str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
            "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "examples"), str(repo / "tests"), str(dest / site)])}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_taskvine_launch_from_login_spreads_over_nodes(iterative_out):
    """TaskVine, where a cctools build exists: the factory on the login node submits three Slurm jobs whose
    vine_workers on node1-3 dial 192.0.2.10 (the factory's script names it, never loopback); chunks on all
    three nodes, output equal to the iterative run, no job left."""
    with cluster_lock(), scratch_dir() as d:
        paths = _cctools_on_scratch(d)
        run_dir = d / "run"
        r = login_hpckit(["launch", SLOW, "--site", "cluster-local", "--backend", "taskvine", "--workers", "3",
                          "--fileset", str(fileset(d)), "--chunksize", "5", "--run-dir", str(run_dir),
                          "--worker-timeout", "150", "--no-status", "--no-plots"],
                         timeout=360, HPCKIT_TEST_SLEEP="2", **paths)  # 16 chunks: time for each worker to take some
        assert r.returncode == 0, r.stderr
        assert_same_output(load(run_dir / "out.pkl"), iterative_out)
        nodes = {rec["worker"].split(":")[0] for rec in chunk_records(run_dir)}
        assert nodes == set(SHARED_NODES), f"chunks ran on {nodes}"
        factory = (run_dir / "vine_factory.sh").read_text()
        assert re.search(rf" {re.escape(LOGIN_ADDR)} \d+\n", factory) and "127.0.0.1" not in factory, factory
        assert f"--password {run_dir}/vine.password" in factory  # the manager took these workers: they had it
        assert not set(run_jobs(run_dir)) & squeue_ids()


@pytest.mark.slow
@pytest.mark.timeout(900)  # packs the session's tarball when no other test did
def test_noshare_launch_copies_env_and_keys_onto_each_node_and_reads_inputs_from_xrootd(packed_env, iterative_out):
    """cluster-noshare: node4-6 see no run directory, home, repository or shared scratch (the CHTC/OSG shape).
    `hpckit launch --env env.tar.gz`, Dask then Parsl, from the login node, inputs from an XRootD server on the
    login node's cluster address: each running job gets the tarball and the engine's credentials (Dask's TLS
    files, Parsl's keys) copied onto its node by sbcast and starts its worker once they are there. Output
    equal to the iterative run on the local files; one job on each of the three nodes, each node unpacked the
    environment into its own /tmp; the per-chunk records (which the workers cannot write into the run
    directory) come back with the results and name the three nodes, with what the workers logged and the
    failed attempts the engine retried; the checkpoints are written by the client;
    nothing staged is left on a node and no job in squeue."""
    from conftest import DATASETS

    with tarfile.open(packed_env, "r:gz") as tf:
        manifest = json.load(tf.extractfile(tf.next()))
    key = manifest.get("env_key", manifest["lock_hash"]).removeprefix("sha256:")[:16]
    logs_of = {"dask": "dask-worker", "parsl": "hpckit-parsl"}  # each engine's node-local batch logs
    with cluster_lock(), scratch_dir() as d:
        tarball = d / "env.tar.gz"
        shutil.copyfile(packed_env, tarball)
        with cluster_xrootd(d, list(DATASETS.values())) as urls:
            fs = d / "fileset.json"
            fs.write_text(json.dumps({ds: {"files": {urls[f.name]: "Events"}} for ds, f in DATASETS.items()}))
            for backend in ("dask", "parsl"):
                run_dir = d / f"run-{backend}"
                r = login_hpckit(["launch", SLOW, "--site", "cluster-noshare", "--backend", backend,
                                  "--workers", "3", "--wait-workers", "3", "--env", str(tarball), "--fileset", str(fs),
                                  "--chunksize", "5", "--run-dir", str(run_dir), "--worker-timeout", "150",
                                  "--checkpoint", str(d / f"ckpt-{backend}"), "--no-status", "--no-plots"],
                                 timeout=360, HPCKIT_TEST_SLEEP="1", HPCKIT_TEST_WARN="1",
                                 HPCKIT_TEST_FAIL_ONCE=f"{d.name}-{backend}")
                jobs = run_jobs(run_dir)
                names = {f"{logs_of[backend]}-{j}.{ext}" for j in jobs for ext in ("out", "err")}
                listed = {n: set(on(n, "ls", "/tmp").stdout.split()) for n in NOSHARE_NODES}
                for n in NOSHARE_NODES:  # the batch logs stay on the nodes: this test removes them
                    on(n, "rm", "-f", *[f"/tmp/{x}" for x in names & listed[n]],
                       *[f"/tmp/{x}" for x in listed[n] if x.startswith(f"hpckit-test-failed-{d.name}-")])
                assert r.returncode == 0, f"{backend}: {r.stderr[-3000:]}"
                assert "has no shared file system: each job's files are copied onto its node" in r.stderr, r.stderr
                assert_same_output(load(run_dir / "out.pkl"), iterative_out)
                assert jobs and not set(jobs) & squeue_ids()
                ran_on = {j: n for n in NOSHARE_NODES for j in jobs if f"{logs_of[backend]}-{j}.out" in listed[n]}
                assert set(ran_on) == set(jobs) and set(ran_on.values()) == set(NOSHARE_NODES), (backend, ran_on)
                # the workers could not write the run's chunks.jsonl: their records came back with the results
                records = chunk_records(run_dir)
                assert len(records) == 16 and {rec["job"] for rec in records} <= set(jobs), records
                assert {rec["worker"].split(":")[0] for rec in records} == set(NOSHARE_NODES), (backend, records)
                # chunk 5-10 of each file failed once on a node and the engine ran it again: those failed
                # attempts had no result to ride with, and came back with their worker's next one
                lines = [json.loads(x) for x in (run_dir / "chunks.jsonl").read_text().splitlines()]
                failures = [x for x in lines if x["kind"] == "failure"]
                assert {x["chunk"].split(" of ")[0] for x in failures} == {"chunk 5-10"}, failures
                assert len(failures) >= len(DATASETS), failures  # each file's, once per node it failed on
                assert all(x["worker"].split(":")[0] in NOSHARE_NODES and "on purpose" in x["error"]
                           for x in failures), failures
                # and what the workers logged (a warning a chunk, failed attempts' too) came back with them
                logs = [x for x in lines if x["kind"] == "log" and x["logger"] == "slow_dimuon"]
                assert len(logs) == 16 + len(failures), logs
                assert {x["worker"].split(":")[0] for x in logs} <= set(NOSHARE_NODES), logs
                report = (run_dir / "report.html").read_text()  # built from those records: one row per node's job
                assert all(f">{n}:" in report or f">{n}<" in report for n in NOSHARE_NODES), backend
                assert "WARNING  slow_dimuon: slow chunk 0-5 of " in report, backend
                assert "failing once on purpose" in report, backend
                # the nodes cannot see the checkpoint directory: the client wrote each chunk's checkpoint
                assert len(list((d / f"ckpt-{backend}").rglob("*.ckpt"))) == 16, backend
                for n in NOSHARE_NODES:
                    left = {f"stage-{j}" for j in jobs} & set(on(n, "ls", "-a", MINE).stdout.split())
                    assert not left, f"{backend}: staged files left on {n}: {left}"
                    assert on(n, "test", "-x", f"{MINE}/envs/{key}/run_in_env").returncode == 0, n
            script = (d / "run-dask" / "job_script.sh").read_text()  # what ran: TLS files from the staged copy
            assert '--tls-key "$hpckit_stage"/keys/key.pem' in script and str(d) not in script.split("\n", 1)[1], script
            assert script.rstrip().endswith("& wait $!"), script  # so that scancel's SIGTERM runs the cleanup at once


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["dask", "parsl"])
def test_noshare_job_that_fails_says_why_through_slurm(backend):
    """cluster-noshare keeps each job's logs on its node, where the client cannot read them: a job that fails
    sets its Slurm comment to its exit status, node and last stderr lines, and the launch's error and
    jobs.jsonl show it. Here the nodes have no environment (``env_delivery.mode=none``: the nodes' system
    Python has neither Dask nor Parsl)."""
    with cluster_lock(), scratch_dir() as d:
        fs = d / "fileset.json"  # never opened: no worker starts
        fs.write_text(json.dumps({"A": {"files": {f"root://{LOGIN_ADDR}:1094//nowhere.root": "Events"}}}))
        r = login_hpckit(["launch", str(ANALYSIS), "--site", "cluster-noshare", "--backend", backend,
                          "--set", "env_delivery.mode=none", "--workers", "1", "--fileset", str(fs),
                          "--run-dir", str(d / "run"), "--worker-timeout", "150", "--no-status"], timeout=240)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        assert "every worker job ended before a worker connected" in r.stderr, r.stderr
        said = [ln for ln in r.stderr.splitlines() if re.search(r"the job says: exit [1-9]\d* on node[4-6]: ", ln)]
        assert said and "No module named" in said[0], r.stderr
        assert "on the job's node (this site shares no file system)" in r.stderr, r.stderr
        states = [json.loads(ln) for ln in (d / "run" / "jobs.jsonl").read_text().splitlines()]
        assert any("No module named" in (s.get("note") or "") for s in states), states
        assert not set(run_jobs(d / "run")) & squeue_ids()


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _records(run_dir: Path) -> list[dict]:
    try:
        return chunk_records(run_dir)
    except (OSError, ValueError):
        return []


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["dask", "parsl"])
def test_node_killed_mid_run_loses_no_chunk(backend, iterative_out):
    """kill-node (every process on it, its slurmd too) after the node ran a chunk: the run finishes on the
    other nodes with every event counted once, and its later chunks land elsewhere. Parsl notices the lost
    pool only by its missing heartbeats: 120 s by default, 10 s with the site's ``network.heartbeat_s``
    (Parsl's heartbeat_threshold; Dask's worker_ttl)."""
    with cluster_lock(exclusive=True), scratch_dir() as d:
        run_dir = d / "run"
        proc = login_popen(["launch", SLOW, "--site", "cluster-local", "--backend", backend, "--workers", "3",
                            "--fileset", str(fileset(d)), "--chunksize", "5", "--run-dir", str(run_dir),
                            "--set", "network.heartbeat_s=10", "--worker-timeout", "120", "--no-status",
                            "--no-plots"], HPCKIT_TEST_SLEEP="1.5")
        victim = None
        try:
            _wait(lambda: len({r["worker"].split(":")[0] for r in _records(run_dir)}) >= 2, 150, "chunks on 2 nodes")
            victim = sorted({r["worker"].split(":")[0] for r in _records(run_dir)})[-1]
            assert cluster("kill-node", victim).returncode == 0
            killed_at = time.time()
            _, err = proc.communicate(timeout=200)
            assert proc.returncode == 0, err
            finished_after = time.time() - killed_at
        finally:
            if proc.poll() is None:
                proc.kill()
            if victim:
                cluster("heal-node", victim)  # restarts its slurmd
        assert_same_output(load(run_dir / "out.pkl"), iterative_out)
        metrics = json.loads((run_dir / "out.metrics.json").read_text())
        assert metrics["entries"] == 80 and metrics["chunks_processed"] == metrics["chunks"]
        # the lost node's chunk was not waited for until Parsl's default 120 s heartbeat threshold
        assert finished_after < 100, f"{backend}: the run ended {finished_after:.0f} s after the kill"
        late = [r for r in _records(run_dir) if r["t0"] > killed_at + 1]
        assert late and all(not r["worker"].startswith(victim + ":") for r in late), late
        _wait(lambda: not set(run_jobs(run_dir)) & squeue_ids(), 60, "the dead node's job to leave squeue")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_on_login_then_cancel_leaves_nothing_on_any_node():
    """A Parsl launch SIGKILLed on the login node (no teardown runs), then `hpckit cancel` there: no job in
    squeue, no worker pool on node1-3, no interchange on the login node."""
    with cluster_lock(), scratch_dir() as d:
        run_dir = d / "run"
        proc = login_popen(["launch", SLOW, "--site", "cluster-local", "--backend", "parsl", "--workers", "3",
                            "--fileset", str(fileset(d)), "--chunksize", "5", "--run-dir", str(run_dir),
                            "--worker-timeout", "120", "--no-status", "--no-plots"], HPCKIT_TEST_SLEEP="5")
        try:
            _wait(lambda: bool(_records(run_dir)), 150, "a first chunk")
            pid = json.loads((run_dir / "launch.json").read_text())["process"]["pid"]
            assert node_processes("login", "interchange", run_dir), "the run's interchange should be found by its dir"
            assert on("login", "kill", "-KILL", str(pid)).returncode == 0
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        jobs = run_jobs(run_dir)
        assert set(jobs) & squeue_ids(), "the jobs should outlive a SIGKILLed launch"
        assert any(node_processes(n, "process_worker_pool", run_dir) for n in SHARED_NODES)
        helpers = json.loads((run_dir / "launch.json").read_text()).get("helpers") or []
        assert helpers, "the launch should record its interchange for `hpckit cancel`"
        r = login_hpckit(["cancel", str(run_dir)], timeout=90)
        assert r.returncode == 0, r.stderr
        _wait(lambda: not set(jobs) & squeue_ids(), 30, "squeue without the run's jobs")
        # this run's processes only: a launch of another test on the shared lock may be running beside it
        _wait(lambda: not any(node_processes(n, "process_worker_pool", run_dir) for n in SHARED_NODES), 30,
              "no worker pool on any node")
        assert not node_processes("login", "interchange", run_dir), node_processes("login", "interchange", run_dir)
        assert not any(on("login", "test", "-e", f"/proc/{h['pid']}/cmdline").returncode == 0
                       and "interchange" in on("login", "cat", f"/proc/{h['pid']}/cmdline").stdout for h in helpers)


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("backend", ["dask", "parsl"])
def test_node_cut_mid_run_is_declared_lost_and_the_run_finishes(backend, iterative_out):
    """cut-node (link down, processes alive) after the node ran a chunk: the engine declares its worker lost
    within the heartbeat timeout (the site's network.heartbeat_s=10: Dask's worker_ttl, Parsl's
    heartbeat_threshold; a cut link sends no reset, so nothing else tells), its chunks run elsewhere, every
    event counted once, the run over well before Parsl's default 120 s threshold would let it end."""
    with cluster_lock(exclusive=True), scratch_dir() as d:
        run_dir = d / "run"
        proc = login_popen(["launch", SLOW, "--site", "cluster-local", "--backend", backend, "--workers", "3",
                            "--fileset", str(fileset(d)), "--chunksize", "5", "--run-dir", str(run_dir),
                            "--set", "network.heartbeat_s=10", "--worker-timeout", "120", "--no-status",
                            "--no-plots"], HPCKIT_TEST_SLEEP="2.5")
        victim = None
        try:
            _wait(lambda: len({r["worker"].split(":")[0] for r in _records(run_dir)}) >= 2, 150, "chunks on 2 nodes")
            victim = sorted({r["worker"].split(":")[0] for r in _records(run_dir)})[-1]
            assert cluster("cut-node", victim).returncode == 0
            cut_at = time.time()
            # the link stays down until the result is written (out.pkl, written before teardown): healed any
            # sooner on a loaded machine, the cut worker's old connection could deliver its results after
            # all. Healed then, so that Slurm can end its job at teardown without declaring the node down.
            _wait(lambda: (run_dir / "out.pkl").is_file() or proc.poll() is not None, 240, "the result")
            result_after = time.time() - cut_at
            cluster("heal-node", victim)
            _, err = proc.communicate(timeout=200)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
            if victim:
                cluster("heal-node", victim)
        assert_same_output(load(run_dir / "out.pkl"), iterative_out)
        metrics = json.loads((run_dir / "out.metrics.json").read_text())
        assert metrics["entries"] == 80 and metrics["chunks_processed"] == metrics["chunks"]
        # the cut worker may finish chunks it held (its records reach the shared scratch, its results never
        # reach the scheduler): each of those was done again on another node
        recs = _records(run_dir)
        key = lambda r: (r["file"], r["start"])  # noqa: E731
        stranded = {key(r) for r in recs if r["worker"].startswith(victim + ":") and r["t1"] > cut_at}
        elsewhere = {key(r) for r in recs if not r["worker"].startswith(victim + ":")}
        assert stranded <= elsewhere, stranded - elsewhere
        assert any(r["t0"] > cut_at and not r["worker"].startswith(victim + ":") for r in recs)
        assert result_after < 100, f"{backend}: the result came {result_after:.0f} s after the cut"
        _wait(lambda: not set(run_jobs(run_dir)) & squeue_ids(), 90, "the cut node's job to leave squeue")


_ADAPT_SCRIPT = """
import json, pickle, sys, threading, time
import hpckit

run_dir, fs, analysis, out = sys.argv[1:5]
c = hpckit.cluster("cluster-local", backend="dask", adapt=(1, 3), run_dir=run_dir, status=False, worker_timeout=150)
counts, stop = [], threading.Event()

def watch():
    while not stop.wait(0.5):
        counts.append(len(c.workers()))

try:
    before = len(c.workers())
    threading.Thread(target=watch, daemon=True).start()
    result = c.run(analysis, fs, chunksize=5)
    during = max(counts)
    t_end = time.monotonic()
    while len(c.workers()) > 1 and time.monotonic() - t_end < 120:
        time.sleep(1)
    stop.set()
    facts = {"before": before, "during": during, "after": len(c.workers()),
             "fell_back_in": round(time.monotonic() - t_end, 1), "jobs": c.job_ids()}
    with open(out, "wb") as fh:
        pickle.dump((result, facts), fh)
finally:
    c.close()
"""


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_adaptive_pool_grows_with_the_work_and_falls_back_after(iterative_out):
    """`hpckit.cluster("cluster-local", adapt=(1, 3))` on the login node: one worker while idle, three while a
    slow run's chunks wait (dask-jobqueue adapt submits the jobs), back to one after it; output unchanged and no
    job left after close."""
    with cluster_lock(), scratch_dir() as d:
        script, out = d / "adapt.py", d / "adapt.pkl"
        script.write_text(_ADAPT_SCRIPT)
        r = on("login", sys.executable, str(script), str(d / "pool"), str(fileset(d)), SLOW, str(out),
               timeout=400, HPCKIT_TEST_SLEEP="3")
        assert r.returncode == 0, r.stderr[-3000:]
        result, facts = load(out)
        assert facts["before"] == 1 and facts["during"] == 3 and facts["after"] == 1, facts
        assert len(facts["jobs"]) >= 3, facts
        assert_same_output(result, iterative_out)
        assert not set(facts["jobs"]) & squeue_ids(), "closing the pool left jobs in squeue"
