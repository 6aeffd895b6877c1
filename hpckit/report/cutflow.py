"""Cutflows found in a run's output, as tables: printed at the end of a run and shown in report.html.

What counts as a cutflow (anywhere in the nested output dict):

* a value under a key containing ``cutflow`` (any case) that maps cut names to numbers, or dataset names
  to such mappings (one column per dataset), e.g. ``{"cutflow": {"DY": {"all": 40, "2 muons": 12}}}``;
* a ``PackedSelection.cutflow(...)`` object (hpckit's or coffea's) or its ``.result()``: a row per cut with
  the events passing it alone and all cuts so far.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Number
from typing import Any


def cutflow_table(name: str, columns: list[str], rows: list[tuple[str, list[Any]]]) -> dict:
    """A cutflow as plain JSON (it goes into the metrics file): name, column names, ``[cut, [values]]`` rows."""
    return {"name": name, "columns": list(columns), "rows": [[str(label), list(values)] for label, values in rows]}


def _number(x: Any) -> bool:
    return isinstance(x, Number) and not isinstance(x, bool) or type(x).__module__ == "numpy" and hasattr(x, "item")


def _from_object(name: str, obj: Any) -> dict | None:
    """A Cutflow object or its CutflowResult (labels, nevonecut, nevcutflow, ...)."""
    result = obj.result() if callable(getattr(obj, "result", None)) and hasattr(obj, "labels") else obj
    labels = getattr(result, "labels", None)
    onecut, flow = getattr(result, "nevonecut", None), getattr(result, "nevcutflow", None)
    if labels is None or onecut is None or flow is None or not isinstance(labels, (list, tuple)):
        return None
    rows = [(str(label), [_plain(a), _plain(b)]) for label, a, b in zip(labels, onecut, flow)]
    return cutflow_table(name, ["this cut alone", "all cuts so far"], rows)


def _plain(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def _from_mapping(name: str, value: Mapping) -> dict | None:
    if value and all(_number(v) for v in value.values()):
        return cutflow_table(name, ["events"], [(str(k), [_plain(v)]) for k, v in value.items()])
    if value and all(isinstance(v, Mapping) and all(_number(x) for x in v.values()) for v in value.values()):
        columns = [str(k) for k in value]
        cuts = list(dict.fromkeys(c for v in value.values() for c in v))
        rows = [(str(c), [_plain(v.get(c, "")) for v in value.values()]) for c in cuts]
        return cutflow_table(name, columns, rows)
    return None


def find_cutflows(out: Any, prefix: str = "", depth: int = 0) -> list[dict]:
    """Every cutflow in ``out`` (see the module docstring), in the output's order."""
    found: list[dict] = []
    if not isinstance(out, Mapping) or depth > 6:
        return found
    for key, value in out.items():
        name = f"{prefix}-{key}" if prefix else str(key)
        table = None
        if "cutflow" in str(key).lower():
            table = _from_mapping(name, value) if isinstance(value, Mapping) else None
        if table is None and not isinstance(value, Mapping):
            table = _from_object(name, value)
        if table is not None:
            found.append(table)
        elif isinstance(value, Mapping):
            found.extend(find_cutflows(value, name, depth + 1))
    return found


def cell(x: Any) -> str:
    """A count as printed: integers without a decimal point, sums of weights to 6 digits."""
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.6g}"
    return f"{int(x)}" if isinstance(x, float) else str(x)


def format_cutflows(tables: list[dict]) -> str:
    """Aligned plain-text tables, one per cutflow (empty string when there is none)."""
    blocks = []
    for t in tables:
        cells = [[label, *map(cell, values)] for label, values in t["rows"]]
        head = ["cut", *t["columns"]]
        widths = [max(len(r[i]) for r in [head, *cells]) for i in range(len(head))]
        lines = [f"cutflow {t['name']}:"]
        for r in [head, *cells]:
            lines.append("  " + r[0].ljust(widths[0]) + "".join("  " + c.rjust(w) for c, w in zip(r[1:], widths[1:])))
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
