"""Preprocessing many files with one bad one: time per file, and what the bad file costs.

    python bench/preprocess.py --files 50000 --workers 2

Builds N symbolic links to one small ROOT file written here with uproot (an ``Events`` tree of 100
entries and 3 branches: the fixed cost of opening a file, not of reading NanoAOD's 1,500 branch
descriptions) plus one truncated copy (in --workdir, reused), then times ``Runner.preprocess`` with ``skipbadfiles=True`` for IterativeExecutor and
FuturesExecutor(workers) (which opens files in its pool when workers >= 4, else in the driver), each in
a fresh process. Also times the bad file alone: before issue 14 a truncated file was retried 3 times
with backoff (~0.7 s); now it fails once. Ratios are against Iterative in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from hpckit import processor
files, executor, workers = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ex = processor.IterativeExecutor(status=False) if executor == "iterative" else processor.FuturesExecutor(workers=workers, status=False)
t = time.perf_counter()
items = list(processor.Runner(ex, chunksize=10**9, skipbadfiles=True).preprocess({"ds": files}, treename="Events"))
print(json.dumps({"s": time.perf_counter() - t, "chunks": len(items)}))
"""


def build(workdir: Path, n: int) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    import numpy as np
    import uproot

    src = workdir / "small.root"
    if not src.exists():
        with uproot.recreate(src) as f:
            f["Events"] = {"run": np.ones(100, np.int32), "event": np.arange(100, dtype=np.int64),
                           "x": np.linspace(0, 1, 100)}
    bad = workdir / "truncated.root"
    data = src.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    files = []
    for i in range(n):
        p = workdir / f"f{i:06d}.root"
        if not p.exists():
            p.symlink_to(src)
        files.append(str(p))
    files.insert(n // 2, str(bad))
    return files


def run(files: list[str], executor: str, workers: int) -> dict:
    listing = Path(files[0]).parent / "files.json"
    listing.write_text(json.dumps(files))
    r = subprocess.run([sys.executable, "-c", CHILD.replace("json.loads(sys.argv[1])", "json.load(open(sys.argv[1]))"),
                        str(listing), executor, str(workers)], capture_output=True, text=True, cwd=listing.parent)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/hpckit-bench-preprocess"))
    ap.add_argument("--skip-iterative", action="store_true")
    args = ap.parse_args()
    files = build(args.workdir, args.files)
    rows = {}
    bad_only = run([f for f in files if f.endswith("truncated.root")] + files[:1], "iterative", 1)
    one = run(files[:1], "iterative", 1)
    rows["bad file alone (s)"] = bad_only["s"] - one["s"]
    if not args.skip_iterative:
        rows["iterative"] = run(files, "iterative", 1)
    rows[f"futures({args.workers})"] = run(files, "futures", args.workers)
    base = rows.get("iterative", {}).get("s")
    print(f"{len(files):,} files (one truncated), skipbadfiles=True")
    for k, v in rows.items():
        if isinstance(v, dict):
            ratio = f"{base / v['s']:.2f}x iterative" if base else ""
            print(f"  {k:14s} {v['s']:8.1f} s  {v['s'] / len(files) * 1e3:6.2f} ms/file  chunks {v['chunks']:,}  {ratio}")
        else:
            print(f"  {k}: {v:.3f} s")


if __name__ == "__main__":
    main()
