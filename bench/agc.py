"""AGC-style ttbar benchmark: events/s of hpckit's Runner against coffea's on the same processor
(bench/agc_processor.py: leptons, jets, b-tags, HT, trijet mass, PackedSelection, Weights with variations),
on nano_tt_v15.root's Jet/Muon/Electron collections (all their branches) replicated into bigger files.

    python bench/agc.py                                              # 4 files x 100k events, medians of 3
    python bench/agc.py --files 1 --events-per-file 20000 --repeat 1 # a quick look
    python bench/agc.py --coffea-python /tmp/events/coffea-venv/bin/python

Each figure is measured in a fresh interpreter (imports, file opening and schema building included);
the outputs of the two kits must agree (cutflow and histogram), or the line says RESULT DIFFERS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, REPO, Timer, median_of, peak_rss_mb, run_fresh, write_replicas  # noqa: E402

SCRIPT = Path(__file__).resolve()
COLLECTIONS = ("Jet", "Muon", "Electron")


def make_tt_input(workdir: Path, n_files: int, events_per_file: int) -> list[Path]:
    """nano_tt_v15.root's event ids, genWeight and whole Jet/Muon/Electron collections, replicated (cached)."""
    import uproot

    workdir.mkdir(parents=True, exist_ok=True)
    paths = [workdir / f"tt_{i}_{events_per_file}.root" for i in range(n_files)]
    if all(p.exists() for p in paths):
        return paths
    with uproot.open(DATA / "nano_tt_v15.root") as f:
        tree = f["Events"]
        picked: dict[str, list[str]] = {"": ["run", "luminosityBlock", "event", "genWeight"]}
        for coll in COLLECTIONS:
            picked[coll] = sorted(k for k in tree.keys() if k.startswith(coll + "_")
                                  and type(tree[k].interpretation).__name__ == "AsJagged")
        arrays = tree.arrays([b for group in picked.values() for b in group])
    write_replicas(paths, arrays, picked, events_per_file, basket=min(25_000, events_per_file))
    return paths


def measure(args) -> dict:
    sys.path.insert(0, str(SCRIPT.parent))
    from agc_processor import make_processor

    if args.measure == "hpckit":
        from hpckit import processor
        from hpckit.events import NanoAODSchema

        make = {"iterative": lambda: processor.IterativeExecutor(status=False),
                "futures": lambda: processor.FuturesExecutor(workers=args.workers, status=False)}
    else:
        from coffea import processor
        from coffea.nanoevents import NanoAODSchema

        make = {"iterative": processor.IterativeExecutor,
                "futures": lambda: processor.FuturesExecutor(workers=args.workers)}
    executor = make[args.executor]()
    executor.status = False
    runner = processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=args.chunksize, savemetrics=True)
    fileset = {"tt": {"files": {p: "Events" for p in args.paths}}}
    with Timer() as t:
        out, metrics = runner(fileset, processor_instance=make_processor(args.measure))
    h = out["hist"]
    return {"seconds": t.seconds, "cutflow": out["cutflow"]["tt"], "peak_rss_mb": peak_rss_mb(),
            "hist": [round(float(x), 3) for x in h.values(flow=True).ravel()],
            "variations": sorted(h.axes[2]), "columns": len(metrics.get("columns", []))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--events-per-file", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/hpckit-bench")
    ap.add_argument("--coffea-python", default=sys.executable, help="interpreter that has coffea (optional)")
    ap.add_argument("--skip-coffea", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--measure")
    ap.add_argument("--executor", default="iterative")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunksize", type=int, default=100_000)
    ap.add_argument("--paths", nargs="*")
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return

    paths = [str(p) for p in make_tt_input(Path(args.workdir), args.files, args.events_per_file)]
    n_events = args.files * args.events_per_file
    print(f"input: {args.files} files x {args.events_per_file:,} events (nano_tt_v15 Jet/Muon/Electron, "
          f"{sum(Path(p).stat().st_size for p in paths) / 1e6:.0f} MB)")
    for p in paths:
        Path(p).read_bytes()  # warm the page cache
    coffea = not args.skip_coffea and subprocess.run([args.coffea_python, "-c", "import coffea"],
                                                     capture_output=True).returncode == 0
    env = {"PYTHONPATH": str(REPO)}

    def one(kind, python=sys.executable, **kw):
        cli = ["--measure", kind, "--paths", *paths]
        for k, v in kw.items():
            cli += [f"--{k}", str(v)]
        return median_of(args.repeat, lambda: run_fresh(python, SCRIPT, cli, env=env))

    configs = [(f"hpckit Iterative, chunksize {args.chunksize:,}", lambda: one("hpckit", chunksize=args.chunksize)),
               ("hpckit Futures(2)", lambda: one("hpckit", executor="futures", chunksize=args.chunksize))]
    if coffea:
        configs += [(f"coffea Iterative, chunksize {args.chunksize:,}", lambda: one("coffea", args.coffea_python, chunksize=args.chunksize)),
                    ("coffea Futures(2)", lambda: one("coffea", args.coffea_python, executor="futures", chunksize=args.chunksize))]
    results = {name: fn() for name, fn in configs}
    ref = next(iter(results.values()))
    print(f"\n{'configuration':40s} {'k ev/s':>8s} {'peak MB':>8s}  runs (s)")
    for name, r in results.items():
        same = "" if (r["cutflow"], r["hist"]) == (ref["cutflow"], ref["hist"]) else "  RESULT DIFFERS"
        print(f"{name:40s} {n_events / r['seconds'] / 1e3:8.1f} {r['peak_rss_mb']:8.0f}  {r['all_seconds']}{same}")
    print(f"cutflow {ref['cutflow']}; variations {ref['variations']}")
    if coffea:
        for ex in ("Iterative", "Futures(2)"):
            h = [r for n, r in results.items() if n.startswith(f"hpckit {ex}")][0]
            c = [r for n, r in results.items() if n.startswith(f"coffea {ex}")][0]
            print(f"hpckit / coffea, {ex}: {c['seconds'] / h['seconds']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"events": n_events, "results": results}, indent=2))


if __name__ == "__main__":
    main()
