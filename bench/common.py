"""Shared pieces of the benchmarks: the replicated input, the dimuon floor, timing in fresh processes."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
MUON = ["Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"]
N_BRANCHES = 114


def _pick_branches(tree_a, tree_b) -> dict[str, list[str]]:
    """About 114 branches common to both sample files: event ids and whole Muon/Electron/Jet collections."""
    common = set(tree_a.keys()) & set(tree_b.keys())
    picked = {"": ["run", "luminosityBlock", "event"]}
    total = 3
    for coll in ("Muon", "Electron", "Jet"):
        fields = sorted(k for k in common if k.startswith(coll + "_") and tree_a[k].interpretation.__class__.__name__ == "AsJagged")
        fields = [f for f in fields if f in MUON] + [f for f in fields if f not in MUON]
        take = fields[: max(0, N_BRANCHES - total - 1)]
        if not take:
            break
        picked[coll] = take
        total += len(take) + 1  # + the nX counter
    return picked


def make_input(workdir: Path, n_files: int, events_per_file: int, basket: int = 25_000) -> list[Path]:
    """Replicate the two sample files into ``n_files`` files of ``events_per_file`` events (cached)."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths = [workdir / f"replica_{i}_{events_per_file}.root" for i in range(n_files)]
    if all(p.exists() for p in paths):
        return paths
    with uproot.open(DATA / "nano_dimuon.root") as fa, uproot.open(DATA / "nano_dy.root") as fb:
        ta, tb = fa["Events"], fb["Events"]
        picked = _pick_branches(ta, tb)
        names = [b for group in picked.values() for b in group]
        arrays = ak.concatenate([ta.arrays(names), tb.arrays(names)])
    write_replicas(paths, arrays, picked, events_per_file, basket)
    return paths


def write_replicas(paths: list[Path], arrays: ak.Array, picked: dict[str, list[str]], events_per_file: int,
                   basket: int = 25_000) -> None:
    """Write ``arrays`` (flat branches ``picked[""]``, collections ``picked[name]``) repeated into each path,
    NanoAOD-named (``Muon_pt`` counted by ``nMuon``), in baskets of ``basket`` events."""
    reps = -(-basket // len(arrays))
    block = ak.concatenate([arrays] * reps)[:basket]
    for path in paths:
        tmp = path.with_suffix(".part")
        with uproot.recreate(tmp) as out:
            for start in range(0, events_per_file, basket):
                n = min(basket, events_per_file - start)
                chunk = block[:n]
                data = {b: ak.to_numpy(chunk[b]) for b in picked[""]}
                for coll, fields in picked.items():
                    if coll:
                        data[coll] = ak.zip({f[len(coll) + 1 :]: chunk[f] for f in fields})
                if start == 0:
                    out.mktree("Events", {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in data.items()},
                               field_name=lambda outer, inner: f"{outer}_{inner}",
                               counter_name=lambda counted: f"n{counted}")
                out["Events"].extend(data)
        os.replace(tmp, path)


def dimuon_floor(muons: ak.Array) -> tuple[np.ndarray, int]:
    """The dimuon example's computation on plain arrays of the five muon branches."""
    import hist
    import vector

    vector.register_awkward()
    mu = ak.zip({"pt": muons.Muon_pt, "eta": muons.Muon_eta, "phi": muons.Muon_phi, "mass": muons.Muon_mass,
                 "charge": muons.Muon_charge}, with_name="Momentum4D")
    two = mu[ak.num(mu) >= 2]
    leading = two[:, :2]
    opposite = leading[:, 0].charge != leading[:, 1].charge
    pairs = leading[opposite]
    mass = (pairs[:, 0] + pairs[:, 1]).mass
    h = hist.Hist.new.Reg(60, 0, 120, name="mass").Double()
    h.fill(ak.to_numpy(mass))
    return h.values(), int(ak.sum(ak.num(mu)))


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def run_fresh(python: str, script: Path, args: list[str], env: dict | None = None) -> dict:
    """Run ``script --measure ...`` in a fresh interpreter and return the JSON it prints last."""
    proc = subprocess.run([python, str(script), *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(n: int, fn) -> dict:
    runs = [fn() for _ in range(n)]
    out = dict(runs[0])
    out["seconds"] = statistics.median(r["seconds"] for r in runs)
    if all("cpu_seconds" in r for r in runs):
        out["cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in runs)
    out["all_seconds"] = [round(r["seconds"], 3) for r in runs]
    out["peak_rss_mb"] = max(r.get("peak_rss_mb", 0) for r in runs)
    return out


class Timer:
    """Wall time (``seconds``) and this process's CPU time (``cpu_seconds``: steadier on a shared machine)."""

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.cpu_seconds = time.process_time() - self.c0


def timed_passes(fn, passes: int) -> Timer:
    """``fn()`` run ``passes`` times, each timed: the median pass (wall and CPU each), so that a pass of a few
    ms is not one sample of a loaded machine's noise."""
    timers = []
    result = None
    for _ in range(max(1, passes)):
        with Timer() as t:
            result = fn()
        timers.append(t)
    median = Timer()
    median.seconds = statistics.median(t.seconds for t in timers)
    median.cpu_seconds = statistics.median(t.cpu_seconds for t in timers)
    median.result = result
    return median
