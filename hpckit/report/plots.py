"""Histograms drawn the way a HEP plot is read: data as points with Poisson error bars over stacked,
filled simulation; y axis "Events / 5 GeV" (or "Sum of weights / ..." for weighted fills); 2-D with a
labelled colour bar. mplhep supplies the style when installed (``pip install 'hpckit[plot]'``); without
it the same artists are drawn in matplotlib's plain style.

Error bars on data are sqrt(N) (sqrt of the summed squared weights for Weight storage): symmetric,
what the test checks, and within a few per cent of the Garwood interval once N exceeds ~20; bins with
no data entry get no marker.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hpckit.errors import HpckitError

DATA_KEYS = ("isData", "is_data")  # fileset metadata marking a dataset as data; is_mc/isMC false also does


class PlotError(HpckitError):
    """A plotting option does not fit the run (e.g. --data names a dataset the fileset lacks)."""


# ------------------------------------------------------------------------------------------------
# which datasets are data


def data_datasets(fileset: Any, explicit: Iterable[str] = (), treename: str | None = None) -> list[str]:
    """Datasets marked as data: ``explicit`` names (``--data``) plus those whose fileset metadata says
    ``isData: true`` (or ``is_mc: false``). An explicit name the fileset lacks is an error naming it."""
    from hpckit.processor.fileset import normalize_fileset

    specs = normalize_fileset(str(fileset) if isinstance(fileset, Path) else fileset, treename)
    names = {s.dataset for s in specs}
    wanted = list(dict.fromkeys(explicit))
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise PlotError(f"--data names dataset(s) {unknown} that the fileset {fileset} lacks; it has {sorted(names)}")
    for s in specs:
        meta = s.metadata or {}
        if any(meta.get(k) is True for k in DATA_KEYS) or meta.get("is_mc") is False or meta.get("isMC") is False:
            wanted.append(s.dataset)
    return list(dict.fromkeys(wanted))


# ------------------------------------------------------------------------------------------------
# labels


_UNIT = re.compile(r"[\[(]\s*([^\[\]()]+?)\s*[\])]\s*$")


def axis_unit(label: str) -> str | None:
    """``"$m_{\\mu\\mu}$ [GeV]"`` -> ``"GeV"``; None without a trailing ``[unit]`` or ``(unit)``."""
    m = _UNIT.search(label or "")
    return m.group(1) if m else None


def storage_label(h: Any) -> str:
    """What a bin holds: counts are Events, weighted fills a Sum of weights, mean storages a Mean."""
    import boost_histogram as bh

    st = h.storage_type
    if st in (bh.storage.Weight,):
        return "Sum of weights"
    if st in (bh.storage.Mean, bh.storage.WeightedMean):
        return "Mean"
    return "Events"


def y_label(h: Any, axis: Any) -> str:
    """``Events / 5 GeV`` for equal bins with a unit in the axis label, ``Events / 0.5`` without a unit,
    ``Events / bin`` for variable bins."""
    base = storage_label(h)
    if base == "Mean":
        return base
    widths = np.diff(axis.edges)
    if len(widths) and np.allclose(widths, widths[0], rtol=1e-6):
        unit = axis_unit(axis.label)
        w = f"{widths[0]:.4g}"
        return f"{base} / {w} {unit}" if unit else f"{base} / {w}"
    return f"{base} / bin"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "hist"


# ------------------------------------------------------------------------------------------------
# drawing


def _is_category(axis: Any) -> bool:
    return axis.traits.discrete and not axis.traits.ordered


def dataset_axis(h: Any, known: Iterable[str] = ()) -> Any | None:
    """The category axis that holds datasets: the one named ``dataset``, else one whose values are
    dataset names of the run, else the only category axis."""
    cats = [a for a in h.axes if _is_category(a)]
    for a in cats:
        if a.name == "dataset":
            return a
    known = set(known)
    for a in cats:
        if known & {str(v) for v in a}:
            return a
    return cats[0] if len(cats) == 1 else None


def _values_variances(h: Any) -> tuple[np.ndarray, np.ndarray | None]:
    values = np.asarray(h.values(), dtype=float)
    var = h.variances()
    return values, None if var is None else np.asarray(var, dtype=float)


def draw(ax: Any, h: Any, data: Iterable[str] = (), name: str = "", known: Iterable[str] = ()) -> str:
    """Draw ``h`` on ``ax``; returns what was drawn ("1d", "1d-datasets", "stack", "2d"). Category axes
    other than the dataset axis are summed; a histogram with more than two dense axes is a PlotError."""
    data = set(data)
    ds_axis = dataset_axis(h, set(known) | data)
    summed = [a.name for a in h.axes if _is_category(a) and a is not ds_axis]
    dense = [a for a in h.axes if not _is_category(a)]
    if len(dense) not in (1, 2):
        raise PlotError(f"histogram {name!r} has {len(dense)} dense axes; only 1-D and 2-D are drawn")
    note = f"summed over {', '.join(summed)}" if summed else ""
    if len(dense) == 2:
        kind = _draw_2d(ax, h.project(dense[0].name, dense[1].name), dense)
        if ds_axis is not None:
            note = ", ".join(x for x in (note, f"all {ds_axis.name}s") if x)
    elif ds_axis is None:
        axis = dense[0]
        values, _ = _values_variances(h.project(axis.name))
        ax.stairs(values, axis.edges, label=name or None)
        kind = "1d"
    else:
        kind = _draw_datasets(ax, h.project(ds_axis.name, dense[0].name), ds_axis.name, dense[0], data)
    if dense and len(dense) == 1:
        ax.set_xlabel(dense[0].label)
        ax.set_ylabel(y_label(h, dense[0]))
        ax.set_xlim(dense[0].edges[0], dense[0].edges[-1])
        if kind != "1d":
            ax.legend(loc="best", fontsize="small")
    title = " - ".join(x for x in (name, note) if x)
    if title:
        ax.set_title(title, loc="right", fontsize="small")
    return kind


def _draw_2d(ax: Any, h2: Any, dense: list[Any]) -> str:
    x, y = dense
    mesh = ax.pcolormesh(x.edges, y.edges, np.asarray(h2.values(), dtype=float).T)
    cbar = ax.figure.colorbar(mesh, ax=ax)
    cbar.set_label(storage_label(h2))
    ax.set_xlabel(x.label)
    ax.set_ylabel(y.label)
    return "2d"


def _draw_datasets(ax: Any, h: Any, ds_name: str, axis: Any, data: set[str]) -> str:
    """Data (summed) as points with sqrt(N) bars over the simulation stacked and filled; without any
    data dataset every dataset is a step."""
    names = [str(v) for v in h.axes[ds_name]]
    per = {n: _values_variances(h[{ds_name: n}]) for n in names}
    edges = axis.edges
    data_names = [n for n in names if n in data]
    if not data_names:
        for n in names:
            ax.stairs(per[n][0], edges, label=n)
        return "1d-datasets"
    mc = sorted((n for n in names if n not in data), key=lambda n: per[n][0].sum())  # largest on top
    bottom = np.zeros(len(edges) - 1)
    for n in mc:
        top = bottom + per[n][0]
        ax.stairs(top, edges, baseline=bottom.copy(), fill=True, label=n, alpha=0.8)
        bottom = top
    values = sum(per[n][0] for n in data_names)
    variances = [per[n][1] for n in data_names]
    errors = np.sqrt(sum(variances) if all(v is not None for v in variances) else values)
    show = values > 0
    centers = 0.5 * (edges[1:] + edges[:-1])
    label = "Data" if len(data_names) > 1 else data_names[0]
    ax.errorbar(centers[show], values[show], yerr=errors[show], fmt="o", color="black", markersize=4,
                label=label, zorder=5)
    return "stack"


# ------------------------------------------------------------------------------------------------
# files


def iter_histograms(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(name, hist)`` for every ``hist.Hist`` in a nested output; names join the dict keys with ``-``."""
    import hist

    if isinstance(obj, hist.Hist):
        yield prefix or "hist", obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from iter_histograms(value, f"{prefix}-{key}" if prefix else str(key))


