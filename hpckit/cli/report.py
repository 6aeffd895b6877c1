"""`hpckit report RUN_DIR`: rebuild a run's report.html from the files in its directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hpckit.cli import common as c


def report_command(
    run_dir: Path = typer.Argument(..., help="run directory of `hpckit launch`, or the output directory of `hpckit run`"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="where to write (default: RUN_DIR/report.html)"),
) -> None:
    """Write RUN_DIR/report.html: what ran, the workers' timeline, throughput, failures and the plots."""
    from hpckit.report import ReportError, load_run
    from hpckit.report.page import write

    try:
        run = load_run(run_dir)
        path = write(run, output)
    except (ReportError, OSError) as exc:
        c.fail(exc)
    _, sentence = run.status
    c.say(f"{sentence.splitlines()[0]}\nwrote {path}")
