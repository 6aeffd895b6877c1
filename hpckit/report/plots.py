"""Histograms drawn the way a HEP plot is read: data as points with Poisson error bars over stacked,
filled simulation; y axis "Events / 5 GeV" (or "Sum of weights / ..." for weighted fills); 2-D with a
labelled colour bar. mplhep supplies the style when installed (``pip install 'hpckit[plot]'``); without
it the same artists are drawn in matplotlib's plain style.

Error bars on data are sqrt(N) (sqrt of the summed squared weights for Weight storage): symmetric,
what the test checks, and within a few per cent of the Garwood interval once N exceeds ~20; bins with
no data entry get no marker.

Category axes are never summed over behind the reader's back (docs/physics.md):

* the dataset axis stacks simulation under data;
* a variation axis (named ``syst``, ``systematic``, ``variation``, ``shift``, ... see ``VARIATION_AXES``) is
  drawn at its nominal only: the value ``nominal=`` names (``--nominal``), else its bin called
  ``nominal``; with ``band=True`` the envelope of all its values (lowest to highest, per bin) is a
  shaded band around the nominal;
* any other category axis is a PlotError naming it, unless ``split`` draws one plot per category.
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

from hpckit.core.errors import HpckitError

DATA_KEYS = ("isData", "is_data")  # fileset metadata marking a dataset as data; is_mc/isMC false also does
# names (any case) of a category axis holding systematic variations: drawn at its nominal, never summed
VARIATION_AXES = frozenset({"syst", "systs", "systematic", "systematics", "variation", "variations", "shift",
                            "shifts", "unc", "uncertainty", "uncertainties"})
NOMINAL = "nominal"  # the bin drawn when no --nominal is given


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


def variation_axis(h: Any) -> Any | None:
    """The category axis holding systematic variations (its name is one of ``VARIATION_AXES``), if any."""
    found = [a for a in h.axes if _is_category(a) and str(a.name).lower() in VARIATION_AXES]
    if len(found) > 1:
        raise PlotError(f"histogram has two variation axes ({', '.join(a.name for a in found)}); "
                        "draw one at a time (select a value of the other in the output first)")
    return found[0] if found else None


def nominal_value(axis: Any, nominal: str | None = None, name: str = "") -> Any:
    """The value of variation ``axis`` to draw: ``nominal`` (``--nominal``), else the bin called "nominal"."""
    values = list(axis)
    wanted = nominal if nominal is not None else NOMINAL
    for v in values:
        if str(v) == str(wanted) or (nominal is None and str(v).lower() == NOMINAL):
            return v
    shown = ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")
    how = f"--nominal {nominal!r} is not one of them" if nominal is not None else \
        "none is called 'nominal': name the one to draw with --nominal NAME"
    raise PlotError(f"histogram {name!r} has the variation axis {axis.name!r} ({shown}); {how}")


def dataset_axis(h: Any, known: Iterable[str] = ()) -> Any | None:
    """The category axis that holds datasets: the one named ``dataset``, else one whose values are
    dataset names of the run, else the only category axis (a variation axis never is)."""
    var = variation_axis(h)
    cats = [a for a in h.axes if _is_category(a) and a is not var]
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


def draw(ax: Any, h: Any, data: Iterable[str] = (), name: str = "", known: Iterable[str] = (),
         nominal: str | None = None, band: bool = False) -> str:
    """Draw ``h`` on ``ax``; returns what was drawn ("1d", "1d-datasets", "stack", "2d"). A variation axis
    is drawn at its nominal (``band``: with the envelope of its values as a band); any other category axis
    but the dataset axis is a PlotError naming it, as is a histogram with more than two dense axes."""
    data = set(data)
    var = variation_axis(h)
    ds_axis = dataset_axis(h, set(known) | data)
    for a in h.axes:
        if _is_category(a) and a is not ds_axis and a is not var:
            shown = ", ".join(map(str, list(a)[:8])) + (", ..." if len(a) > 8 else "")
            raise PlotError(f"histogram {name!r} has the category axis {a.name!r} ({shown}): one plot would add "
                            f"its categories together; use --plot-split for one plot per {a.name}")
    dense = [a for a in h.axes if not _is_category(a)]
    if len(dense) not in (1, 2):
        raise PlotError(f"histogram {name!r} has {len(dense)} dense axes; only 1-D and 2-D are drawn")
    note = ""
    variations: list[Any] = []
    if var is not None:
        import hist

        nom = nominal_value(var, nominal, name)
        if band:
            variations = [h[{var.name: hist.loc(v)}] for v in var]
        h = h[{var.name: hist.loc(nom)}]
        note = f"{var.name}: {nom}" + (f", band: envelope of {len(var)}" if band and len(dense) == 1 else "")
    if len(dense) == 2:
        kind = _draw_2d(ax, h.project(dense[0].name, dense[1].name), dense)
        if ds_axis is not None:
            note = ", ".join(x for x in (note, f"all {ds_axis.name}s") if x)
    elif ds_axis is None:
        axis = dense[0]
        values, _ = _values_variances(h.project(axis.name))
        step = ax.stairs(values, axis.edges, label=name or None)
        if variations:
            _band(ax, values, [_values_variances(v.project(axis.name))[0] for v in variations], axis.edges,
                  step.get_edgecolor(), f"{var.name} envelope")
        kind = "1d"
    else:
        others = [v.project(ds_axis.name, dense[0].name) for v in variations]
        kind = _draw_datasets(ax, h.project(ds_axis.name, dense[0].name), ds_axis.name, dense[0], data, others,
                              var.name if var is not None else "")
    if dense and len(dense) == 1:
        ax.set_xlabel(dense[0].label)
        ax.set_ylabel(y_label(h, dense[0]))
        ax.set_xlim(dense[0].edges[0], dense[0].edges[-1])
        if kind != "1d" or variations:
            ax.legend(loc="best", fontsize="small")
    title = " - ".join(x for x in (name, note) if x)
    if title:
        ax.set_title(title, loc="right", fontsize="small")
    return kind


def envelope(nominal: np.ndarray, variations: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per bin, the lowest and the highest of the nominal and every variation."""
    stack = np.vstack([nominal, *variations])
    return stack.min(axis=0), stack.max(axis=0)


