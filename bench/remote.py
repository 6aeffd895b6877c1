"""Remote-data benchmark over a real XRootD server on loopback (scripts/xrootd-local.sh start-one).

1. Bytes and requests per chunk: hpckit's Runner (IterativeExecutor, the dimuon example: five muon
   branches + nMuon) against uproot alone reading the same branches over the same entry ranges from the
   same server (``tree.arrays(..., entry_start, entry_stop)`` per chunk), and against one read of the whole
   file (the least any reader can fetch).
2. Events/s, local file vs root:// (Iterative and Futures with 2 workers), same files, same run.
3. Fixed cost per chunk on the 2,656-branch NanoAOD v15 file (200 entries in 20 chunks), local vs root://:
   the open file and its metadata are reused across chunks, so the per-chunk cost after the first is the
   same work as for a local file plus the reads.

    python bench/remote.py                                  # 2 files of 200k events, baskets of 25k
    python bench/remote.py --events-per-file 50000 --files 1 --chunksize 20000   # a quick look

Needs root (starts an XRootD instance as the xrootd user) and the hpckit[xrootd] extra.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, MUON, REPO, make_input  # noqa: E402

sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(REPO))
SCRIPT = REPO / "scripts" / "xrootd-local.sh"
WIDE = DATA / "nano_tt_v15.root"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(name: str, export: Path) -> str:
    r = subprocess.run(["bash", str(SCRIPT), "start-one", name, str(_free_port()), str(export)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cannot start the XRootD server:\n{r.stderr}")
    return r.stdout.strip().splitlines()[-1]


def _runner(executor, chunksize):
    from hpckit import processor

    return processor.Runner(executor, chunksize=chunksize, savemetrics=True, xrootdtimeout=30)


def hpckit_run(paths: list[str], chunksize: int, workers: int = 0, proc=None, keep_open: bool = False) -> dict:
    from dimuon import DimuonProcessor

    from hpckit import processor

    from hpckit.events.reader import close_all

    if not keep_open:
        close_all()  # every configuration opens its files itself
    ex = processor.FuturesExecutor(workers=workers, status=False) if workers else processor.IterativeExecutor(status=False)
    t0 = time.perf_counter()
    out, m = _runner(ex, chunksize)({"bench": {"files": {p: "Events" for p in paths}}},
                                    processor_instance=proc or DimuonProcessor())
    m["seconds"] = time.perf_counter() - t0
    return m


def uproot_alone(paths: list[str], chunksize: int) -> dict:
    """The same branches over the same chunk ranges, read by uproot with nothing in between."""
    import uproot

    from hpckit.processor.fileset import chunk_ranges
    from hpckit.io.storage import configure_xrootd_client

    configure_xrootd_client()
    total = {"bytes": 0, "requests": 0, "chunks": 0, "whole_file_bytes": 0, "whole_file_requests": 0}
    branches = MUON + ["nMuon"]
    for p in paths:
        with uproot.open(p, timeout=30) as f:
            tree = f["Events"]
            src = f.file.source
            for start, stop in chunk_ranges(tree.num_entries, chunksize):
                b0, r0 = src.num_requested_bytes, src.num_requests
                tree.arrays(branches, entry_start=start, entry_stop=stop)
                total["bytes"] += src.num_requested_bytes - b0
                total["requests"] += src.num_requests - r0
                total["chunks"] += 1
            b0, r0 = src.num_requested_bytes, src.num_requests
            tree.arrays(branches)
            total["whole_file_bytes"] += src.num_requested_bytes - b0
            total["whole_file_requests"] += src.num_requests - r0
    return total


from hpckit.processor import ProcessorABC  # noqa: E402


class OneColumn(ProcessorABC):
    """Reads one small column per chunk: what is left is the fixed cost of a chunk."""

    def process(self, events):
        return {"n": len(events.run)}

    def postprocess(self, acc):
        return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--events-per-file", type=int, default=200_000)
    ap.add_argument("--chunksize", type=int, default=50_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/hpckit-bench-remote"))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(args.workdir, 0o755)
    local = [str(p) for p in make_input(args.workdir, args.files, args.events_per_file)]
    wide_copy = args.workdir / WIDE.name
    if not wide_copy.exists():
        wide_copy.write_bytes(WIDE.read_bytes())
    for p in [*local, str(wide_copy)]:
        os.chmod(p, 0o644)
    base = start_server("hpckit-bench", args.workdir)
    remote = [f"{base}/{Path(p).name}" for p in local]
    results: dict = {"files": args.files, "events_per_file": args.events_per_file, "chunksize": args.chunksize}
    try:
        # 1. bytes and requests per chunk
        h = hpckit_run(remote, args.chunksize)
        u = uproot_alone(remote, args.chunksize)
        results["per_chunk"] = {
            "chunks": h["chunks"],
            "hpckit_bytes": h["bytesread"] / h["chunks"],
            "hpckit_requests": h["requests"] / h["chunks"],
            "uproot_bytes": u["bytes"] / u["chunks"],
            "uproot_requests": u["requests"] / u["chunks"],
            "whole_file_bytes": u["whole_file_bytes"] / u["chunks"],
            "bytes_ratio_vs_uproot": h["bytesread"] / u["bytes"],
            "bytes_ratio_vs_whole_file": h["bytesread"] / u["whole_file_bytes"],
        }
        # 2. events/s local vs root://
        rates = {}
        for label, paths in (("local", local), ("root", remote)):
            for workers in (0, 2):
                hpckit_run(paths, args.chunksize, workers)  # warm: page cache, imports, server
                m = hpckit_run(paths, args.chunksize, workers)
                rates[f"{label}_{'iterative' if not workers else 'futures2'}"] = m["entries"] / m["seconds"]
        results["events_per_second"] = rates
        # 3. fixed cost per chunk, wide file: cold (open + metadata), then with the file open
        fixed = {}
        for label, path in (("local", str(wide_copy)), ("root", f"{base}/{WIDE.name}")):
            cold = hpckit_run([path], 200, proc=OneColumn())  # one chunk: open + metadata + one read
            one = hpckit_run([path], 200, proc=OneColumn(), keep_open=True)
            many = hpckit_run([path], 10, proc=OneColumn(), keep_open=True)  # 20 chunks, the file open
            fixed[label] = {
                "first_chunk_cold_s": cold["seconds"],
                "per_chunk_ms_file_open": 1e3 * (many["seconds"] - one["seconds"]) / 19,
                "requests_20_chunks": many["requests"],
            }
        results["fixed_cost"] = fixed
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop-one", "hpckit-bench"], capture_output=True)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
