"""The local run behind `hpckit run` (and the fallback of `hpckit launch`)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
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
    data: list[str] = field(default_factory=list)  # datasets drawn as data (besides fileset isData: true)
    plot_split: bool = False  # also one PNG per category value
    run_dir: Path | None = None  # where run.json, chunks.jsonl and report.html go; None: the output's directory
    report: bool = True  # write report.html at the end


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
    from hpckit.processor.records import ChunkRecorder
    from hpckit.report.plots import data_datasets

    processor = load_processor(opts.analysis, opts.processor_name)
    data = data_datasets(opts.fileset, opts.data, opts.treename)
    run_dir = run_dir_of(opts)
    recorder = ChunkRecorder(run_dir / "chunks.jsonl")
    recorder.reset()
    info = _run_info(opts, processor, data)
    _write_json(run_dir / "run.json", info)
    runner = Runner(
        executor,
        schema=SCHEMAS[opts.schema],
        chunksize=opts.chunksize,
        maxchunks=opts.maxchunks,
        skipbadfiles=opts.skipbadfiles,
        savemetrics=True,
        checkpointer=SimpleCheckpointer(opts.checkpoint) if opts.checkpoint else None,
        worker_check=worker_check,
        recorder=recorder,
    )
    try:
        out, metrics = runner(str(opts.fileset), processor_instance=processor, treename=opts.treename)
        written = write_results(opts.output, out, metrics, plots=opts.plots, data=data, plot_split=opts.plot_split,
                                known=info["datasets"])
    except BaseException as err:
        info.update(finished=time.time(), error=f"{type(err).__name__}: {err}")
        _write_json(run_dir / "run.json", info)
        raise
    info.update(finished=time.time(), error=None)
    _write_json(run_dir / "run.json", info)
    return out, metrics, written


def run_dir_of(opts: LocalRunOptions) -> Path:
    return Path(opts.run_dir).resolve() if opts.run_dir else Path(opts.output).resolve().parent


def _run_info(opts: LocalRunOptions, processor: Any, data: list[str]) -> dict:
    """What ran, for the report: written at the start (a killed run keeps it) and completed at the end."""
    from hpckit.processor.fileset import normalize_fileset

    datasets: dict[str, dict] = {}
    for spec in normalize_fileset(str(opts.fileset), opts.treename):
        d = datasets.setdefault(spec.dataset, {"files": 0, "data": spec.dataset in data})
        d["files"] += 1
    return {
        "analysis": str(Path(opts.analysis).resolve()), "processor": type(processor).__name__,
        "fileset": str(Path(opts.fileset).resolve()), "datasets": datasets, "data": data,
        "executor": opts.executor, "workers": opts.workers, "chunksize": opts.chunksize,
        "output": str(Path(opts.output).resolve()), "plot_split": opts.plot_split, "argv": sys.argv,
        "host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "finished": None, "error": None,
    }


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def run_local(opts: LocalRunOptions) -> str:
    try:
        _, metrics, written = run_with_executor(opts, make_executor(opts.executor, opts.workers, opts.status))
    finally:
        report = write_report_quietly(run_dir_of(opts), opts.plots) if opts.report else None
    if report is not None:
        written = [*written, report]
    return summarize(metrics, written)


def write_report_quietly(run_dir: Path, plots: bool = True) -> Path | None:
    """report.html for ``run_dir``; a failure to write it is a warning, never the run's error."""
    import warnings

    from hpckit.report import ReportError, write_report

    try:
        return write_report(run_dir, plots=plots)
    except ReportError:
        return None  # the run stopped before it wrote anything (e.g. a bad fileset): nothing to report
    except Exception as err:  # noqa: BLE001 - the results are written; the report is an extra
        warnings.warn(f"hpckit: report.html not written: {type(err).__name__}: {err}")
        return None


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
