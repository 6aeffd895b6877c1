"""`hpckit launch` and `hpckit doctor`: thin commands over hpckit.launch and hpckit.doctor."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from hpckit.cli import app

err = Console(stderr=True)


def _fail(exc: BaseException, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command("launch")
def launch_command(
    analysis: Path = typer.Argument(..., help="Python file defining a ProcessorABC subclass"),
    site: str = typer.Option(..., "--site", help="site name or path to a site YAML file"),
    fileset: Path = typer.Option(..., "--fileset", "-f", help="fileset JSON"),
    processor_name: Optional[str] = typer.Option(None, "--processor", "-p", help="processor class name"),
    backend: Optional[str] = typer.Option(
        None, "--backend", help="dask, parsl, taskvine, futures or iterative (default: the site's)"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="workers (default: the site's max)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a site key: key.path=value (repeatable)"),
    chunksize: int = typer.Option(100_000, "--chunksize", min=1),
    maxchunks: Optional[int] = typer.Option(None, "--maxchunks", min=1),
    treename: Optional[str] = typer.Option(None, "--treename"),
    schema: str = typer.Option("nanoaod", "--schema", help="nanoaod or base"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="checkpoint directory (rerun resumes)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="output pickle (default: <run dir>/out.pkl)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="render into the run dir, print the plan, submit nothing"),
    no_fallback: bool = typer.Option(False, "--no-fallback", help="error (not a local run) without the scheduler"),
    worker_timeout: float = typer.Option(300.0, "--worker-timeout", min=1, help="seconds to wait for a first worker"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="run directory (default: scratch or ./hpckit-runs)"),
    port: int = typer.Option(9123, "--port", help="TaskVine manager port"),
    env: Optional[Path] = typer.Option(None, "--env", help="hpckit pack tarball the workers run (env_delivery tarball)"),
    status: bool = typer.Option(True, "--status/--no-status", help="progress bar"),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
) -> None:
    """Start workers for SITE, run ANALYSIS over FILESET on them, write the results, cancel every job."""
    from hpckit.analysis import AnalysisError
    from hpckit.deploy import SiteError
    from hpckit.deploy.render import RenderError
    from hpckit.errors import HpckitError
    from hpckit.launch import LaunchError, LaunchOptions, Terminated, launch
    from hpckit.localrun import summarize

    opts = LaunchOptions(
        site=site, analysis=analysis, fileset=fileset, processor_name=processor_name, backend=backend,
        workers=workers, overrides=list(set_ or []), chunksize=chunksize, maxchunks=maxchunks, treename=treename,
        schema=schema, checkpoint=checkpoint, output=output, dry_run=dry_run, fallback=not no_fallback,
        worker_timeout=worker_timeout, run_dir=run_dir, status=status, plots=plots, port=port, env=env,
        say=lambda msg: err.print(msg, highlight=False, soft_wrap=True, markup=False),
    )
    try:
        result = launch(opts)
    except Terminated:
        err.print("hpckit: terminated (SIGTERM); batch jobs cancelled", highlight=False)
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        err.print("hpckit: interrupted; batch jobs cancelled" + ("; rerun the same command to resume from "
                  f"the checkpoint {checkpoint}" if checkpoint else ""), highlight=False)
        raise typer.Exit(130) from None
    except (LaunchError, SiteError, RenderError, AnalysisError, HpckitError, OSError) as exc:
        _fail(exc)
    if result.mode == "dry-run":
        for line in result.planned:
            err.print(line, highlight=False, soft_wrap=True, markup=False)
        return
    err.print(summarize(result.metrics, result.written), highlight=False, soft_wrap=True, markup=False)
    timing = f"result after {result.seconds_to_result:.1f} s"
    if result.seconds_to_first_worker is not None:
        timing = f"first worker after {result.seconds_to_first_worker:.1f} s, " + timing
    err.print(f"hpckit: {result.backend} on {result.site} ({result.mode}): {timing}; run dir {result.run_dir}",
              highlight=False, soft_wrap=True, markup=False)


@app.command("doctor")
def doctor_command(
    site: str = typer.Option(..., "--site", help="site name or path to a site YAML file"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a site key: key.path=value (repeatable)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="backend to check for (default: the site's)"),
) -> None:
    """Check this machine against SITE before burning queue time: one pass/fail line per check, with the fix."""
    from hpckit.deploy import SiteError
    from hpckit.doctor import run_checks

    try:
        checks = run_checks(site, list(set_ or []), backend)
    except SiteError as exc:
        _fail(exc)
    marks = {"pass": "[green]PASS[/green]", "fail": "[red]FAIL[/red]", "skip": "[yellow]SKIP[/yellow]"}
    for c in checks:
        err.print(f"{marks[c.result]} {c.name}: {c.detail}", highlight=False, soft_wrap=True)
        if c.result == "fail" and c.fix:
            err.print(f"     fix: {c.fix}", highlight=False, soft_wrap=True, markup=False)
    failed = sum(c.result == "fail" for c in checks)
    err.print(f"{len(checks)} checks: {failed} failed", highlight=False)
    if failed:
        raise typer.Exit(1)
