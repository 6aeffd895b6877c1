"""`hpckit jobs` and `hpckit cancel`: the batch jobs of earlier launches, and cancelling those left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hpckit.cli import common as c


RUNS_HELP = ("directory holding run directories (default: ./hpckit-runs and <scratch>/hpckit-runs-<user> of "
             "every site, where launches put them)")


def _roots(runs: Optional[Path]) -> list[Path]:
    from hpckit.launch.plan import run_roots

    return [runs] if runs is not None else run_roots()


def jobs_command(
    run: Optional[Path] = typer.Option(None, "--run", help="one run directory (default: every run under --runs)"),
    runs: Optional[Path] = typer.Option(None, "--runs", help=RUNS_HELP),
) -> None:
    """List the batch jobs of earlier launches with their scheduler state and whether the launch is alive."""
    from hpckit.core.errors import HpckitError
    from hpckit.launch.teardown import find_runs, run_jobs_table

    from hpckit.cli.pools import pool_rows

    try:
        rows = run_jobs_table(find_runs(run, _roots(runs) if run is None else []))
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
    runs: Optional[Path] = typer.Option(None, "--runs", help=RUNS_HELP),
    force: bool = typer.Option(False, "--force", help="cancel even when the launch process is still alive "
                               "(an `hpckit run` output directory: end that run)"),
) -> None:
    """Cancel the jobs of a launch whose process is gone (SIGKILL, lost login session), or end what an `hpckit run`
    left. Exits 1 when a named run is not cancelled (its launch still runs: --force)."""
    from hpckit.core.errors import HpckitError
    from hpckit.launch.teardown import cancel_runs, find_runs

    if run is None and not all_orphans:
        c.fail("give a run directory, or --all-orphans")
    try:
        found = find_runs(run, []) if run is not None else find_runs(None, _roots(runs))
        for line in cancel_runs(found, force=force, strict=run is not None):
            c.say(line)
    except HpckitError as exc:
        c.fail(exc)
