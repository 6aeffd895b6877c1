"""Runner benchmark: events/s of hpckit's local executors against the plain uproot+awkward floor (and
coffea's Runner with the same processor when coffea is importable), and the fixed cost per chunk on
the 2,656-branch NanoAOD v15 file.

    python bench/runner.py                       # 2M events in 8 files of 250k, medians of 3
    python bench/runner.py --events-per-file 50000 --files 2 --repeat 1      # a quick look
    python bench/runner.py --coffea-python /path/to/venv/bin/python          # coffea from another env

Every figure is measured in a fresh interpreter, so start-up, imports and file opening are included
and nothing is cached between configurations except the OS page cache (warmed first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (DATA, MUON, REPO, Timer, dimuon_floor, make_input, median_of, peak_rss_mb, run_fresh,  # noqa: E402
                    timed_passes)

SCRIPT = Path(__file__).resolve()
WIDE = DATA / "nano_tt_v15.root"


def _fileset(paths: list[str]) -> dict:
    return {"bench": {"files": {p: "Events" for p in paths}}}


def _coffea_processor_module(workdir: Path) -> Path:
    src = (REPO / "examples" / "dimuon.py").read_text().replace("from hpckit import processor", "from coffea import processor")
    path = workdir / "dimuon_coffea.py"
    path.write_text(src)
    return path


def measure(args) -> dict:
    paths = args.paths
    if args.measure == "floor":
        import uproot

        from hpckit.processor.fileset import chunk_ranges

        import hist  # noqa: F401 - imports outside the timer, as for hpckit and coffea (first calls inside)
        import vector  # noqa: F401
        with Timer() as t:
            total, nbytes, muons = None, 0, 0
            for p in paths:
                with uproot.open(p) as f:
                    tree = f["Events"]
                    before = f.file.source.num_requested_bytes
                    for start, stop in chunk_ranges(tree.num_entries, args.chunksize):
                        values, n = dimuon_floor(tree.arrays(MUON, entry_start=start, entry_stop=stop))
                        total = values if total is None else total + values
                        muons += n
                    nbytes += f.file.source.num_requested_bytes - before
        return {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "bytes": nbytes, "muons": muons, "mass_entries": float(total.sum()), "peak_rss_mb": peak_rss_mb()}

    if args.measure in ("hpckit", "coffea"):
        if args.measure == "hpckit":
            sys.path.insert(0, str(REPO / "examples"))
            from dimuon import DimuonProcessor

            from hpckit import processor
            from hpckit.events import NanoAODSchema
        else:
            sys.path.insert(0, str(Path(args.workdir)))
            from dimuon_coffea import DimuonProcessor

            from coffea import processor
            from coffea.nanoevents import NanoAODSchema
        if args.executor == "iterative":
            ex = processor.IterativeExecutor(status=False) if args.measure == "hpckit" else processor.IterativeExecutor()
        else:
            ex = processor.FuturesExecutor(workers=args.workers, status=False) if args.measure == "hpckit" else processor.FuturesExecutor(workers=args.workers)
        if args.measure == "coffea":
            ex.status = False
        extra = {}
        if args.record:  # the per-chunk records of `hpckit run`/`launch` (chunks.jsonl), to measure their cost
            from hpckit.processor.records import ChunkRecorder

            extra["recorder"] = ChunkRecorder(Path(args.workdir) / "chunks.jsonl")
            extra["recorder"].reset()
        runner = processor.Runner(executor=ex, schema=NanoAODSchema, chunksize=args.chunksize, savemetrics=True,
                                  **extra)
        if args.warm:  # per-chunk rows: first-use costs (open file, describe branches, behaviours) untimed
            runner(_fileset(paths), processor_instance=DimuonProcessor())
        t = timed_passes(lambda: runner(_fileset(paths), processor_instance=DimuonProcessor()), args.passes)
        out, metrics = t.result
        cut = out["cutflow"]["bench"]
        return {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "bytes": int(metrics["bytesread"]), "muons": cut["muons"],
                "mass_entries": float(out["mass"].sum()), "peak_rss_mb": peak_rss_mb(),
                "columns": sorted(metrics["columns"])}

    if args.measure == "hpckit-xref":  # the cross-reference Muon.matched_jet.pt, per chunk
        import awkward as ak

        from hpckit import processor
        from hpckit.events import NanoAODSchema

        class MatchedJet(processor.ProcessorABC):
            def process(self, events):
                return {"pt": float(ak.sum(events.Muon.matched_jet.pt)), "n": len(events)}

            def postprocess(self, accumulator):
                return accumulator

        runner = processor.Runner(executor=processor.IterativeExecutor(status=False), schema=NanoAODSchema,
                                  chunksize=args.chunksize, savemetrics=True)
        if args.warm:
            runner(_fileset(paths), processor_instance=MatchedJet())
        t = timed_passes(lambda: runner(_fileset(paths), processor_instance=MatchedJet()), args.passes)
        out, metrics = t.result
        return {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "columns": sorted(metrics["columns"]), "peak_rss_mb": peak_rss_mb()}

    if args.measure in ("uproot-chunks", "uproot-branches", "uproot-branches-uncached"):  # uproot alone, tree open
        import uproot

        from hpckit.processor.fileset import chunk_ranges

        tree = uproot.open(WIDE)["Events"]
        columns = ["nMuon", *MUON]  # the six columns the dimuon processor reads

        def read():
            for start, stop in chunk_ranges(tree.num_entries, args.chunksize):
                if args.measure == "uproot-chunks":  # arrays() walks every branch of the tree on each call
                    tree.arrays(columns, entry_start=start, entry_stop=stop)
                elif args.measure == "uproot-branches":  # after the warm pass: uproot's array cache answers
                    for name in columns:
                        tree[name].array(entry_start=start, entry_stop=stop)
                else:  # the baskets read and unzipped again on every call
                    for name in columns:
                        tree[name].array(entry_start=start, entry_stop=stop, array_cache=None)

        if args.warm:
            read()
        t = timed_passes(read, args.passes)
        return {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "peak_rss_mb": peak_rss_mb()}
    raise SystemExit(f"unknown measurement {args.measure}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--events-per-file", type=int, default=250_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/hpckit-bench")
    ap.add_argument("--coffea-python", default=sys.executable, help="interpreter that has coffea (optional)")
    ap.add_argument("--skip-coffea", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--per-chunk-only", action="store_true", help="only the fixed cost per chunk on the wide file")
    ap.add_argument("--skip-per-chunk", action="store_true", help="only the events/s table")
    ap.add_argument("--passes-per-chunk", type=int, default=9,
                    help="per-chunk rows: timed passes in each fresh process, the median pass (the floor's pass is ~3 ms)")
    # internal: one measurement in this (fresh) process
    ap.add_argument("--measure")
    ap.add_argument("--executor", default="iterative")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunksize", type=int, default=100_000)
    ap.add_argument("--paths", nargs="*")
    ap.add_argument("--record", type=int, default=0)
    ap.add_argument("--warm", type=int, default=0, help="run the workload once untimed first")
    ap.add_argument("--passes", type=int, default=1, help="time the workload this many times; the median pass")
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return

    workdir = Path(args.workdir)
    t0 = time.perf_counter()
    paths = [str(p) for p in make_input(workdir, args.files, args.events_per_file)]
    print(f"input: {args.files} files x {args.events_per_file:,} events in {workdir} ({time.perf_counter() - t0:.1f} s to make/check)")
    n_events = args.files * args.events_per_file
    for p in paths:  # warm the page cache so the first configuration is not penalised
        Path(p).read_bytes()

    have_coffea = not args.skip_coffea and _has_coffea(args.coffea_python)
    if have_coffea:
        _coffea_processor_module(workdir)

    def one(kind, python=sys.executable, **kw):
        cli = ["--measure", kind, "--workdir", str(workdir), "--paths", *paths]
        for k, v in kw.items():
            cli += [f"--{k}", str(v)]
        return median_of(args.repeat, lambda: run_fresh(python, SCRIPT, cli))

    configs = [
        ("floor (uproot+awkward, 5 muon branches)", lambda: one("floor")),
        ("floor, chunksize 10k (same code, smaller chunks)", lambda: one("floor", chunksize=10_000)),
        ("hpckit Iterative, chunksize 100k", lambda: one("hpckit", executor="iterative", chunksize=100_000)),
        ("hpckit Iterative, chunksize 10k", lambda: one("hpckit", executor="iterative", chunksize=10_000)),
        ("hpckit Futures(2), chunksize 100k", lambda: one("hpckit", executor="futures", workers=2, chunksize=100_000)),
    ]
    if have_coffea:
        py = args.coffea_python
        configs += [
            ("coffea Iterative, chunksize 100k", lambda: one("coffea", py, executor="iterative", chunksize=100_000)),
            ("coffea Iterative, chunksize 10k", lambda: one("coffea", py, executor="iterative", chunksize=10_000)),
            ("coffea Futures(2), chunksize 100k", lambda: one("coffea", py, executor="futures", workers=2, chunksize=100_000)),
        ]
    results = {}
    if args.per_chunk_only:
        configs = []
    for name, fn in configs:
        results[name] = fn()
    floor = results.get("floor (uproot+awkward, 5 muon branches)")
    if floor:
        print(f"\n{'configuration':50s} {'M ev/s':>8s} {'x floor':>8s} {'cpu x':>8s} {'MB read':>8s} {'x bytes':>8s} {'peak MB':>8s}  runs (s)")
    for name, r in results.items() if floor else ():
        rate = n_events / r["seconds"] / 1e6
        ratio = floor["seconds"] / r["seconds"]
        # CPU time of the driver process only: comparable for the floor and Iterative, not for Futures
        cratio = floor.get("cpu_seconds", float("nan")) / r.get("cpu_seconds", float("nan"))
        bratio = r["bytes"] / floor["bytes"] if floor["bytes"] else float("nan")
        same = "" if r["muons"] == floor["muons"] and r["mass_entries"] == floor["mass_entries"] else "  RESULT DIFFERS"
        print(f"{name:50s} {rate:8.3f} {ratio:8.2f} {cratio:8.2f} {r['bytes'] / 1e6:8.1f} {bratio:8.3f} {r['peak_rss_mb']:8.0f}  {r['all_seconds']}{same}")

    if args.skip_per_chunk:
        if args.json:
            Path(args.json).write_text(json.dumps({"events": n_events, "results": results}, indent=2))
        return
    # fixed cost per chunk on the wide file: the same file as 1 chunk and as 20 chunks, each in a fresh process
    wide = [str(WIDE)]
    print(f"\nfixed cost per chunk on {WIDE.name} (2,656 branches, 200 events): (T[20 chunks] - T[1 chunk]) / 19,"
          f" each after one untimed pass (first-use costs of the file and the process left out), the median of"
          f" {args.passes_per_chunk} timed passes in each of {args.repeat} fresh processes")

    def per_chunk(kind, python=sys.executable):
        def t(cs):
            cli = ["--measure", kind, "--workdir", str(workdir), "--executor", "iterative", "--chunksize", str(cs),
                   "--warm", "1", "--passes", str(args.passes_per_chunk), "--paths", *wide]
            r = median_of(args.repeat, lambda: run_fresh(python, SCRIPT, cli))
            return r["seconds"], r.get("cpu_seconds", float("nan"))
        (t1, c1), (t20, c20) = t(200), t(10)
        return t1, t20, (t20 - t1) / 19, (c20 - c1) / 19

    # the floor: uproot's own array cache (100 MB per file, on by default) answers the timed pass, which
    # reads the same entry ranges as the warm one; "uncached" passes array_cache=None
    rows = [("uproot branch by branch", per_chunk("uproot-branches")),
            ("uproot branch by branch, uncached", per_chunk("uproot-branches-uncached")),
            ("uproot tree.arrays(columns)", per_chunk("uproot-chunks")), ("hpckit Iterative", per_chunk("hpckit")),
            ("hpckit, Muon.matched_jet.pt", per_chunk("hpckit-xref"))]
    if have_coffea:
        rows.append(("coffea Iterative", per_chunk("coffea", args.coffea_python)))
    base, cbase = rows[0][1][2], rows[0][1][3]
    print("  (wall: elapsed time; cpu: this process's CPU time, steadier when the machine is shared)")
    for name, (t1, t20, cost, cpu) in rows:
        ratio = cost / base if base > 0 else float("nan")
        cratio = cpu / cbase if cbase > 0 else float("nan")
        print(f"  {name:34s} 1 chunk {t1:7.3f} s   20 chunks {t20:7.3f} s   per chunk wall {cost * 1e3:8.2f} ms"
              f" ({ratio:5.1f}x branch by branch)   cpu {cpu * 1e3:8.2f} ms ({cratio:5.1f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"events": n_events, "results": results,
                                               "per_chunk": {n: r for n, r in rows}}, indent=2))


def _has_coffea(python: str) -> bool:
    import subprocess

    return subprocess.run([python, "-c", "import coffea"], capture_output=True).returncode == 0


if __name__ == "__main__":
    main()
