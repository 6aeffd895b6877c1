"""Scale benchmark: many small files, many chunks. How planning, running and merging grow.

    python bench/scale.py                                   # 1k / 10k / 50k files, 10k / 100k chunks
    python bench/scale.py --files 1000 10000 --chunks       # a subset: no chunk cases
    python bench/scale.py --files --chunks 10000 --executors futures dask

Files are made once under --workdir (default ~/.cache/hpckit-bench/scale): small NanoAOD-style files
(an ``Events`` TTree with event, nMuon, Muon_pt; 20 events each), each a copy of one template with its
own ROOT uuid. Every file's TTree is read once per run where its chunk runs, at about 0.7 ms of CPU per
branch (uproot deserializing each branch's description): with many branches per small file that read,
not hpckit, sets the floor. The chunk cases use 200 files of 10,000 events (event, genWeight, nMuon,
Muon_pt, Muon_eta, Muon_phi) cut into the wanted number of chunks.

Each figure comes from a fresh interpreter with its own empty metadata cache (XDG_CACHE_HOME in a
temporary directory), FuturesExecutor(2) unless said otherwise, no progress bar:

* files N: plan time cold (nothing cached) and cached (the same files again, a new process), then a
  whole first run (cold cache) of a counting processor: run time, its planning part, CPU seconds of the
  driver and its workers (what a loaded machine's wall time hides), driver peak RSS; then the same first
  run with one corrupt file (a truncated copy) in the middle and ``skipbadfiles=True``: its cost against
  the clean run and the file skipped, by name;
* chunks M: a whole run of a 3-axis weighted histogram (dataset x pt x eta) per executor: run time;
  the results' cost (the run against the same run whose process() fills the histogram and returns
  none: what shipping and merging the results adds to the wall time, wherever the merge runs); the
  merge fraction (driver merge time, overlapped with the chunks, or for Dask the time from the last
  chunk to the merged result, over the run time); the most partial results the driver held, driver
  peak RSS. ``parsl`` is a local HighThroughputExecutor; ``futures-pool`` is FuturesExecutor(merging=True): groups merged in the pool; a ``-single``
  suffix (``futures-single``, ``dask-single``, ``parsl-single``) sends every chunk as its own task (``group_chunks=False``),
  where by default tiny chunks go a merge group a task.

``--plan-executors taskvine`` (or dask) first plans each files case cold on that engine's
workers (taskvine: local ``vine_worker``s, cctools on PATH) and in the driver alone, side by side.

Cost per file / per chunk is printed so the growth is visible: flat per-unit cost = linear.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EVENTS_PER_SMALL_FILE = 20
SMALL_FILE_MUON = ("pt",)  # small files: event, nMuon, Muon_pt (a TTree's read costs ~0.7 ms a branch)
CHUNK_FILES, CHUNK_FILE_EVENTS = 200, 10_000


def _template(path: Path, n: int, seed: int = 1, collection: tuple[str, ...] = ("pt", "eta", "phi")) -> None:
    import awkward as ak
    import numpy as np
    import uproot

    rng = np.random.default_rng(seed)
    counts = rng.poisson(2, n)
    total = int(counts.sum())

    def jagged(values):
        return ak.unflatten(values.astype(np.float32), counts)

    fields = {"pt": lambda: rng.exponential(30, total), "eta": lambda: rng.uniform(-2.4, 2.4, total),
              "phi": lambda: rng.uniform(-3.14, 3.14, total)}
    data = {"event": np.arange(n, dtype=np.uint64)}
    if len(collection) > 1:
        data["genWeight"] = rng.normal(1, 0.1, n).astype(np.float32)
    data["Muon"] = ak.zip({name: jagged(fields[name]()) for name in collection})
    with uproot.recreate(path) as f:
        f.mktree("Events", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()},
                 field_name=lambda outer, inner: f"{outer}_{inner}", counter_name=lambda c: f"n{c}")
        f["Events"].extend(data)


def make_files(workdir: Path, n: int, events: int, collection: tuple[str, ...] = ("pt", "eta", "phi")) -> list[str]:
    """``n`` copies of a template of ``events`` events, each with its own uuid (made once, reused)."""
    import uproot

    d = workdir / f"ev{events}-{'-'.join(collection)}"
    d.mkdir(parents=True, exist_ok=True)
    template = d / "template.root"
    if not template.exists():
        _template(template.with_suffix(".part"), events, collection=collection)
        os.replace(template.with_suffix(".part"), template)
    raw = template.read_bytes()
    with uproot.open(template) as f:
        at = raw.index(f.file.uuid.bytes)
    paths = []
    for i in range(n):
        p = d / f"nano_{i:06d}.root"
        if not p.exists():
            data = bytearray(raw)
            data[at : at + 16] = uuid.uuid4().bytes
            tmp = p.with_suffix(".part")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        paths.append(str(p))
    return paths


CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
args = json.loads(sys.argv[1])
t_import = time.perf_counter()
import numpy as np
import awkward as ak
import hist
from hpckit import processor
from hpckit.events import NanoAODSchema

class Count(processor.ProcessorABC):
    def process(self, events):
        return {"events": len(events), "muons": int(ak.sum(events.nMuon))}
    def postprocess(self, acc):
        return acc

class Hist3(processor.ProcessorABC):
    def __init__(self, fill_only=False):
        self.fill_only = fill_only
    def process(self, events):
        ds = events.metadata["dataset"]
        pt = ak.to_numpy(ak.flatten(events.Muon.pt)).astype(np.float64)
        eta = ak.to_numpy(ak.flatten(events.Muon.eta)).astype(np.float64)
        h = (hist.Hist.new.StrCat([], name="dataset", growth=True).Reg(20, 0, 100, name="pt")
             .Reg(10, -2.5, 2.5, name="eta").Weight())
        h.fill(dataset=ds, pt=pt, eta=eta, weight=0.5 + np.abs(np.sin(pt)))
        if self.fill_only:  # the same work, nothing to ship or merge: the baseline of the merge cost
            return {"events": len(events)}
        return {"hist": h, "events": len(events)}
    def postprocess(self, acc):
        return acc

files = json.load(open(args["files"]))
fileset = {"scale": {"files": {f: "Events" for f in files}}}
ex_name = args["executor"]
single = ex_name.endswith("-single")  # every chunk its own task (group_chunks=False), for comparison
ex_name = ex_name.removesuffix("-single")
grouping = {"group_chunks": False} if single else {}
if ex_name in ("futures", "futures-pool"):  # futures-pool: merging=True, groups merged in the pool
    ex = processor.FuturesExecutor(workers=args["workers"], status=False, merging=ex_name == "futures-pool", **grouping)
elif ex_name == "dask":
    ex = processor.DaskExecutor(workers=args["workers"], status=False, **grouping)
elif ex_name == "parsl":  # a local HighThroughputExecutor (interchange + one worker pool of `workers`)
    import atexit, shutil, tempfile
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider
    config = Config(executors=[HighThroughputExecutor(label="scale", address="127.0.0.1",
                                                      max_workers_per_node=args["workers"],
                                                      provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))],
                    run_dir=tempfile.mkdtemp(prefix="hpckit-scale-parsl-"), strategy="none")
    atexit.register(shutil.rmtree, config.run_dir, True)  # registered before Parsl's own exit hook: runs after it
    ex = processor.ParslExecutor(config=config, status=False, **grouping)
elif ex_name == "taskvine":  # local vine_workers (cctools on PATH, ndcctools importable), ended with this process
    import os, socket, subprocess, tempfile
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scratch = tempfile.mkdtemp(prefix="hpckit-scale-vine-")
    import atexit, shutil
    atexit.register(shutil.rmtree, scratch, True)  # after the workers' kill below (atexit runs last-in first)
    os.environ["CATALOG_HOST"] = "127.0.0.1"  # never the public catalog server
    vine_workers = [subprocess.Popen(["vine_worker", "-t", "60", "--cores", "1", "--workdir", f"{scratch}/w{i}",
                                      "127.0.0.1", str(port)], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                    for i in range(args["workers"])]
    import signal
    # each worker's whole session: its forked transfer server outlives the worker alone
    atexit.register(lambda: [os.killpg(w.pid, signal.SIGKILL) for w in vine_workers])
    ex = processor.TaskVineExecutor(port=port, status=False, filepath=scratch)
else:
    ex = processor.IterativeExecutor(status=False)
runner = processor.Runner(ex, schema=NanoAODSchema, chunksize=args["chunksize"], savemetrics=True,
                          skipbadfiles=args.get("skipbadfiles", False))
t0 = time.perf_counter()
out = {}
if args["mode"] == "plan":
    out["chunks"] = sum(1 for _ in runner.preprocess(fileset))
    out["seconds"] = time.perf_counter() - t0
    out["from_cache"] = getattr(runner, "_planned", {}).get("from_cache", 0)
else:
    proc = Count() if args["mode"] == "count" else Hist3(fill_only=args["mode"] == "hist-fill-only")
    result, m = runner(fileset, processor_instance=proc)
    out["seconds"] = time.perf_counter() - t0
    out["plan_s"] = m["preprocesstime"]
    out["chunks"] = m["chunks"]
    out["from_cache"] = m.get("files_metadata_from_cache", 0)
    stats = getattr(ex, "stats", {}) or {}
    merge = stats.get("merge_s", stats.get("merge_tail_s", 0.0))
    out["merge_s"] = merge
    out["held_max"] = stats.get("held_max")
    out["in_flight_max"] = stats.get("in_flight_max")
    out["grouped"] = stats.get("grouped_chunks", 0)
    out["events"] = int(result["events"])
    out["skipped"] = [s["file"] for s in m.get("skipped", [])]
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# CPU seconds of this process and its (ended) workers: on a loaded machine, what the run would cost idle
out["cpu_s"] = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))
print("RESULT " + json.dumps(out))
"""


