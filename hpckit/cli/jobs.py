"""`hpckit jobs` and `hpckit cancel`: the batch jobs of earlier launches, and cancelling those left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hpckit.cli import common as c


def jobs_command(
    run: Optional[Path] = typer.Option(None, "--run", help="one run directory (default: every run under --runs)"),
    runs: Path = typer.Option(Path("hpckit-runs"), "--runs", help="directory holding run directories"),
) -> None:
    """List the batch jobs of earlier launches with their scheduler state and whether the launch is alive."""
    from hpckit.errors import HpckitError
    from hpckit.launch.teardown import find_runs, run_jobs_table

    from hpckit.cli.pools import pool_rows

    try:
        rows = run_jobs_table(find_runs(run, runs))
        rows = (pool_rows() if run is None else []) + rows
    except HpckitError as exc:
        c.fail(exc)
    if not rows:
        c.say("no launch with batch jobs found")
        return
    for row in rows:
        c.out.print(row, markup=False, highlight=False)


def cancel_command(
    run: Optional[Path] = typer.Argument(None, help="run directory whose jobs to cancel"),
    all_orphans: bool = typer.Option(False, "--all-orphans", help="every run under --runs whose launch is gone"),
    runs: Path = typer.Option(Path("hpckit-runs"), "--runs", help="directory holding run directories"),
    force: bool = typer.Option(False, "--force", help="cancel even when the launch process is still alive"),
) -> None:
    """Cancel the jobs of a launch whose process is gone (SIGKILL, lost login session)."""
    from hpckit.errors import HpckitError
    from hpckit.launch.teardown import cancel_runs, find_runs

    if run is None and not all_orphans:
        c.fail("give a run directory, or --all-orphans")
    try:
        for line in cancel_runs(find_runs(run, runs) if run is not None else find_runs(None, runs), force=force):
            c.say(line)
    except HpckitError as exc:
        c.fail(exc)
