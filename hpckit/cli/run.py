"""`hpckit run`: run an analysis here, or on an engine you already have (a Dask scheduler, a Parsl config)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from hpckit.cli import common as c
from hpckit.engines import ENGINES

Executor = Enum("Executor", {name: name for name in ENGINES}, type=str)  # one choice per engine


def run_command(
    analysis: Path = c.ANALYSIS,
    fileset: Path = c.FILESET,
    processor_name: Optional[str] = c.PROCESSOR,
    executor: Executor = typer.Option(Executor("futures"), "--executor", "-e", case_sensitive=False),
    workers: Optional[int] = c.WORKERS,
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask: address of a running scheduler "
                                            "(default: a LocalCluster of --workers for this run)"),
    parsl_config: Optional[Path] = typer.Option(None, "--parsl-config", help="parsl: a Python file defining "
                                                "get_config() or config (default: --workers local workers)"),
    port: int = c.PORT,
    chunksize: int = c.CHUNKSIZE,
    maxchunks: Optional[int] = c.MAXCHUNKS,
    treename: Optional[str] = c.TREENAME,
    schema: str = c.SCHEMA,
    checkpoint: Optional[Path] = c.CHECKPOINT,
    skipbadfiles: bool = c.SKIPBADFILES,
    output: Path = typer.Option(Path("out.pkl"), "--output", "-o", help="output pickle"),
    status: bool = c.STATUS,
    plots: bool = c.PLOTS,
    data: Optional[List[str]] = c.DATA,
    plot_split: bool = c.PLOT_SPLIT,
    nominal: Optional[str] = c.NOMINAL,
    band: bool = c.BAND,
    refresh_metadata: bool = c.REFRESH_METADATA,
    on: Optional[str] = typer.Option(None, "--on", help="run on the standing pool of this name (hpckit up)"),
) -> None:
    """Run ANALYSIS over FILESET; write the output pickle, metrics JSON, histogram plots and report.html."""
    from hpckit.core.errors import HpckitError
    from hpckit.launch.teardown import Terminated, signals_raise
    from hpckit.run import EngineOptions, run_here, summarize

    spec = c.run_spec(analysis, fileset, processor_name, chunksize, maxchunks, treename, schema, checkpoint,
                      skipbadfiles, output, status, plots, data, plot_split, nominal, band,
                      refresh_metadata)
    if on:
        from hpckit.cli.pools import run_on

        return run_on(on, spec)
    engine = EngineOptions(executor=executor.value, workers=workers, scheduler=scheduler, parsl_config=parsl_config,
                           port=port)
    try:
        with signals_raise():  # SIGTERM ends the run like Ctrl-C: the executor's cleanup runs
            _, metrics, written = run_here(spec, engine, say=c.say)
    except Terminated:
        c.say("hpckit: terminated (SIGTERM)")
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        c.say("hpckit: interrupted" + (f"; rerun the same command to resume from the checkpoint {checkpoint}"
                                       if checkpoint else ""))
        raise typer.Exit(130) from None
    except (HpckitError, OSError) as exc:
        c.fail(exc)
    c.say(summarize(metrics, written))
