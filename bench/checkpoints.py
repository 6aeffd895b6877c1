"""What checkpoints cost, written by the workers (a shared file system) or by the driver (``shared_filesystem=False``:
a site without one, where each chunk's result also comes to the driver), against no checkpointer.

    python bench/checkpoints.py [--chunks 80] [--workers 2] [--only dask parsl]

Per engine (Dask LocalCluster, Parsl HTEX, started before the clock), with bench/engine_costs.py's ~10^4-bin
histogram processor on one-event chunks (at most 80: the two sample files hold 80 events, and a chunk
given twice is refused as counted twice): processing wall without checkpoints, with checkpoints on the workers,
with checkpoints on the driver (fresh directories), and a resume that finds every chunk on the driver; each
as a ratio to the first. Every case gives the same output bytes (checked).
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine_costs import items, processor_for  # noqa: E402


def _executor(engine: str, workers: int, cleanup: list):
    from hpckit import processor

    if engine == "dask":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
        cleanup += [client.close, cluster.close]
        return lambda: processor.DaskExecutor(client=client, status=False)
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    config = Config(executors=[HighThroughputExecutor(label="bench", address="127.0.0.1", max_workers_per_node=workers,
                                                      provider=LocalProvider(init_blocks=1, max_blocks=1))],
                    run_dir=tempfile.mkdtemp(prefix="hpckit-bench-parsl-"), strategy="none")
    dfk = parsl.load(config)
    cleanup.append(dfk.cleanup)
    return lambda: processor.ParslExecutor(config=config, status=False)


def measure(engine: str, n: int, workers: int) -> dict:
    from hpckit import processor

    work, proc, cleanup = items(n), processor_for("merge"), []
    tmp = Path(tempfile.mkdtemp(prefix="hpckit-bench-ckpt-"))
    try:
        make = _executor(engine, workers, cleanup)
        processor.Runner(make(), savemetrics=True)(work[: 2 * workers], processor_instance=proc)  # warm the workers

        def run(checkpoint: Path | None, on_driver: bool) -> tuple[float, bytes, dict]:
            ex = make()
            ex.shared_filesystem = not on_driver
            ckpt = processor.SimpleCheckpointer(checkpoint) if checkpoint else None
            t0 = time.perf_counter()
            out, metrics = processor.Runner(ex, checkpointer=ckpt, savemetrics=True)(work, processor_instance=proc)
            return time.perf_counter() - t0, pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL), metrics

        run(None, False)  # the first full run on these workers is slower whatever it does: not measured
        base, ref, _ = run(None, False)
        workers_s, out_w, _ = run(tmp / "w", False)
        driver_s, out_d, _ = run(tmp / "d", True)
        resume_s, out_r, m = run(tmp / "d", True)
        again, _, _ = run(None, False)  # the baseline again, after: the spread of the machine
        base = min(base, again)
        assert out_w == out_d == out_r == ref and m["chunks_from_checkpoint"] == n, "outputs differ"
        return {"engine": engine, "chunks": n, "none_s": round(base, 2),
                "on_workers": round(workers_s / base, 2), "on_driver": round(driver_s / base, 2),
                "resume_on_driver": round(resume_s / base, 2), "baseline_spread": round(abs(again - base) / base, 2)}
    finally:
        for c in reversed(cleanup):
            c()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=80)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=["dask", "parsl"])
    a = ap.parse_args()
    for engine in a.only:
        print(measure(engine, a.chunks, a.workers), flush=True)


if __name__ == "__main__":
    main()
