"""Benchmark `hpckit launch` on the local single-node Slurm against `hpckit run` on the same input, same run.

    python bench/launch.py [--repeat 2] [--workers 2] [--chunksize 10]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunksize", type=int, default=10)
    a = ap.parse_args()
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
