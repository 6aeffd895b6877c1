"""`hpckit launch` and `hpckit doctor`: thin commands over hpckit.launch and hpckit.doctor."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hpckit.cli import common as c
from hpckit.engines import ENGINES


def launch_command(
    analysis: Path = c.ANALYSIS,
    site: str = c.SITE,
    fileset: Path = c.FILESET,
    processor_name: Optional[str] = c.PROCESSOR,
    backend: Optional[str] = typer.Option(
        None, "--backend", help=f"{', '.join(ENGINES)} (default: the site's)"),
    workers: Optional[int] = c.WORKERS,
    adapt: Optional[str] = c.ADAPT,
    set_: Optional[List[str]] = c.SET,
    chunksize: int = c.CHUNKSIZE,
    maxchunks: Optional[int] = c.MAXCHUNKS,
    treename: Optional[str] = c.TREENAME,
    schema: str = c.SCHEMA,
    checkpoint: Optional[Path] = c.CHECKPOINT,
    skipbadfiles: bool = c.SKIPBADFILES,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="output pickle (default: <run dir>/out.pkl)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="render into the run dir, print the plan, submit nothing"),
    no_fallback: bool = typer.Option(False, "--no-fallback", help="error (not a local run) without the scheduler"),
    worker_timeout: float = typer.Option(300.0, "--worker-timeout", min=1, help="seconds to wait for a first worker"),
    wait_workers: int = typer.Option(1, "--wait-workers", min=1,
                                     help="start the run once N workers are connected (fewer after --worker-timeout)"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="run directory (default: scratch or ./hpckit-runs)"),
    port: int = c.PORT,
    env: Optional[Path] = typer.Option(None, "--env", help="hpckit pack tarball the workers run (env_delivery tarball)"),
    status: bool = c.STATUS,
    plots: bool = c.PLOTS,
    data: Optional[List[str]] = c.DATA,
    plot_split: bool = c.PLOT_SPLIT,
    nominal: Optional[str] = c.NOMINAL,
    band: bool = c.BAND,
    refresh_metadata: bool = c.REFRESH_METADATA,
) -> None:
    """Start workers for SITE, run ANALYSIS over FILESET on them, write the results, cancel every job."""
    from hpckit.core.errors import HpckitError
    from hpckit.launch import LaunchOptions, Terminated, launch
    from hpckit.run import summarize

    if workers and adapt:
        c.fail("give --workers N or --adapt MIN:MAX, not both")
    spec = c.run_spec(analysis, fileset, processor_name, chunksize, maxchunks, treename, schema, checkpoint,
                      skipbadfiles, output, status, plots, data, plot_split, nominal, band,
                      refresh_metadata)
    opts = LaunchOptions(site=site, spec=spec, backend=backend, workers=workers, adapt=adapt,
                         overrides=c.overrides(set_),
                         dry_run=dry_run, fallback=not no_fallback, worker_timeout=worker_timeout,
                         wait_workers=wait_workers, run_dir=run_dir,
                         port=port, env=env, say=c.say)
    try:
        result = launch(opts)
    except Terminated:
        c.say("hpckit: terminated (SIGTERM); batch jobs cancelled")
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        c.say("hpckit: interrupted; batch jobs cancelled" + ("; rerun the same command to resume from "
              f"the checkpoint {checkpoint}" if checkpoint else ""))
        raise typer.Exit(130) from None
    except (HpckitError, OSError) as exc:
        c.fail(exc)
    if result.mode == "dry-run":
        for line in result.planned:
            c.say(line)
        return
    c.say(summarize(result.metrics, result.written))
    timing = f"result after {result.seconds_to_result:.1f} s"
    if result.seconds_to_first_worker is not None:
        timing = f"first worker after {result.seconds_to_first_worker:.1f} s, " + timing
    c.say(f"hpckit: {result.backend} on {result.site} ({result.mode}): {timing}; run dir {result.run_dir}")


def doctor_command(
    site: str = c.SITE,
    set_: Optional[List[str]] = c.SET,
    backend: Optional[str] = typer.Option(None, "--backend", help="backend to check for (default: the site's)"),
    fileset: Optional[Path] = typer.Option(None, "--fileset", "-f", help="also check its storage endpoints"),
) -> None:
    """Check this machine against SITE before burning queue time: one pass/fail line per check, with the fix."""
    from hpckit.doctor import run_checks
    from hpckit.core.errors import HpckitError

    try:
        checks = run_checks(site, c.overrides(set_), backend, fileset=str(fileset) if fileset else None)
    except HpckitError as exc:  # a broken site file, an unknown backend
        c.fail(exc)
    marks = {"pass": "[green]PASS[/green]", "fail": "[red]FAIL[/red]", "skip": "[yellow]SKIP[/yellow]"}
    for chk in checks:
        c.err.print(f"{marks[chk.result]} ", end="", markup=True)
        c.err.print(f"{chk.name}: {chk.detail}", highlight=False, soft_wrap=True, markup=False)
        if chk.result == "fail" and chk.fix:
            c.say(f"     fix: {chk.fix}")
    failed = sum(chk.result == "fail" for chk in checks)
    c.say(f"{plural_checks(len(checks))}: {failed} failed")
    if failed:
        raise typer.Exit(1)


def plural_checks(n: int) -> str:
    from hpckit.core.units import plural

    return plural(n, "check")
