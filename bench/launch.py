"""Benchmark `hpckit launch` on the local single-node Slurm against `hpckit run` on the same input, same run.

    python bench/launch.py [--repeat 2] [--workers 2] [--chunksize 10]
    python bench/launch.py --delivery [--repeat 3] [--env env.tar.gz]   # how the environment reaches workers

With ``--delivery`` the cases are Dask workers on the local Slurm running the host venv (slurm-local), the
image of the lock (slurm-podman; built first with `hpckit build --site slurm-podman`), and the packed
tarball (slurm-tarball; packed first unless --env is given) cold (a fresh node-local scratch each time:
the first job on the node unpacks) and warm (the unpacked copy reused). Reported: seconds from the CLI
call to the first connected worker and to the first chunk result. Target: image and warm tarball within
3 s of the host venv; cold unpack under 10 s.

For each of: `hpckit run` (futures, local), `launch --site slurm-local --backend dask`, `... --backend parsl`,
it runs the CLI in a fresh process (imports included, as a user types it) and reports seconds from the call
to the first connected worker (from the run's launch.json) and to the result (process wall time). Prints
the batch overhead over the local run. Target: under 10 s on this machine. Needs the local Slurm
(`bash scripts/slurm-local.sh start`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return e


def _fileset(d: Path) -> Path:
    data = REPO / "data"
    fs = {"DYJetsToLL": {"files": {str(data / "nano_dy.root"): "Events"}},
          "DoubleMuon": {"files": {str(data / "nano_dimuon.root"): "Events"}}}
    p = d / "fileset.json"
    p.write_text(json.dumps(fs))
    return p


def _one(args: list[str], d: Path) -> tuple[float, float | None]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "hpckit", *args], cwd=d, env=_env(), capture_output=True, text=True)
    total = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: hpckit {' '.join(args)}\n{r.stderr}")
    first = None
    launch_json = d / "run" / "launch.json"
    if launch_json.exists():
        rec = json.loads(launch_json.read_text())
        # launch.json times are from the launch() call; add the CLI start-up (imports) measured here
        if rec.get("seconds_to_first_worker") is not None:
            first = total - rec["seconds_to_result"] + rec["seconds_to_first_worker"]
    return total, first


def _first_result(d: Path, total: float) -> float | None:
    """Seconds from the CLI call to the first chunk result: the Runner's own time to first result, placed
    on the CLI's clock by its wall time (the writing of results after the run is left out)."""
    metrics = d / "run" / "out.metrics.json"
    if not metrics.exists():
        return None
    m = json.loads(metrics.read_text())
    if m.get("time_to_first_result") is None:
        return None
    return total - m["walltime"] + m["time_to_first_result"]


