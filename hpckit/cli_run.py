"""`hpckit run`: run an analysis on this machine with a local executor."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from hpckit.cli import app

console = Console(stderr=True)


class LocalExecutor(str, Enum):
    iterative = "iterative"
    futures = "futures"


@app.command("run")
def run_command(
    analysis: Path = typer.Argument(..., help="Python file defining a ProcessorABC subclass"),
    fileset: Path = typer.Option(..., "--fileset", "-f", help="fileset JSON"),
    processor_name: Optional[str] = typer.Option(None, "--processor", "-p", help="processor class name"),
    executor: LocalExecutor = typer.Option(LocalExecutor.futures, "--executor", "-e"),
    workers: int = typer.Option(2, "--workers", "-j", min=1),
    chunksize: int = typer.Option(100_000, "--chunksize", min=1),
    maxchunks: Optional[int] = typer.Option(None, "--maxchunks", min=1),
    treename: Optional[str] = typer.Option(None, "--treename"),
    schema: str = typer.Option("nanoaod", "--schema", help="nanoaod or base"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="checkpoint directory (resume)"),
    skipbadfiles: bool = typer.Option(False, "--skipbadfiles", help="skip unreadable files, listing them"),
    output: Path = typer.Option(Path("out.pkl"), "--output", "-o"),
    status: bool = typer.Option(True, "--status/--no-status", help="progress bar"),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
    data: Optional[List[str]] = typer.Option(
        None, "--data", help="dataset drawn as data points (repeatable; fileset metadata isData: true also marks one)"),
    plot_split: bool = typer.Option(False, "--plot-split", help="also one PNG per category value (e.g. per dataset)"),
) -> None:
    """Run ANALYSIS over FILESET here; write the output pickle, metrics JSON and histogram PNGs."""
    from hpckit.localrun import LocalRunOptions, run_local

    opts = LocalRunOptions(
        analysis=analysis, fileset=fileset, processor_name=processor_name, executor=executor.value,
        workers=workers, chunksize=chunksize, maxchunks=maxchunks, treename=treename, schema=schema,
        checkpoint=checkpoint, skipbadfiles=skipbadfiles, output=output, status=status, plots=plots,
        data=list(data or []), plot_split=plot_split,
    )
    try:
        summary = run_local(opts)
    except Exception as err:  # noqa: BLE001 - show the error plainly, not a Typer traceback dump
        from hpckit.errors import HpckitError
        from hpckit.analysis import AnalysisError

        if isinstance(err, (HpckitError, AnalysisError, OSError)):
            console.print(f"[red]error:[/red] {err}", markup=True, highlight=False)
            raise typer.Exit(1) from None
        raise
    console.print(summary, highlight=False)
