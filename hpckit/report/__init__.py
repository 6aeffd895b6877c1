"""What a physicist looks at after a run: the histograms in the field's style (:mod:`.plots`) and a
one-page report of how the run went (``report.html``, :func:`write_report`), rebuilt at any time from
the files the run left in its directory (:mod:`.rundata`), also after the run was killed."""

from __future__ import annotations

from pathlib import Path

from hpckit.report.rundata import ReportError, RunData, load_run

__all__ = ["ReportError", "RunData", "load_run", "write_report"]


def write_report(run_dir: str | Path, path: str | Path | None = None, plots: bool = True) -> Path:
    """Write ``report.html`` (or ``path``) for the run in ``run_dir``; returns its path. ``plots=False``
    leaves the histograms out (a run with ``--no-plots``; ``hpckit report`` draws them)."""
    from hpckit.report.page import write

    return write(load_run(run_dir), Path(path) if path else None, plots=plots)
