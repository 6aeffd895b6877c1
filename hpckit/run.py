"""RunSpec: what to run and how the Runner runs it, shared by `hpckit run` and `hpckit launch`.

Each option has one default, here; the CLI defines each option once from these fields. The run itself
(load the processor, run it with an executor, write the results) is :func:`run_with_executor`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpckit.engines import get as engine_named
from hpckit.core.errors import UsageError
from hpckit.core.defaults import DEFAULT_CHUNKSIZE, VINE_PORT, check_chunksize
from hpckit.core.units import format_bytes, format_rate, plural

SCHEMAS = ("nanoaod", "base")


@dataclass
class RunSpec:
    """The analysis, its input, and the Runner's options (``schema`` is case-insensitive)."""

    analysis: Path
    fileset: Path
    processor_name: str | None = None
    chunksize: int = DEFAULT_CHUNKSIZE
    maxchunks: int | None = None
    treename: str | None = None
    schema: str = "nanoaod"
    checkpoint: Path | None = None
    skipbadfiles: bool = False
    output: Path | None = None  # `run`: out.pkl here; `launch`: <run dir>/out.pkl
    status: bool = True
    plots: bool = True
    data: tuple[str, ...] = ()  # datasets drawn as data points (besides fileset metadata isData: true)
    plot_split: bool = False  # also one PNG per category value
    nominal: str | None = None  # the bin of a variation axis drawn (None: the one called "nominal")
    band: bool = False  # draw the envelope of a variation axis as a band around the nominal
    run_dir: Path | None = None  # where run.json, chunks.jsonl and report.html go (None: the output's directory)
    refresh_metadata: bool = False  # read every file's metadata again (not from the per-user cache)

    def __post_init__(self) -> None:
        self.schema = str(self.schema).lower()
        self.data = tuple(self.data)
        if self.schema not in SCHEMAS:
            raise UsageError(f"unknown schema {self.schema!r}; expected one of {', '.join(SCHEMAS)} (any case)")
        self.chunksize = check_chunksize(self.chunksize)

    @classmethod
    def default(cls, name: str) -> Any:
        """The one default of option ``name`` (for the CLI)."""
        f = {f.name: f for f in dataclasses.fields(cls)}[name]
        return f.default

    def resolved(self, output: Path | None = None, run_dir: Path | None = None) -> RunSpec:
        """A copy with absolute paths (so a later chdir or a worker elsewhere sees the same files)."""
        out = output if output is not None else (self.output or Path("out.pkl"))
        run_dir = run_dir if run_dir is not None else self.run_dir
        return dataclasses.replace(
            self, analysis=Path(self.analysis).resolve(), fileset=Path(self.fileset).resolve(),
            checkpoint=Path(self.checkpoint).resolve() if self.checkpoint else None, output=Path(out).resolve(),
            run_dir=Path(run_dir).resolve() if run_dir is not None else None)

    def records_dir(self) -> Path:
        """Where the run's records and report go: ``run_dir``, else the output's directory."""
        return Path(self.run_dir or Path(self.output or "out.pkl").parent).resolve()

    def check_inputs(self) -> None:
        """The inputs exist; the places the run writes are the user's own (an UnsafePathError names one
        that another user owns or links to), created when missing."""
        from hpckit.io.paths import own_dir

        for p, what in ((self.analysis, "analysis file"), (self.fileset, "fileset")):
            if not Path(p).exists():
                raise UsageError(f"{what} not found: {p}")
            if not Path(p).is_file():
                raise UsageError(f"{what} {p} is not a regular file (a device, pipe or directory cannot be read as one)")
        if self.output is not None:
            own_dir(Path(self.output).absolute().parent, "output directory", create=True)
        if self.run_dir is not None:
            own_dir(self.run_dir, "run directory", create=True)
        if self.checkpoint is not None:
            own_dir(self.checkpoint, "checkpoint directory", create=True, private=True)

    def count_chunks(self) -> int:
        """How many chunks the fileset makes at this chunksize (opens each file's tree; no processing)."""
        from hpckit.processor import IterativeExecutor

        runner = self._runner(IterativeExecutor(status=False))
        return sum(1 for _ in runner.preprocess(str(self.fileset), treename=self.treename))

    def schema_class(self) -> Any:
        from hpckit.events import BaseSchema, NanoAODSchema

        return {"nanoaod": NanoAODSchema, "base": BaseSchema}[self.schema]

    def _runner(self, executor: Any, worker_check: Any = None, recorder: Any = None) -> Any:
        from hpckit.processor import Runner, SimpleCheckpointer

        return Runner(
            executor, schema=self.schema_class(), chunksize=self.chunksize, maxchunks=self.maxchunks,
            skipbadfiles=self.skipbadfiles, savemetrics=True,
            checkpointer=SimpleCheckpointer(self.checkpoint) if self.checkpoint else None, worker_check=worker_check,
            recorder=recorder, refresh_metadata=self.refresh_metadata,
        )