def delivery(a: argparse.Namespace) -> None:
    analysis = str(REPO / "examples" / "dimuon.py")
    work = Path(tempfile.mkdtemp(prefix="hpckit-bench-delivery-", dir="/tmp"))
    env_file = Path(a.env).resolve() if a.env else work / "env.tar.gz"
    import shutil

    data = {}
    for ds, name in (("DYJetsToLL", "nano_dy.root"), ("DoubleMuon", "nano_dimuon.root")):
        shutil.copy(REPO / "data" / name, work / name)  # under /tmp: bound into the containers
        data[ds] = {"files": {str(work / name): "Events"}}
    fileset = work / "fileset.json"
    fileset.write_text(json.dumps(data))
    if not env_file.exists():
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "hpckit", "pack", "-o", str(env_file)], cwd=work, env=_env(),
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(r.stdout + r.stderr)
        print(f"packed {env_file} in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "hpckit", "build", "--site", "slurm-podman"], cwd=work, env=_env(),
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stdout + r.stderr)
    print(f"built the image in {time.perf_counter() - t0:.1f} s: {r.stdout.strip()}")
    common = ["--chunksize", str(a.chunksize), "--no-status", "--no-plots", "--workers", str(a.workers),
              "--backend", "dask", "--worker-timeout", "300"]
    warm = work / "node-warm"

    def case(site: str, *extra: str):
        return lambda d, fs: ["launch", analysis, "--site", site, "--fileset", str(fs), "--run-dir", str(d / "run"),
                              *common, *extra]

    cases = {
        "host venv (slurm-local)": case("slurm-local"),
        "podman image (slurm-podman)": case("slurm-podman"),
        "tarball cold (slurm-tarball)": None,  # a fresh node scratch each time
        "tarball warm (slurm-tarball)": case("slurm-tarball", "--env", str(env_file),
                                             "--set", f"env_delivery.node_scratch={warm}"),
    }
    # the warm case's node scratch holds the unpacked copy before it is measured
    with tempfile.TemporaryDirectory(prefix="warmup-", dir=work) as tmp:
        d = Path(tmp)
        _one(cases["tarball warm (slurm-tarball)"](d, fileset), d)
    results: dict[str, list[tuple[float, float | None, float | None]]] = {k: [] for k in cases}
    for i in range(a.repeat):
        for name, make in cases.items():
            if make is None:
                make = case("slurm-tarball", "--env", str(env_file), "--set",
                            f"env_delivery.node_scratch={work / f'node-cold-{i}'}")
            with tempfile.TemporaryDirectory(prefix="run-", dir=work) as tmp:
                d = Path(tmp)
                total, first = _one(make(d, fileset), d)
                results[name].append((total, first, _first_result(d, total)))
    base = statistics.median(f for _, _, f in results["host venv (slurm-local)"])
    print(f"{'case':30s} {'first worker [s]':>17s} {'first result [s]':>17s} {'over host venv [s]':>19s} {'end [s]':>8s}")
    for name, rows in results.items():
        first = statistics.median(w for _, w, _ in rows)
        res = statistics.median(f for _, _, f in rows)
        total = statistics.median(t for t, _, _ in rows)
        print(f"{name:30s} {first:17.2f} {res:17.2f} {res - base:19.2f} {total:8.2f}")
    print(f"(median of {a.repeat}; {a.workers} Dask workers on the local Slurm; chunksize {a.chunksize}; "
          f"tarball {env_file.stat().st_size / 2**20:.0f} MiB; CLI start-up included)")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunksize", type=int, default=10)
    ap.add_argument("--delivery", action="store_true", help="compare host venv, image and tarball workers")
    ap.add_argument("--env", help="with --delivery: an existing hpckit pack tarball (default: pack one)")
    a = ap.parse_args()
    if a.delivery:
        return delivery(a)
    analysis = str(REPO / "examples" / "dimuon.py")
    common = ["--chunksize", str(a.chunksize), "--no-status", "--no-plots"]
    cases = {
        "hpckit run (futures)": lambda d, fs: ["run", analysis, "--fileset", str(fs), "--executor", "futures",
                                               "--workers", str(a.workers), "--output", str(d / "out.pkl"), *common],
        "launch slurm-local dask": lambda d, fs: ["launch", analysis, "--site", "slurm-local", "--backend", "dask",
                                                  "--workers", str(a.workers), "--fileset", str(fs),
                                                  "--run-dir", str(d / "run"), *common],
        "launch slurm-local parsl": lambda d, fs: ["launch", analysis, "--site", "slurm-local", "--backend", "parsl",
                                                   "--workers", str(a.workers), "--fileset", str(fs),
                                                   "--run-dir", str(d / "run"), *common],
    }
    results: dict[str, list[tuple[float, float | None]]] = {k: [] for k in cases}
    for _ in range(a.repeat):
        for name, make in cases.items():
            with tempfile.TemporaryDirectory(prefix="hpckit-bench-") as tmp:
                d = Path(tmp)
                results[name].append(_one(make(d, _fileset(d)), d))
    base = statistics.median(t for t, _ in results["hpckit run (futures)"])
    print(f"{'case':28s} {'first worker [s]':>17s} {'result [s]':>11s} {'over local run [s]':>19s}")
    for name, rows in results.items():
        total = statistics.median(t for t, _ in rows)
        firsts = [f for _, f in rows if f is not None]
        first = f"{statistics.median(firsts):17.2f}" if firsts else f"{'-':>17s}"
        print(f"{name:28s} {first} {total:11.2f} {total - base:19.2f}")
    print(f"(median of {a.repeat}; {a.workers} workers; chunksize {a.chunksize}; CLI start-up included)")


if __name__ == "__main__":
    main()
