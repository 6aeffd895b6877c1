"""Write a run's results: the output pickle, a metrics JSON next to it, and a PNG per histogram."""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a private temporary file next to ``path``, then rename: a reader sees the old file or the
    whole new one; on any error (a full disk, a signal) the temporary file is removed. The file ends with
    the user's normal permissions (umask); privacy comes from the 0700 run directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def metrics_path(output: Path) -> Path:
    return output.with_name(output.stem + ".metrics.json")


def write_results(output: str | Path, out: Any, metrics: dict, plots: bool = True) -> list[Path]:
    """Write everything and return the paths written."""
    output = Path(output)
    written = [output, metrics_path(output)]
    _atomic_write(output, pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    _atomic_write(written[1], json.dumps(metrics, indent=2, default=_jsonable).encode())
    if plots:
        written += plot_histograms(out, output.with_name(output.stem))
    return written


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def iter_histograms(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    import hist

    if isinstance(obj, hist.Hist):
        yield prefix or "hist", obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from iter_histograms(value, f"{prefix}-{key}" if prefix else str(key))


def plot_histograms(out: Any, stem: Path) -> list[Path]:
    """One PNG per histogram: 1D drawn directly, a category axis overlaid, 2D as a colour map."""
    hists = list(iter_histograms(out))
    if not hists:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        import mplhep

        plt.style.use(mplhep.style.CMS)
    except ImportError:
        pass
    written = []
    for name, h in hists:
        fig, ax = plt.subplots()
        try:
            _draw(ax, h)
            ax.set_title(name)
            path = stem.with_name(f"{stem.name}-{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.png")
            fig.savefig(path, dpi=100)
            written.append(path)
        finally:
            plt.close(fig)
    return written


def _draw(ax: Any, h: Any) -> None:
    """Plain matplotlib (mplhep only for the style): one category axis is overlaid, 2D is a colour map."""
    cats = [a for a in h.axes if a.traits.discrete and not a.traits.ordered]
    dense = [a for a in h.axes if a not in cats]
    if len(dense) == 2 and not cats:
        x, y = dense
        mesh = ax.pcolormesh(x.edges, y.edges, h.values().T)
        ax.figure.colorbar(mesh, ax=ax)
        ax.set_xlabel(x.label)
        ax.set_ylabel(y.label)
        return
    axis = dense[0]
    if len(cats) == 1 and len(dense) == 1:
        for i, cat in enumerate(cats[0]):
            ax.stairs(h[{cats[0].name: i}].values(), axis.edges, label=str(cat))
        ax.legend()
    else:
        ax.stairs(h.project(axis.name).values(), axis.edges)
    ax.set_xlabel(axis.label)
    ax.set_ylabel("entries")
