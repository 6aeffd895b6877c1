"""Cost of the per-chunk records (chunks.jsonl) that `hpckit run`/`launch` write for the report.

    python bench/records.py --pairs 5            # 2M events in 8 files (bench/runner.py's input)

Runs bench/runner.py's hpckit measurement without and with the recorder, alternating (A B B A ...) in
fresh interpreters, so a machine whose load changes during the run (a shared VM) hits both alike; the
figure is the median over pairs of T(recorded) / T(plain) and its spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_input, run_fresh  # noqa: E402

RUNNER = Path(__file__).resolve().parent / "runner.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--events-per-file", type=int, default=250_000)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/hpckit-bench")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    paths = [str(p) for p in make_input(Path(args.workdir), args.files, args.events_per_file)]
    n_events = args.files * args.events_per_file
    configs = [("Iterative, chunksize 10k", {"executor": "iterative", "chunksize": 10_000}),
               ("Iterative, chunksize 100k", {"executor": "iterative", "chunksize": 100_000}),
               ("Futures(2), chunksize 100k", {"executor": "futures", "workers": 2, "chunksize": 100_000})]
    results = {}
    print(f"{n_events:,} events; {args.pairs} pairs per configuration, alternating plain/recorded")
    print(f"{'configuration':28s} {'plain M ev/s':>12s} {'recorded':>9s} {'T rec/T plain':>14s}  per pair")
    for name, kw in configs:
        def one(record: int) -> float:
            cli = ["--measure", "hpckit", "--workdir", args.workdir, "--paths", *paths, "--record", str(record)]
            for k, v in kw.items():
                cli += [f"--{k}", str(v)]
            return run_fresh(sys.executable, RUNNER, cli)["seconds"]

        plain, recorded = [], []
        for i in range(args.pairs):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            times = {r: one(r) for r in order}
            plain.append(times[0])
            recorded.append(times[1])
        ratios = [r / p for p, r in zip(plain, recorded)]
        results[name] = {"plain_s": plain, "recorded_s": recorded, "ratios": ratios}
        print(f"{name:28s} {n_events / statistics.median(plain) / 1e6:12.3f} "
              f"{n_events / statistics.median(recorded) / 1e6:9.3f} {statistics.median(ratios):14.3f}  "
              f"{[round(x, 3) for x in ratios]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"events": n_events, "results": results}, indent=2))


if __name__ == "__main__":
    main()