def _band(ax: Any, nominal: np.ndarray, variations: list[np.ndarray], edges: np.ndarray, color: Any,
          label: str) -> Any:
    """The envelope as a hatched, shaded band (a StepPatch from the low edge to the high edge, gid
    ``hpckit-band``, so the numbers can be read back)."""
    lo, hi = envelope(nominal, variations)
    patch = ax.stairs(hi, edges, baseline=lo, fill=True, alpha=0.3, hatch="///", color=color, label=label)
    patch.set_gid("hpckit-band")
    return patch


def _draw_2d(ax: Any, h2: Any, dense: list[Any]) -> str:
    x, y = dense
    mesh = ax.pcolormesh(x.edges, y.edges, np.asarray(h2.values(), dtype=float).T)
    cbar = ax.figure.colorbar(mesh, ax=ax)
    cbar.set_label(storage_label(h2))
    ax.set_xlabel(x.label)
    ax.set_ylabel(y.label)
    return "2d"


def _draw_datasets(ax: Any, h: Any, ds_name: str, axis: Any, data: set[str], variations: list[Any] = (),
                   var_name: str = "") -> str:
    """Data (summed) as points with sqrt(N) bars over the simulation stacked and filled; without any
    data dataset every dataset is a step. ``variations``: the same histogram at every variation, drawn
    as the envelope around each step, or around the top of the stack."""
    import hist

    by_name = {str(v): hist.loc(v) for v in h.axes[ds_name]}
    names = list(by_name)
    per = {n: _values_variances(h[{ds_name: by_name[n]}]) for n in names}
    varied = {n: [np.asarray(v[{ds_name: by_name[n]}].values(), dtype=float) for v in variations] for n in names}
    edges = axis.edges
    data_names = [n for n in names if n in data]
    if not data_names:
        for n in names:
            step = ax.stairs(per[n][0], edges, label=n)
            if variations:
                _band(ax, per[n][0], varied[n], edges, step.get_edgecolor(), f"{n} {var_name} envelope")
        return "1d-datasets"
    mc = sorted((n for n in names if n not in data), key=lambda n: per[n][0].sum())  # largest on top
    bottom = np.zeros(len(edges) - 1)
    for n in mc:
        top = bottom + per[n][0]
        ax.stairs(top, edges, baseline=bottom.copy(), fill=True, label=n, alpha=0.8)
        bottom = top
    if variations and mc:
        totals = [sum(varied[n][i] for n in mc) for i in range(len(variations))]
        _band(ax, bottom, totals, edges, "grey", f"simulation {var_name} envelope")
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