def run_with_executor(spec: RunSpec, executor: Any, worker_check: Any = None) -> tuple[Any, dict, list[Path]]:
    """Load the processor, run it with ``executor``, write the results; returns (out, metrics, written).
    The run is recorded for its report as it goes (``run.json``, ``chunks.jsonl`` in ``spec.records_dir()``)."""
    from hpckit.analysis import load_processor
    from hpckit.io.outputs import write_results
    from hpckit.report.cutflow import find_cutflows
    from hpckit.report.hooks import RunInfo

    processor = load_processor(spec.analysis, spec.processor_name)
    with RunInfo(spec, processor, executor) as info:
        out, metrics = spec._runner(executor, worker_check, info.recorder)(
            str(spec.fileset), processor_instance=processor, treename=spec.treename)
        metrics["cutflow"] = find_cutflows(out)  # printed by summarize, shown in report.html
        written = write_results(spec.output or Path("out.pkl"), out, metrics, plots=spec.plots, data=info.data,
                                plot_split=spec.plot_split, known=info.datasets, nominal=spec.nominal,
                                band=spec.band)
    return out, metrics, written


def summarize(metrics: dict, written: list[Path]) -> str:
    """Two or three lines for a person: events, chunks, rate, bytes read; skipped files; files written."""
    lines = [
        f"{plural(metrics['entries'], 'event')} in {plural(metrics['chunks'], 'chunk')} "
        f"({metrics['chunks_from_checkpoint']} from checkpoint) in {metrics['walltime']:.2f} s "
        f"= {format_rate(metrics['events_per_second'])}; {format_bytes(metrics['bytesread'])} read "
        f"from {plural(len(metrics['columns']), 'column')}",
    ]
    if metrics["skipped"]:
        lines.append(f"skipped {len(metrics['skipped'])}: " + "; ".join(s["error"] for s in metrics["skipped"]))
    if metrics.get("cutflow"):
        from hpckit.report.cutflow import format_cutflows

        lines.append(format_cutflows(metrics["cutflow"]))
    lines += [f"wrote {p}" for p in written]
    return "\n".join(lines)


@dataclass
class EngineOptions:
    """Which executor `hpckit run` uses (a name in :data:`hpckit.engines.ENGINES`) and how it reaches its
    engine."""

    executor: str = "futures"
    workers: int | None = None  # None: min(cores here, chunks)
    scheduler: str | None = None  # dask: address of a running scheduler
    parsl_config: Path | None = None  # parsl: file with get_config() or config
    port: int = VINE_PORT  # taskvine manager port

    def __post_init__(self) -> None:
        self.executor = engine_named(self.executor).name


def default_workers(limit: int, chunks: int) -> int:
    """The default worker count: as many as useful, ``min(limit, chunks)``, at least 1."""
    return max(1, min(limit, chunks))


def run_here(spec: RunSpec, engine: EngineOptions, say: Any = print) -> tuple[Any, dict, list[Path]]:
    """`hpckit run`: make the executor ``engine`` names, run ``spec`` with it, close what was opened; then
    write ``report.html`` (also when the run failed: the report says how)."""
    from hpckit.report.hooks import write_report_quietly

    spec.check_inputs()
    try:
        out, metrics, written = _run_on_engine(spec, engine, say)
    finally:
        report = write_report_quietly(spec.records_dir(), spec.plots)
    return out, metrics, written + ([report] if report is not None else [])


def _run_on_engine(spec: RunSpec, opts: EngineOptions, say: Any) -> tuple[Any, dict, list[Path]]:
    import os

    engine = engine_named(opts.executor)
    workers = opts.workers
    if workers is None and engine.sizes_workers(opts):
        chunks = spec.count_chunks()
        workers = default_workers(os.cpu_count() or 1, chunks)
        say(f"hpckit: {plural(chunks, 'chunk')}; {plural(workers, 'worker')} ({engine.name})")
    return run_on_engine(spec, engine.name, workers or 1, opts, spec.records_dir(), say)


def run_on_engine(spec: RunSpec, engine_name: str, workers: int, opts: EngineOptions | None, records_dir: Path,
                  say: Any = print) -> tuple[Any, dict, list[Path]]:
    """The one way a run goes on an engine started here: `hpckit run --executor X`, and `hpckit launch`
    on a site whose engine runs in this process (iterative, futures, or the fallback of a batch site without
    its scheduler). The engine's executor for ``workers``, the Runner, then everything it opened closed;
    ``opts``: `hpckit run`'s ways to reach an engine it did not start (None: the engine's own)."""
    engine = engine_named(engine_name)
    if engine.batch:
        from hpckit.processor.lifeline import guard_descendants

        guard_descendants()  # the engine's processes (nannies, interchange, worker pools) end with this one
    with engine.run_executor(opts, workers, spec.status, records_dir, say) as executor:
        return run_with_executor(spec, executor)