def _splits(h: Any) -> Iterator[tuple[str, Any]]:
    """One histogram per combination of category values (``--plot-split``)."""
    cats = [a for a in h.axes if _is_category(a)]
    if not cats:
        return
    for combo in itertools.product(*[[str(v) for v in a] for a in cats]):
        yield "-".join(combo), h[{a.name: v for a, v in zip(cats, combo)}]


@contextmanager
def style() -> Iterator[Any]:
    """pyplot inside the field's style (mplhep's CMS style) when mplhep is installed, else matplotlib's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        import mplhep

        sheet: Any = mplhep.style.CMS
    except ImportError:
        sheet = "default"
    with plt.style.context(sheet):
        yield plt


def figures(out: Any, data: Iterable[str] = (), split: bool = False,
            known: Iterable[str] = ()) -> Iterator[tuple[str, Any]]:
    """``(name, figure)`` for every histogram (and each category value with ``split``); the caller
    closes each figure. Histograms that cannot be drawn are skipped with a warning."""
    import warnings

    data = list(data)
    with style() as plt:
        for name, h in iter_histograms(out):
            pieces = [(name, h)] + ([(f"{name}-{tag}", sub) for tag, sub in _splits(h)] if split else [])
            for piece_name, piece in pieces:
                fig, ax = plt.subplots()
                try:
                    draw(ax, piece, data, piece_name, known)
                except PlotError as err:
                    plt.close(fig)
                    warnings.warn(f"hpckit: not plotted: {err}")
                    continue
                fig.tight_layout()
                yield piece_name, fig


def plot_histograms(out: Any, stem: Path, data: Iterable[str] = (), split: bool = False,
                    known: Iterable[str] = ()) -> list[Path]:
    """One PNG per histogram (``<stem>-<name>.png``; with ``split`` also one per category value) and one
    PDF with all of them (``<stem>-plots.pdf``). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from hpckit.paths import atomic_write, umask_mode

    stem = Path(stem)
    written: list[Path] = []
    pdf_path = stem.with_name(f"{stem.name}-plots.pdf")
    pdf_buf = io.BytesIO()
    pdf = None
    try:  # each file whole or not at all (a full disk leaves no half PNG or PDF)
        for name, fig in figures(out, data, split, known):
            try:
                path = stem.with_name(f"{stem.name}-{_safe(name)}.png")
                atomic_write(path, png_bytes(fig, dpi=100), umask_mode())
                written.append(path)
                if pdf is None:
                    pdf = PdfPages(pdf_buf)
                pdf.savefig(fig)
            finally:
                plt.close(fig)
    finally:
        if pdf is not None:
            pdf.close()
    if pdf is not None:
        atomic_write(pdf_path, pdf_buf.getvalue(), umask_mode())
        written.append(pdf_path)
    return written


def png_bytes(fig: Any, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
