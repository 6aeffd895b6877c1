"""Distributed executors against hpckit's FuturesExecutor(2) on the same replicated input.

    python bench/executors.py                       # ~2M events: 8 files of 250k, chunksize 100k
    python bench/executors.py --files 2 --events-per-file 100000 --chunksize 50000   # small

The input replicates data/nano_dimuon.root + data/nano_dy.root (muon branches and event ids only) with
uproot into ``--files`` files of ``--events-per-file`` events (cached under ``--workdir``). Each executor
runs examples/dimuon.py end to end through the Runner (worker start-up included, as a user sees it);
Dask, Parsl and TaskVine are also timed on already running workers (the processing phase alone;
TaskVine's workers have run a warm-up, so their libraries are started). Printed: events/s, the
ratio to FuturesExecutor(2) measured in the same run, and the time from the call to the first finished
chunk. coffea's executors are added where coffea is importable (optional, never a dependency).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

MUON = ["pt", "eta", "phi", "mass", "charge"]
IDS = ["run", "luminosityBlock", "event"]


def build_input(workdir: Path, files: int, per_file: int) -> list[str]:
    import awkward as ak
    import numpy as np
    import uproot

    workdir.mkdir(parents=True, exist_ok=True)
    paths = [workdir / f"dimuon_{per_file}_{i}.root" for i in range(files)]
    if all(p.exists() for p in paths):
        return [str(p) for p in paths]
    parts = []
    for name in ("nano_dimuon.root", "nano_dy.root"):
        with uproot.open(ROOT / "data" / name) as f:
            parts.append(f["Events"].arrays([*(f"Muon_{m}" for m in MUON), *IDS]))
    seed = ak.concatenate(parts)
    reps = -(-per_file // len(seed))
    big = ak.concatenate([seed] * reps)[:per_file]
    muon = ak.zip({m: big[f"Muon_{m}"] for m in MUON})
    for i, path in enumerate(paths):
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp")
        with uproot.recreate(tmp) as out:
            # a TTree (mktree), as NanoAOD: flat Muon_* branches with the counter nMuon
            data = {
                "Muon": muon,
                "run": ak.to_numpy(big["run"]),
                "luminosityBlock": ak.to_numpy(big["luminosityBlock"]),
                "event": ak.to_numpy(big["event"]).astype(np.uint64) + np.uint64(i * per_file),
            }
            tree = out.mktree("Events", {k: v.type if k == "Muon" else v.dtype for k, v in data.items()})
            step = 50_000
            for lo in range(0, per_file, step):
                tree.extend({k: v[lo : lo + step] for k, v in data.items()})
        os.replace(tmp, path)
    return [str(p) for p in paths]


def _import_hpckit():
    import time

    import hpckit.events  # noqa: F401

    time.sleep(0.2)


def timed_run(executor, fileset, chunksize):
    from dimuon import DimuonProcessor

    from hpckit import processor

    t0 = time.perf_counter()
    out, metrics = processor.Runner(executor, chunksize=chunksize, savemetrics=True)(
        fileset, processor_instance=DimuonProcessor()
    )
    wall = time.perf_counter() - t0
    return wall, metrics.get("time_to_first_result"), out["mass"].sum()


def coffea_run(kind, fileset, chunksize, client=None):
    from coffea import processor as cp
    from coffea.nanoevents import NanoAODSchema

    src = (ROOT / "examples" / "dimuon.py").read_text().replace("from hpckit import processor", "from coffea import processor")
    ns: dict = {}
    exec(compile(src, "dimuon_coffea", "exec"), ns)
    if kind == "futures":
        executor = cp.FuturesExecutor(workers=2, status=False)
    else:
        executor = cp.DaskExecutor(client=client, status=False)
    t0 = time.perf_counter()
    out = cp.Runner(executor, schema=NanoAODSchema, chunksize=chunksize)(fileset, processor_instance=ns["DimuonProcessor"]())
    return time.perf_counter() - t0, None, out["mass"].sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--events-per-file", type=int, default=250_000)
    ap.add_argument("--chunksize", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="runs per executor; the median is printed")
    ap.add_argument("--workdir", default="/tmp/hpckit-bench-executors")
    ap.add_argument("--only", nargs="*", default=None,
                    help="futures dask dask-warm parsl parsl-warm taskvine-warm taskvine-tasks-warm coffea-futures coffea-dask")
    args = ap.parse_args()

    from hpckit import processor

    paths = build_input(Path(args.workdir), args.files, args.events_per_file)
    fileset = {"bench": {"files": {p: "Events" for p in paths}}}
    total = args.files * args.events_per_file
    n = args.workers
    print(f"input: {total:,} events in {args.files} files, chunksize {args.chunksize:,}, {n} workers, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    def dask_cold():
        return timed_run(processor.DaskExecutor(status=False, workers=n), fileset, args.chunksize)

    def dask_warm():
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0") as cl, Client(cl) as client:
            client.run(lambda: __import__("hpckit.events"))  # imports done, as on a long-lived cluster
            return timed_run(processor.DaskExecutor(client=client, status=False), fileset, args.chunksize)

    def parsl_run(warm=False):
        import tempfile

        import parsl

        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor
        from parsl.providers import LocalProvider

        config = Config(
            executors=[HighThroughputExecutor(label="bench", address="127.0.0.1", max_workers_per_node=n,
                                              provider=LocalProvider(init_blocks=1, max_blocks=1))],
            run_dir=tempfile.mkdtemp(prefix="hpckit-bench-parsl-"), strategy="none",
        )
        if not warm:
            return timed_run(processor.ParslExecutor(config=config, status=False), fileset, args.chunksize)
        dfk = parsl.load(config)
        try:
            from parsl.app.app import python_app

            warmup = python_app(_import_hpckit, data_flow_kernel=dfk)
            [f.result() for f in [warmup() for _ in range(4 * n)]]  # workers started, imports done
            return timed_run(processor.ParslExecutor(config=config, status=False), fileset, args.chunksize)
        finally:
            dfk.cleanup()

    def taskvine_run(mode="serverless"):
        import socket
        import subprocess
        import tempfile

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        tmp = tempfile.mkdtemp(prefix="hpckit-bench-vine-")
        env = dict(os.environ, CATALOG_HOST="127.0.0.1", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        procs = [subprocess.Popen(["vine_worker", "-t", "60", "--cores", "1", "--workdir", f"{tmp}/w{i}", "127.0.0.1",
                                   str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in range(n)]
        try:
            executor = processor.TaskVineExecutor(port=port, status=False, filepath=tmp, mode=mode)
            # workers connected and libraries started (warm), as on a long-lived pool of workers
            timed_run(executor, {"warm": {"files": {paths[0]: "Events"}}}, args.events_per_file // (2 * n))
            return timed_run(executor, fileset, args.chunksize)
        finally:
            for p in procs:
                p.terminate()

    def coffea_dask():
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0") as cl, Client(cl) as client:
            return coffea_run("dask", fileset, args.chunksize, client)

    cases = {
        "futures": lambda: timed_run(processor.FuturesExecutor(workers=n, status=False), fileset, args.chunksize),
        "dask": dask_cold,
        "dask-warm": dask_warm,
        "parsl": parsl_run,
        "parsl-warm": lambda: parsl_run(warm=True),
    }
    try:
        import ndcctools.taskvine  # noqa: F401

        cases["taskvine-warm"] = taskvine_run
        cases["taskvine-tasks-warm"] = lambda: taskvine_run("tasks")
    except ImportError:
        print("ndcctools not importable: TaskVine is not measured")
    try:
        import coffea  # noqa: F401

        cases["coffea-futures"] = lambda: coffea_run("futures", fileset, args.chunksize)
        cases["coffea-dask"] = coffea_dask
    except ImportError:
        print("coffea not importable: its executors are not measured")
    names = args.only or list(cases)
    results = {}
    for name in names:
        runs = [cases[name]() for _ in range(args.repeat)]
        wall = statistics.median(r[0] for r in runs)
        ttfr = [r[1] for r in runs if r[1] is not None]
        results[name] = (wall, statistics.median(ttfr) if ttfr else None, runs[0][2])
        print(f"  {name:15s} done in {wall:7.2f} s", flush=True)
    base = results.get("futures", (None,))[0]
    print(f"\n{'executor':15s} {'wall s':>8s} {'M events/s':>11s} {'vs Futures(' + str(n) + ')':>15s} {'first result s':>15s}  hist sum")
    for name, (wall, ttfr, hsum) in results.items():
        ratio = f"{base / wall:.2f}x" if base else "-"
        first = f"{ttfr:.2f}" if ttfr is not None else "-"
        print(f"{name:15s} {wall:8.2f} {total / wall / 1e6:11.3f} {ratio:>15s} {first:>15s}  {hsum:.0f}")
    print("(ratio > 1: faster than FuturesExecutor; 'dask' and 'parsl' include starting their workers, '-warm' do not)")


if __name__ == "__main__":
    main()