HPCKIT = REPO  # the checkout whose hpckit is measured (--hpckit: e.g. an export of main, for a baseline)


def child(mode: str, files_json: Path, cache: Path, executor: str = "futures", workers: int = 2,
          chunksize: int = 100_000, skipbadfiles: bool = False) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONPATH=os.pathsep.join(
        [str(HPCKIT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]))
    args = {"mode": mode, "files": str(files_json), "executor": executor, "workers": workers, "chunksize": chunksize,
            "skipbadfiles": skipbadfiles}
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, env=env,
                       cwd=cache.parent)  # not the checkout: `-c` puts the working directory first on sys.path
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode or not lines:
        raise SystemExit(f"{mode} failed:\n{r.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def files_case(workdir: Path, n: int, workers: int, plan_executors: list[str] = ()) -> None:
    files = make_files(workdir, n, EVENTS_PER_SMALL_FILE, SMALL_FILE_MUON)
    listing = workdir / f"files-{n}.json"
    listing.write_text(json.dumps(files))
    for ex in plan_executors:  # cold plans on other engines' workers, each against the driver alone
        with tempfile.TemporaryDirectory(prefix="hpckit-scale-") as tmp:
            alone = child("plan", listing, Path(tmp) / "a", executor="iterative")
            there = child("plan", listing, Path(tmp) / "b", executor=ex, workers=workers)
        print(f"files {n:>6,}: plan cold on {ex}({workers}) {there['seconds']:7.2f} s, in the driver alone "
              f"{alone['seconds']:7.2f} s  [{load()}]", flush=True)
    with tempfile.TemporaryDirectory(prefix="hpckit-scale-") as tmp:
        cold = child("plan", listing, Path(tmp) / "a", workers=workers)
        cached = child("plan", listing, Path(tmp) / "a", workers=workers)
        run = child("count", listing, Path(tmp) / "b", workers=workers)
        # one corrupt file (the template cut short) in the middle, skipped by name: costs what one file costs
        bad = workdir / "bad-truncated.root"
        bad.write_bytes(Path(files[0]).read_bytes()[:2000])
        with_bad = workdir / f"files-{n}-bad.json"
        with_bad.write_text(json.dumps(files[: n // 2] + [str(bad)] + files[n // 2 :]))
        bad_run = child("count", with_bad, Path(tmp) / "c", workers=workers, skipbadfiles=True)
    per = lambda s: f"{s / n * 1e3:6.2f} ms/file"  # noqa: E731
    print(f"files {n:>6,}: plan cold {cold['seconds']:7.2f} s ({per(cold['seconds'])})  cached {cached['seconds']:6.2f} s "
          f"({cached['from_cache']:,} from cache, cpu {cached.get('cpu_s', 0):.2f} s)  first run {run['seconds']:7.2f} s "
          f"({per(run['seconds'])}, planning {run['plan_s']:.2f} s, cpu {run.get('cpu_s', 0):.1f} s)  "
          f"driver peak {run['peak_rss_mb']:.0f} MB  [{load()}]", flush=True)
    print(f"files {n:>6,} + 1 corrupt: first run {bad_run['seconds']:7.2f} s (planning {bad_run['plan_s']:.2f} s, "
          f"{bad_run['seconds'] - run['seconds']:+.2f} s against the clean run), skipped {bad_run['skipped']}, "
          f"{bad_run['events']:,} events  [{load()}]", flush=True)


def chunks_case(workdir: Path, m: int, executors: list[str], workers: int) -> None:
    files = make_files(workdir, CHUNK_FILES, CHUNK_FILE_EVENTS)
    listing = workdir / "files-chunks.json"
    listing.write_text(json.dumps(files))
    chunksize = max(1, CHUNK_FILES * CHUNK_FILE_EVENTS // m)
    for ex in executors:
        with tempfile.TemporaryDirectory(prefix="hpckit-scale-") as tmp:
            r = child("hist", listing, Path(tmp), executor=ex, workers=workers, chunksize=chunksize)
        with tempfile.TemporaryDirectory(prefix="hpckit-scale-") as tmp:
            base = child("hist-fill-only", listing, Path(tmp), executor=ex, workers=workers, chunksize=chunksize)
        frac = r["merge_s"] / r["seconds"] if r["seconds"] else 0.0
        # what shipping and merging the histograms costs the run: the same run returning no histogram
        cost = (r["seconds"] - base["seconds"]) / r["seconds"] if r["seconds"] else 0.0
        print(f"chunks {r['chunks']:>7,} ({ex}({workers}), chunksize {chunksize}): run {r['seconds']:7.1f} s "
              f"({r['seconds'] / r['chunks'] * 1e3:5.2f} ms/chunk)  without results {base['seconds']:7.1f} s: "
              f"results cost {cost:5.1%}  merge {frac:5.1%}  held max {r['held_max']}  "
              f"in flight max {r.get('in_flight_max')}  grouped {r.get('grouped', 0):,}  "
              f"cpu {r.get('cpu_s', 0):.0f} s  driver peak {r['peak_rss_mb']:.0f} MB  [{load()}]", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, nargs="*", default=[1000, 10_000, 50_000], help="file counts (none: skip)")
    ap.add_argument("--chunks", type=int, nargs="*", default=[10_000, 100_000], help="chunk counts (none: skip)")
    ap.add_argument("--executors", nargs="+", default=["futures", "dask"], help="for the chunk cases")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plan-executors", nargs="*", default=[],
                    help="files cases: also plan cold on these engines' workers (dask, taskvine)")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                    / "hpckit-bench" / "scale")
    ap.add_argument("--hpckit", type=Path, default=REPO, help="checkout to import hpckit from (default: this one)")
    args = ap.parse_args()
    global HPCKIT
    HPCKIT = args.hpckit.resolve()
    print(f"hpckit from {HPCKIT}")
    print(f"bench/scale.py on {os.cpu_count()} cores, {load()}", flush=True)
    t = time.perf_counter()
    for n in args.files:
        files_case(args.workdir, n, args.workers, args.plan_executors)
    for m in args.chunks:
        chunks_case(args.workdir, m, args.executors, args.workers)
    print(f"total {time.perf_counter() - t:.0f} s  [{load()}]")


if __name__ == "__main__":
    main()
