"""The local run behind `hpckit run` (and the fallback of `hpckit launch`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpckit.analysis import load_processor
from hpckit.events import BaseSchema, NanoAODSchema
from hpckit.outputs import write_results
from hpckit.processor import FuturesExecutor, IterativeExecutor, Runner, SimpleCheckpointer

SCHEMAS = {"nanoaod": NanoAODSchema, "base": BaseSchema}


@dataclass
class LocalRunOptions:
    analysis: Path
    fileset: Path
    processor_name: str | None = None
    executor: str = "futures"
    workers: int = 2
    chunksize: int = 100_000
    maxchunks: int | None = None
    treename: str | None = None
    schema: str = "nanoaod"
    checkpoint: Path | None = None
    skipbadfiles: bool = False
    output: Path = Path("out.pkl")
    status: bool = True
    plots: bool = True


def make_executor(name: str, workers: int, status: bool) -> Any:
    if name == "iterative":
        return IterativeExecutor(status=status)
    if name == "futures":
        return FuturesExecutor(workers=workers, status=status)
    raise ValueError(f"unknown local executor {name!r}; expected iterative or futures")


def run_with_executor(
    opts: LocalRunOptions, executor: Any, worker_check: Any = None
) -> tuple[Any, dict, list[Path]]:
    """Load the processor, run it with ``executor`` and write the results."""
    if opts.schema not in SCHEMAS:
        raise ValueError(f"unknown schema {opts.schema!r}; expected one of {sorted(SCHEMAS)}")
    processor = load_processor(opts.analysis, opts.processor_name)
    runner = Runner(
        executor,
        schema=SCHEMAS[opts.schema],
        chunksize=opts.chunksize,
        maxchunks=opts.maxchunks,
        skipbadfiles=opts.skipbadfiles,
        savemetrics=True,
        checkpointer=SimpleCheckpointer(opts.checkpoint) if opts.checkpoint else None,
        worker_check=worker_check,
    )
    out, metrics = runner(str(opts.fileset), processor_instance=processor, treename=opts.treename)
    written = write_results(opts.output, out, metrics, plots=opts.plots)
    return out, metrics, written


def run_local(opts: LocalRunOptions) -> str:
    _, metrics, written = run_with_executor(opts, make_executor(opts.executor, opts.workers, opts.status))
    return summarize(metrics, written)


def summarize(metrics: dict, written: list[Path]) -> str:
    lines = [
        f"{metrics['entries']:,} events in {metrics['chunks']} chunks "
        f"({metrics['chunks_from_checkpoint']} from checkpoint) in {metrics['walltime']:.2f} s "
        f"= {metrics['events_per_second'] / 1e3:,.1f} kHz; {metrics['bytesread'] / 1e6:.2f} MB read "
        f"from {len(metrics['columns'])} columns",
    ]
    if metrics["skipped"]:
        lines.append(f"skipped {len(metrics['skipped'])}: " + "; ".join(s["error"] for s in metrics["skipped"]))
    lines += [f"wrote {p}" for p in written]
    return "\n".join(lines)
