"""Multi-core scaling: FuturesExecutor and DaskExecutor with 1, 2, 4, 8, 16 workers against the
one-process floor and coffea on the same machine (the issue's 16-core check).

    python bench/scaling.py --files 16 --events-per-file 250000 --workers 1 2 4 8 16 --json scaling.json

Each configuration runs in a fresh interpreter. "end-to-end" includes starting the workers (pool or
LocalCluster); "processing" times only the Runner call on a Dask cluster that is already up (imports
done on the workers), which is what a long-lived site cluster sees.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MUON, REPO, Timer, dimuon_floor, make_input, run_fresh  # noqa: E402

SCRIPT = Path(__file__).resolve()


def _processor(kind: str):
    if kind == "hpckit":
        sys.path.insert(0, str(REPO / "examples"))
        from dimuon import DimuonProcessor

        from hpckit import processor

        return processor, DimuonProcessor, None
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    src = (REPO / "examples" / "dimuon.py").read_text().replace("from hpckit import processor", "from coffea import processor")
    ns: dict = {}
    exec(compile(src, "dimuon_coffea", "exec"), ns)
    return processor, ns["DimuonProcessor"], NanoAODSchema


def measure(args) -> dict:
    fileset = {"bench": {"files": {p: "Events" for p in args.paths}}}
    if args.measure == "floor":
        import hist  # noqa: F401
        import uproot
        import vector  # noqa: F401

        from hpckit.processor.fileset import chunk_ranges

        with Timer() as t:
            for p in args.paths:
                with uproot.open(p) as f:
                    tree = f["Events"]
                    for s, e in chunk_ranges(tree.num_entries, args.chunksize):
                        dimuon_floor(tree.arrays(MUON, entry_start=s, entry_stop=e))
        return {"seconds": t.seconds}

    kind, mode = args.measure.split("-", 1)  # hpckit|coffea - iterative|futures|dask|daskwarm
    processor, Proc, schema = _processor(kind)
    kw = {} if schema is None else {"schema": schema}
    n = args.n
    cluster = client = None
    if mode == "daskwarm":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0")
        client = Client(cluster)
        client.run(lambda: __import__("hpckit.events" if kind == "hpckit" else "coffea.nanoevents"))
    t0 = time.perf_counter()
    if mode == "iterative":
        ex = processor.IterativeExecutor(status=False)
    elif mode == "futures":
        ex = processor.FuturesExecutor(workers=n, status=False)
    elif mode == "dask" and kind == "hpckit":
        ex = processor.DaskExecutor(workers=n, status=False)
    else:
        if client is None:
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0")
            client = Client(cluster)
        ex = processor.DaskExecutor(client=client, status=False)
    out = processor.Runner(ex, chunksize=args.chunksize, **kw)(fileset, processor_instance=Proc())
    seconds = time.perf_counter() - t0
    if client is not None:
        client.close()
        cluster.close()
    return {"seconds": seconds, "mass_entries": float(out["mass"].sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--events-per-file", type=int, default=250_000)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    ap.add_argument("--chunksize", type=int, default=100_000)
    ap.add_argument("--workdir", default="/tmp/hpckit-bench-scaling")
    ap.add_argument("--skip-coffea", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--measure")
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--paths", nargs="*")
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return

    t0 = time.perf_counter()
    paths = [str(p) for p in make_input(Path(args.workdir), args.files, args.events_per_file)]
    total = args.files * args.events_per_file
    print(f"input: {total:,} events in {args.files} files ({time.perf_counter() - t0:.0f} s), {os.cpu_count()} cores", flush=True)
    for p in paths:
        Path(p).read_bytes()
    try:
        import coffea  # noqa: F401

        have_coffea = not args.skip_coffea
    except ImportError:
        have_coffea = False

    results: dict[str, float] = {}

    def run(name, measure_name, n=1):
        cli = ["--measure", measure_name, "--n", str(n), "--chunksize", str(args.chunksize), "--paths", *paths]
        try:
            r = run_fresh(sys.executable, SCRIPT, cli)
            results[name] = r["seconds"]
            print(f"  {name:40s} {r['seconds']:7.2f} s  {total / r['seconds'] / 1e6:6.2f} M ev/s", flush=True)
        except RuntimeError as err:
            print(f"  {name:40s} FAILED: {str(err)[-300:]}", flush=True)

    run("floor (1 process)", "floor")
    run("hpckit Iterative", "hpckit-iterative")
    if have_coffea:
        run("coffea Iterative", "coffea-iterative")
    for n in args.workers:
        run(f"hpckit Futures({n})", "hpckit-futures", n)
        run(f"hpckit Dask({n}) end-to-end", "hpckit-dask", n)
        run(f"hpckit Dask({n}) processing", "hpckit-daskwarm", n)
        if have_coffea:
            run(f"coffea Futures({n})", "coffea-futures", n)
    if have_coffea:
        top = max(args.workers)
        run(f"coffea Dask({top}) end-to-end", "coffea-dask", top)
        run(f"coffea Dask({top}) processing", "coffea-daskwarm", top)

    floor = results.get("floor (1 process)")
    print("\n| configuration | s | M events/s | x floor |\n|---|---|---|---|")
    for name, s in results.items():
        print(f"| {name} | {s:.2f} | {total / s / 1e6:.2f} | {floor / s:.2f} |" if floor else f"| {name} | {s:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"events": total, "cores": os.cpu_count(), "seconds": results}, indent=2))


if __name__ == "__main__":
    main()
