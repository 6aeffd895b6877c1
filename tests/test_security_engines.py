"""Engines hpckit starts are authenticated: a client (or worker) without the run's certificate is refused.

Real parts: a Dask LocalCluster, a `dask worker` process, dask-jobqueue's job script writer.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("distributed")
from distributed import Client, LocalCluster  # noqa: E402

from hpckit import processor  # noqa: E402
from hpckit.io.tls import TLSFiles, write_tls_files  # noqa: E402


class Count(processor.ProcessorABC):
    def process(self, events):
        return {"n": len(events)}


_TRY_CLIENT = """
import sys
from distributed import Client
from distributed.security import Security
kw = {"security": Security.temporary()} if sys.argv[2] == "temporary" else {}
try:
    Client(sys.argv[1], timeout=5, **kw).close()
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def _refused(address: str, security: str = "none") -> str:
    """The refusal, from a client in another process (``security``: none or a temporary certificate): a
    client that fails to connect inside the test process can leave the shared event loop's state behind,
    and the run after it then waited for ever on results already in the scheduler's memory."""
    r = subprocess.run([sys.executable, "-c", _TRY_CLIENT, address, security], capture_output=True, text=True,
                       timeout=120)
    return r.stdout.strip()


def _listening(pids: set[int]) -> list:
    return [c.laddr for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in pids]


def test_dask_executor_own_cluster_refuses_clients_without_the_certificate(fileset_path):
    ex = processor.DaskExecutor(workers=1, status=False)
    client, cluster = ex._client()  # the cluster a run starts (kept until close)
    try:
        addr = cluster.scheduler_address
        assert addr.startswith("tls://127.0.0.1:")
        assert _refused(addr), "a client without credentials connected"
        assert _refused(addr.replace("tls://", "tcp://")), "a plain TCP client connected"
        assert _refused(addr, security="temporary"), "a client with another certificate connected"
        with Client(addr, security=cluster.security, timeout=30) as ok:  # with the run's credentials: works
            assert ok.submit(lambda: 41 + 1).result(timeout=60) == 42
            # this process (scheduler, nannies, dashboard) and its workers: not every child, since the
            # session's services (slurmd, xrootd) may have been started from this pytest worker
            pids = {os.getpid(), *ok.run(os.getpid).values()}
        addresses = _listening(pids)
        assert addresses and all(a.ip == "127.0.0.1" for a in addresses), addresses  # dashboard included
        out = processor.Runner(ex, chunksize=20)(str(fileset_path), processor_instance=Count())
        assert out == {"n": 80}
    finally:
        ex.close()


