"""Write a run's results: the output pickle, a metrics JSON and the report's numbers (``.results.json``:
histograms and counts, so the report never unpickles) next to it, and the histograms' plots."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hpckit.io.paths import atomic_write, umask_mode
from hpckit.report.numbers import metrics_path, results_path, to_json
from hpckit.report.plots import iter_histograms  # noqa: F401 - re-exported


def _atomic_write(path: Path, data: bytes) -> None:
    """The file ends with the user's normal permissions (umask); privacy comes from the 0700 run directory."""
    atomic_write(path, data, umask_mode())


def write_results(output: str | Path, out: Any, metrics: dict, plots: bool = True, data: Iterable[str] = (),
                  plot_split: bool = False, known: Iterable[str] = (), nominal: str | None = None,
                  band: bool = False) -> list[Path]:
    """Write everything and return the paths written. ``data``: datasets drawn as data points;
    ``plot_split``: also one PNG per category value; ``known``: the run's dataset names; ``nominal``,
    ``band``: how a variation axis is drawn (:mod:`hpckit.report.plots`)."""
    output = Path(output)
    written = [output, metrics_path(output), results_path(output)]
    _atomic_write(output, pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    _atomic_write(written[1], json.dumps(metrics, indent=2, default=_jsonable).encode())
    _atomic_write(written[2], to_json(out))
    if plots:
        written += plot_histograms(out, output.with_name(output.stem), data, plot_split, known, nominal, band)
    return written


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def plot_histograms(out: Any, stem: Path, data: Iterable[str] = (), split: bool = False,
                    known: Iterable[str] = (), nominal: str | None = None, band: bool = False) -> list[Path]:
    """One PNG per histogram and a PDF with all of them: see :mod:`hpckit.report.plots`."""
    from hpckit.report.plots import plot_histograms as plot

    return plot(out, stem, data=data, split=split, known=known, nominal=nominal, band=band)
