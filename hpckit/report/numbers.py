"""The numbers a report shows, as JSON: ``<output stem>.results.json`` next to the output pickle.

The report never unpickles anything (a pickle runs whatever code it names, and a run directory may be
shared): at the end of a run hpckit writes every histogram of the output in the UHI JSON schema (axes
with edges or categories, names and labels, storage, values and variances: :mod:`uhi.io.json`) and every
plain number (a cutflow's counts) as nested JSON objects, and ``hpckit report`` draws from this file only.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA = "hpckit-results/1"
SUFFIX = ".results.json"
LIMIT = 256 * 1024 * 1024  # the largest results file the report reads


def metrics_path(output: str | Path) -> Path:
    """``out.pkl`` -> ``out.metrics.json``."""
    output = Path(output)
    return output.with_name(output.stem + ".metrics.json")


def results_path(output: str | Path) -> Path:
    """``out.pkl`` -> ``out.results.json``."""
    output = Path(output)
    return output.with_name(output.stem + SUFFIX)


def _numbers(obj: Any) -> Any:
    """The plain numbers of ``obj`` as nested dicts (None when it holds none)."""
    if isinstance(obj, bool):
        return None
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, Mapping):
        out = {str(k): v for k, v in ((k, _numbers(v)) for k, v in obj.items()) if v is not None}
        return out or None
    return None


def to_json(out: Any) -> bytes:
    """Every histogram (by the name the plots use) and every plain number of ``out``."""
    import uhi.io.json as uhi_json

    from hpckit.report.plots import iter_histograms

    hists = {name: h for name, h in iter_histograms(out)}
    doc = {"schema": SCHEMA, "histograms": hists, "numbers": _numbers(out) or {}}
    return json.dumps(doc, default=uhi_json.default, allow_nan=True).encode()


def from_json(data: bytes) -> tuple[dict[str, Any], dict]:
    """``({name: hist.Hist}, numbers)`` from what :func:`to_json` wrote; ValueError when it is not that."""
    import hist
    import uhi.io.json as uhi_json

    doc = json.loads(data, object_hook=uhi_json.object_hook)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"not an hpckit results file (schema {SCHEMA})")
    hists = {str(name): hist.Hist(h) for name, h in (doc.get("histograms") or {}).items()}
    numbers_ = doc.get("numbers") if isinstance(doc.get("numbers"), dict) else {}
    return hists, numbers_
