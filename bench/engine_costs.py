"""What an engine costs beyond the work: per-task overhead and merging, engines already up.

    python bench/engine_costs.py overhead --chunks 1000          # empty processor, chunks of 1 event
    python bench/engine_costs.py merge --chunks 20000            # 3-axis weighted hist (~10^4 bins) + cutflow
    python bench/engine_costs.py merge --chunks 2000 --only futures dask

Each engine runs in a fresh interpreter (so ``peak driver MB`` is that run's driver alone: the max RSS
of the process that called the Runner, engine start-up included) on 2 workers started before the clock
starts (Dask LocalCluster, Parsl HTEX, TaskVine ``vine_worker``s; TaskVine where ndcctools imports).
Chunks are handed to the Runner as work items (no preprocessing). Printed per engine: processing
wall, ms per chunk, ratio to FuturesExecutor(2) measured in the same run, time to first result, merge
tail (last chunk's result -> merged output), tail / wall, the most partial results the driver held at
once, and peak driver RSS.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENGINES = ["futures", "dask", "parsl", "taskvine"]  # "taskvine-tasks" on request (--only): a process per chunk


def items(n: int) -> list:
    import uproot

    from hpckit.processor.fileset import WorkItem

    files = [ROOT / "data" / "nano_dy.root", ROOT / "data" / "nano_dimuon.root"]
    out = []
    for k, path in enumerate(files):
        with uproot.open(path) as f:
            uuid, entries = str(f.file.uuid), f["Events"].num_entries
        share = n // len(files) + (k < n % len(files))
        out += [WorkItem(f"ds{k}", str(path), "Events", i % entries, i % entries + 1, uuid, {}) for i in range(share)]
    return out


def processor_for(kind: str):
    from hpckit import processor

    class Empty(processor.ProcessorABC):
        def process(self, events):
            return {"n": len(events)}

        def postprocess(self, accumulator):
            return accumulator

    class HistCutflow(processor.ProcessorABC):
        """~10^4 bins: 2 datasets x 50 x 100, weighted (two doubles a bin), and a small cutflow."""

        def process(self, events):
            import awkward as ak
            import hist
            import numpy as np

            ds = events.metadata["dataset"]
            pt = ak.to_numpy(ak.fill_none(ak.firsts(events.Muon.pt), 0.0)).astype(np.float64)
            h = (hist.Hist.new.StrCat(["ds0", "ds1"], name="dataset").Reg(50, 0, 100, name="pt")
                 .Reg(100, -5, 5, name="eta").Weight())
            h.fill(dataset=ds, pt=pt, eta=np.zeros_like(pt), weight=0.5 + pt / 100)
            return {"hist": h, "cutflow": {ds: {"events": len(events), "sumw": float((0.5 + pt / 100).sum())}}}

        def postprocess(self, accumulator):
            return accumulator

    return Empty() if kind == "overhead" else HistCutflow()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(engine: str, kind: str, n: int, workers: int) -> dict:
    """One engine in this (fresh) interpreter."""
    import resource

    from hpckit import processor

    work = items(n)
    proc = processor_for(kind)
    cleanup = []
    try:
        if engine == "futures":
            executor = processor.FuturesExecutor(workers=workers, status=False)
        elif engine == "dask":
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None)
            client = Client(cluster)
            cleanup += [client.close, cluster.close]
            client.run(lambda: __import__("hpckit.events"))
            executor = processor.DaskExecutor(client=client, status=False)
        elif engine == "parsl":
            import parsl
            from parsl.app.app import python_app
            from parsl.config import Config
            from parsl.executors import HighThroughputExecutor
            from parsl.providers import LocalProvider

            config = Config(executors=[HighThroughputExecutor(label="bench", address="127.0.0.1", max_workers_per_node=workers,
                                                              provider=LocalProvider(init_blocks=1, max_blocks=1))],
                            run_dir=tempfile.mkdtemp(prefix="hpckit-bench-parsl-"), strategy="none")
            dfk = parsl.load(config)
            cleanup.append(dfk.cleanup)
            warm = python_app(_import_hpckit, data_flow_kernel=dfk)
            [f.result() for f in [warm() for _ in range(4 * workers)]]
            executor = processor.ParslExecutor(config=config, status=False)
        elif engine.startswith("taskvine"):
            port = _free_port()
            tmp = tempfile.mkdtemp(prefix="hpckit-bench-vine-")
            env = dict(os.environ, CATALOG_HOST="127.0.0.1", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
            procs = [subprocess.Popen(["vine_worker", "-t", "60", "--cores", "1", "--workdir", f"{tmp}/w{i}", "127.0.0.1", str(port)],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True) for i in range(workers)]
            # the whole session: a worker's forked transfer server outlives the worker alone; SIGKILL, since a
            # SIGTERMed worker can wait on its library
            cleanup += [functools.partial(os.killpg, p.pid, signal.SIGKILL) for p in procs]
            mode = "tasks" if engine == "taskvine-tasks" else "serverless"
            executor = processor.TaskVineExecutor(port=port, status=False, filepath=tmp, mode=mode)
            # engine up: workers connected and (serverless) libraries started, by a short warm-up run
            processor.Runner(executor)(items(2 * workers), processor_instance=processor_for("overhead"))
        else:
            raise SystemExit(f"unknown engine {engine}")
        runner = processor.Runner(executor, savemetrics=True)
        t0 = time.perf_counter()
        out, metrics = runner(work, processor_instance=proc)
        wall = time.perf_counter() - t0
        stats = executor.stats
        check = out["n"] if kind == "overhead" else sum(v["events"] for v in out["cutflow"].values())
        assert check == n, (check, n)
        return {
            "engine": engine, "chunks": n, "wall": wall, "ms_per_chunk": 1000 * wall / n,
            "first": metrics["time_to_first_result"], "tail": stats.get("merge_tail_s"),
            "held_max": stats.get("held_max"), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        for fn in reversed(cleanup):
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass


def _import_hpckit():
    import hpckit.events  # noqa: F401


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["overhead", "merge"])
    ap.add_argument("--chunks", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = args.chunks or (1000 if args.kind == "overhead" else 20_000)
    if args.measure:
        print(json.dumps(measure(args.measure, args.kind, n, args.workers)))
        return
    engines = args.only or ENGINES
    try:
        import ndcctools.taskvine  # noqa: F401
    except ImportError:
        engines = [e for e in engines if not e.startswith("taskvine")]
        print("ndcctools not importable: TaskVine not measured")
    print(f"{args.kind}: {n:,} chunks, {args.workers} workers, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for engine in engines:
        proc = subprocess.run([sys.executable, __file__, args.kind, "--chunks", str(n), "--workers", str(args.workers),
                               "--measure", engine], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"  {engine}: failed\n{proc.stderr[-2000:]}", flush=True)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  {engine} done in {rows[-1]['wall']:.2f} s", flush=True)
    base = next((r["wall"] for r in rows if r["engine"] == "futures"), None)
    print(f"\n{'engine':15s} {'wall s':>8s} {'ms/chunk':>9s} {'x Futures':>10s} {'first s':>8s} {'tail s':>7s} "
          f"{'tail/wall':>9s} {'held max':>8s} {'peak MB':>8s}")
    for r in rows:
        ratio = f"{base / r['wall']:.2f}" if base else "-"
        tail = r["tail"] or 0.0
        print(f"{r['engine']:15s} {r['wall']:8.2f} {r['ms_per_chunk']:9.2f} {ratio:>10s} {r['first'] or 0:8.2f} "
              f"{tail:7.2f} {tail / r['wall']:9.1%} {r['held_max'] or 0:8d} {r['peak_mb']:8.0f}")
    print(f"(load average at the end {os.getloadavg()[0]:.2f}; x Futures > 1: faster than FuturesExecutor({args.workers}))")


if __name__ == "__main__":
    main()
