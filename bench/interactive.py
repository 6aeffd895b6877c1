"""Benchmark working interactively: runs on warm workers of ``hpckit.cluster`` against a full `hpckit launch`.

    python bench/interactive.py [--backend dask] [--repeat 3] [--workers 2] [--chunksize 10]

In one process: open ``hpckit.cluster("slurm-local", ...)`` (seconds until it is up), run the dimuon example
once on the fresh workers (cold: the workers import and open files for the first time), then ``--repeat``
times on the same, warm workers; each run's seconds to its first chunk result (the Runner's
``time_to_first_result``) and to the whole result. Baseline, in the same run: `hpckit launch` of the same
input as a fresh CLI process (queue, worker start-up, run, teardown) - what every iteration costs without a
standing pool. Target: a warm run's first result within 2 s. Needs the local Slurm.
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
sys.path.insert(0, str(REPO))


def _fileset(d: Path) -> Path:
    data = REPO / "data"
    fs = {"DYJetsToLL": {"files": {str(data / "nano_dy.root"): "Events"}},
          "DoubleMuon": {"files": {str(data / "nano_dimuon.root"): "Events"}}}
    p = d / "fileset.json"
    p.write_text(json.dumps(fs))
    return p


def _run(executor, fileset: Path, chunksize: int) -> tuple[float, float]:
    from hpckit import processor
    from hpckit.analysis import load_processor

    t0 = time.perf_counter()
    runner = processor.Runner(executor=executor, chunksize=chunksize, savemetrics=True)
    _, metrics = runner(str(fileset), treename="Events",
                        processor_instance=load_processor(REPO / "examples" / "dimuon.py"))
    return metrics["time_to_first_result"], time.perf_counter() - t0


def _launch(d: Path, fileset: Path, backend: str, workers: int, chunksize: int) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "hpckit", "launch", str(REPO / "examples" / "dimuon.py"), "--site",
                        "slurm-local", "--backend", backend, "--workers", str(workers), "--fileset", str(fileset),
                        "--chunksize", str(chunksize), "--run-dir", str(d / "launch"), "--no-status", "--no-plots"],
                       cwd=d, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"hpckit launch failed:\n{r.stderr}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="dask", choices=["dask", "parsl"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunksize", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    import hpckit

    d = Path(tempfile.mkdtemp(prefix="hpckit-bench-interactive-"))
    fileset = _fileset(d)
    launch_s = _launch(d, fileset, args.backend, args.workers, args.chunksize)
    t0 = time.perf_counter()
    with hpckit.cluster("slurm-local", backend=args.backend, workers=args.workers, run_dir=d / "pool",
                        status=False, say=lambda m: None) as executor:
        up_s = time.perf_counter() - t0
        cold = _run(executor, fileset, args.chunksize)
        warm = [_run(executor, fileset, args.chunksize) for _ in range(args.repeat)]
    result = {
        "backend": args.backend, "workers": args.workers, "chunksize": args.chunksize,
        "launch_total_s": round(launch_s, 2), "cluster_up_s": round(up_s, 2),
        "cold_first_result_s": round(cold[0], 2), "cold_total_s": round(cold[1], 2),
        "warm_first_result_s": [round(w[0], 2) for w in warm], "warm_total_s": [round(w[1], 2) for w in warm],
        "warm_first_result_median_s": round(statistics.median(w[0] for w in warm), 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"hpckit launch (fresh jobs each time):        {launch_s:6.2f} s to the result")
    print(f"hpckit.cluster up:                            {up_s:6.2f} s")
    print(f"first run on fresh workers:                   {cold[0]:6.2f} s to the first result, {cold[1]:.2f} s total")
    for i, (first, total) in enumerate(warm, 1):
        print(f"warm run {i}:                                   {first:6.2f} s to the first result, {total:.2f} s total")
    target = "met" if result["warm_first_result_median_s"] <= 2.0 else "NOT met"
    print(f"target (warm first result <= 2 s): {target}; load average {result['load_average']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