def test_tls_files_for_batch_workers(tmp_path):
    """The files a launch would put in its run dir: private, and a real `dask worker` needs them."""
    files = write_tls_files(tmp_path / "run" / "tls")
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    sec = files.security()
    with LocalCluster(n_workers=0, host="127.0.0.1", protocol="tls://", security=sec,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster, security=sec) as client:
        addr = cluster.scheduler_address
        assert _refused(addr)
        cmd = [sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1", "--no-nanny",
               "--host", "127.0.0.1", "--no-dashboard"]
        with_tls = subprocess.Popen(cmd + files.worker_args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        without = subprocess.Popen(cmd + ["--death-timeout", "20"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(1, timeout=120)
            time.sleep(3)  # give the worker without credentials its chance to register
            assert len(client.scheduler_info()["workers"]) == 1
            assert client.submit(lambda: 7).result(timeout=60) == 7
        finally:
            for p in (with_tls, without):
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def test_dask_jobqueue_job_script_carries_the_tls_arguments(tmp_path):
    """What `hpckit launch` passes to dask-jobqueue: security=TLSFiles.security(), protocol tls."""
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue.slurm import SLURMJob

    files = write_tls_files(tmp_path / "tls")
    script = SLURMJob("tls://127.0.0.1:1", name="x", cores=1, memory="1GB", security=files.security(),
                      protocol="tls://").job_script()
    for arg in files.worker_args():
        assert arg in script


def test_launch_dask_pool_is_tls_only_and_run_dir_private(tmp_path):
    """The Dask pool `hpckit launch` starts (here the `local` site's LocalCluster, started from the rendered
    dask_cluster.json exactly as a launch does) takes only clients holding the run's certificate, which
    lives in the 0700 run directory."""
    from hpckit.deploy import load_site
    from hpckit.launch.plan import Plan, size
    from hpckit.engines.dask import DaskPool
    from hpckit.io.paths import private_dir

    site = load_site("local", []).site
    run_dir = private_dir(tmp_path / "run")
    (run_dir / "logs").mkdir()
    plan = Plan(site, "dask", run_dir, size(site, 1, 1), 1)
    plan.render()
    pool = DaskPool(plan)
    try:
        pool.start()
        address = pool.client.scheduler.address
        assert address.startswith("tls://127.0.0.1:"), address
        assert _refused(address)  # no credentials: refused
        tls = run_dir / "tls"
        assert stat.S_IMODE(tls.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tls.iterdir())
        files = TLSFiles(directory=tls, ca=tls / "cert.pem", cert=tls / "cert.pem", key=tls / "key.pem")
        with Client(address, security=files.security(), timeout=20) as c:
            assert c.submit(sum, [1, 2]).result(timeout=60) == 3
    finally:
        pool.close()


def _worker_bind(text: str) -> str:
    """How the dask worker command in ``text`` chooses its listening address."""
    if "--interface" in text:
        return "interface"
    if '--host "$HPCKIT_WORKER_HOST"' in text or '--host ""$HPCKIT_WORKER_HOST""' in text:
        assert "export HPCKIT_WORKER_HOST=" in text
        return "host"
    return "every interface"


def test_dask_workers_never_listen_on_every_interface(tmp_path):
    """Every shipped site's dask worker command (the job script hpckit launch submits and the hand-submit
    worker_job.sh) binds the site's interface or, for sites that name none, the node's own outbound
    address; then a real `dask worker` started with that command's --host listens only there."""
    from hpckit.deploy import list_sites, load_site, render_files

    hosts = []
    for name in list_sites():
        site = load_site(name).site
        files = render_files(site, "dask")
        for fname in ("job_script.sh", "job_script.sub", "worker_job.sh"):
            if fname in files:
                how = _worker_bind(files[fname])
                assert how != "every interface", f"{name}/{fname}: the worker listens on 0.0.0.0"
                if how == "host" and fname == "worker_job.sh":
                    hosts.append(files[fname])
    assert hosts, "no shipped site without an interface: the --host path is untested"
    line = next(x for x in hosts[0].splitlines() if x.startswith("export HPCKIT_WORKER_HOST="))
    host = subprocess.run(["bash", "-c", f"{line}; printf %s \"$HPCKIT_WORKER_HOST\""], capture_output=True,
                          text=True, timeout=30).stdout
    assert host and host not in ("0.0.0.0", "::"), host
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster) as client:
        args = next(x for x in hosts[0].splitlines() if "--no-dashboard" in x).split()[:-1]  # the line, less its \\
        assert args == ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"], args
        proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                                 "--host", host, "--nthreads", "1", "--nanny", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(1, timeout=60)
            (address,) = client.scheduler_info()["workers"]
            assert address.startswith(f"tcp://{host}:"), address
            tree = {proc.pid} | {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
            bound = {a.ip for a in _listening(tree)}
            assert bound <= {host, "127.0.0.1"} and host in bound, bound
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_a_hand_submitted_dask_worker_job_speaks_tls_only(tmp_path):
    """`worker_job.sh` (hpckit render, submitted by hand) starts a Dask worker that only a holder of the run's
    certificate can talk to: run as written (bash, the site's own command lines) against a TLS scheduler with
    a launch's cert.pem/key.pem, the worker joins over tls://; without HPCKIT_DASK_TLS_DIR the job refuses to
    start, naming the variable (a plain-TCP worker accepts anyone's connection, and its `run` handler
    executes what it is sent)."""
    from hpckit.deploy import load_site, render_files

    tls = write_tls_files(tmp_path / "tls", hosts=("127.0.0.1",))
    script = tmp_path / "worker_job.sh"
    script.write_text(render_files(load_site("slurm-local").site, "dask")["worker_job.sh"])
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "HPCKIT_DASK_SCHEDULER": "tls://127.0.0.1:9"}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "export HPCKIT_DASK_TLS_DIR=" in r.stderr, r
    with LocalCluster(n_workers=0, host="127.0.0.1", protocol="tls://", security=tls.security(),
                      dashboard_address=None) as cluster, Client(cluster, security=tls.security()) as client:
        env.update(HPCKIT_DASK_SCHEDULER=cluster.scheduler_address, HPCKIT_DASK_TLS_DIR=str(tls.directory))
        proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            client.wait_for_workers(1, timeout=90)
            (address,) = client.scheduler_info()["workers"]
            assert address.startswith("tls://127.0.0.1:"), address
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