def _splits(h: Any, known: Iterable[str] = ()) -> Iterator[tuple[str, Any]]:
    """One histogram per combination of category values (``--plot-split``): of the axes that are neither
    datasets nor variations when there are such (each plot keeps its stack), else of the dataset axis;
    a variation axis is never split (each plot draws its nominal)."""
    import hist

    cats = [a for a in h.axes if _is_category(a)]
    try:
        var = variation_axis(h)
        keep = {id(dataset_axis(h, known)), id(var)}
    except PlotError:
        var, keep = None, set()
    axes = [a for a in cats if id(a) not in keep] or [a for a in cats if a is not var]
    if not axes:
        return
    for combo in itertools.product(*[list(a) for a in axes]):
        yield "-".join(map(str, combo)), h[{a.name: hist.loc(v) for a, v in zip(axes, combo)}]


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


def figures(out: Any, data: Iterable[str] = (), split: bool = False, known: Iterable[str] = (),
            nominal: str | None = None, band: bool = False) -> Iterator[tuple[str, Any]]:
    """``(name, figure)`` for every histogram (and each category value with ``split``); the caller
    closes each figure. Histograms that cannot be drawn are skipped with a warning that says why."""
    import warnings

    data = list(data)
    known = set(known) | set(data)
    with style() as plt:
        for name, h in iter_histograms(out):
            pieces = [(name, h)] + ([(f"{name}-{tag}", sub) for tag, sub in _splits(h, known)] if split else [])
            for piece_name, piece in pieces:
                if split and piece is h and _needs_split(h, known):
                    continue  # the per-category plots stand for it
                fig, ax = plt.subplots()
                try:
                    draw(ax, piece, data, piece_name, known, nominal, band)
                except PlotError as err:
                    plt.close(fig)
                    warnings.warn(f"hpckit: not plotted: {err}")
                    continue
                fig.tight_layout()
                yield piece_name, fig


def _needs_split(h: Any, known: Iterable[str]) -> bool:
    try:
        keep = {id(dataset_axis(h, known)), id(variation_axis(h))}
    except PlotError:
        return False
    return any(_is_category(a) and id(a) not in keep for a in h.axes)


def plot_histograms(out: Any, stem: Path, data: Iterable[str] = (), split: bool = False,
                    known: Iterable[str] = (), nominal: str | None = None, band: bool = False) -> list[Path]:
    """One PNG per histogram (``<stem>-<name>.png``; with ``split`` also one per category value) and one
    PDF with all of them (``<stem>-plots.pdf``). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from hpckit.io.paths import atomic_write, umask_mode

    stem = Path(stem)
    written: list[Path] = []
    pdf_path = stem.with_name(f"{stem.name}-plots.pdf")
    pdf_buf = io.BytesIO()
    pdf = None
    try:  # each file whole or not at all (a full disk leaves no half PNG or PDF)
        for name, fig in figures(out, data, split, known, nominal, band):
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
