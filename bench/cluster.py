"""Benchmark `hpckit launch` across the 3-node cluster of scripts/cluster-local.sh against the single node.

    python bench/cluster.py [--repeat 1] [--chunksize 2] [--noshare] [--cctools PREFIX]

Cases (same fileset, the dimuon example, 3 workers): Dask and Parsl on `cluster-local` launched from the
login node (workers on node1-3, cluster network, TLS / CurveZMQ), and the same on `slurm-local` (one
node, loopback). With --noshare also on `cluster-noshare` (node4-6, no shared file system): an
`hpckit pack --fast` tarball copied into each job by sbcast, the same files read from an XRootD server on
the login node (tests/cluster_util.py: cluster_xrootd), records carried back with the results. Reported per case: seconds from the CLI call to the first connected worker and to the
first chunk result (from the run's launch.json and chunks.jsonl), to the result, and the per-chunk
overhead: (run walltime x workers - processing time) / chunks. Needs both Slurms up. With --cctools (a cctools
install prefix: vine_factory, vine_worker, the ndcctools package; TaskVine is not on PyPI) also TaskVine on
both sites, the build copied into the shared scratch so that the login and compute nodes see it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "scripts" / "cluster-local.sh"
DATA = {"DYJetsToLL": REPO / "data" / "nano_dy.root", "DoubleMuon": REPO / "data" / "nano_dimuon.root"}


def _env(cctools: Path | None = None) -> dict:
    e = dict(os.environ)
    first = [str(REPO), str(REPO / "examples")] + ([str(p) for p in cctools.glob("lib/python3*/site-packages")]
                                                  if cctools else [])
    e["PYTHONPATH"] = os.pathsep.join([*first, *[p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p]])
    e["PATH"] = os.pathsep.join([*([str(cctools / "bin")] if cctools else []), str(Path(sys.executable).parent),
                                 e.get("PATH", "")])
    return e


def one(site: str, backend: str, d: Path, chunksize: int, fileset: Path | None = None,
        env: Path | None = None, cctools: Path | None = None) -> dict:
    run_dir = d / f"{site}-{backend}-{time.time_ns()}"
    args = [sys.executable, "-m", "hpckit", "launch", str(REPO / "examples" / "dimuon.py"), "--site", site,
            "--backend", backend, "--workers", "3", "--fileset", str(fileset or d / "fileset.json"), "--chunksize",
            str(chunksize), "--run-dir", str(run_dir), "--no-status", "--no-plots", "--worker-timeout", "180"]
    if env is not None:
        args += ["--env", str(env)]
    if site.startswith("cluster"):
        args = ["bash", str(CLUSTER), "exec", "login", "--", *args]
    t0 = time.time()
    r = subprocess.run(args, env=_env(cctools), capture_output=True, text=True, timeout=600)
    total = time.time() - t0
    if r.returncode:
        raise SystemExit(f"{site}/{backend} failed:\n{r.stderr[-2000:]}")
    launch = json.loads((run_dir / "launch.json").read_text())
    m = json.loads((run_dir / "out.metrics.json").read_text())
    recs = [json.loads(x) for x in (run_dir / "chunks.jsonl").read_text().splitlines()]
    chunks = [x for x in recs if x.get("kind") == "chunk"]
    start = launch.get("started") or t0
    first_chunk = min(x["t1"] for x in chunks) - t0
    busy = sum(x["t1"] - x["t0"] for x in chunks)
    nodes = sorted({x["worker"].split(":")[0] for x in chunks})
    return {"site": site, "backend": backend, "first_worker_s": launch.get("seconds_to_first_worker"),
            "first_result_s": round(first_chunk, 2), "total_s": round(total, 2), "chunks": m["chunks"],
            "overhead_per_chunk_ms": round(1000 * (m["walltime"] * 3 - busy) / m["chunks"], 1),
            "nodes": nodes, "started": start}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--chunksize", type=int, default=2)
    ap.add_argument("--noshare", action="store_true", help="also cluster-noshare (packs a tarball, starts XRootD)")
    ap.add_argument("--cctools", type=Path, help="a cctools install prefix: also TaskVine")
    a = ap.parse_args()
    scratch = subprocess.run(["bash", str(CLUSTER), "scratch"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(dir=scratch) as d:
        os.chmod(d, 0o755)
        (Path(d) / "fileset.json").write_text(json.dumps({k: {"files": {str(v): "Events"}} for k, v in DATA.items()}))
        cctools = None
        if a.cctools:  # where the login and compute nodes see it (their /tmp is their own)
            cctools = Path(d) / "cctools"
            shutil.copytree(a.cctools, cctools, symlinks=True)
        for _ in range(a.repeat):
            for site in ("cluster-local", "slurm-local"):
                for backend in ("dask", "parsl", *(("taskvine",) if cctools else ())):
                    print(json.dumps(one(site, backend, Path(d), a.chunksize,
                                         cctools=cctools if backend == "taskvine" else None)), flush=True)
        if a.noshare:
            _noshare(Path(d), a)
    print("load average:", os.getloadavg())


def _noshare(d: Path, a: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from cluster_util import cluster_xrootd  # the tests' XRootD server on the login node

    tarball = d / "env.tar.gz"
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "hpckit", "pack", "--fast", "-o", str(tarball)], env=_env(), check=True,
                   capture_output=True, cwd=d)
    print(f"pack --fast: {time.time() - t0:.1f} s, {tarball.stat().st_size / 2**20:.1f} MiB", flush=True)
    with cluster_xrootd(d, list(DATA.values())) as urls:
        fs = d / "fileset-xrootd.json"
        fs.write_text(json.dumps({k: {"files": {urls[v.name]: "Events"}} for k, v in DATA.items()}))
        for _ in range(a.repeat):
            for backend in ("dask", "parsl"):
                print(json.dumps(one("cluster-noshare", backend, d, a.chunksize, fs, tarball)), flush=True)


if __name__ == "__main__":
    main()
