"""Two small inline SVG charts for the report (no JavaScript, no external file): the worker timeline and
a line chart over time. Every element a test or a person looks for carries a class."""

from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable, Sequence

WIDTH = 960
LEFT = 190  # room for row labels / the y axis
RIGHT = 20
ROW = 24


def _ticks(lo: float, hi: float, n: int = 8) -> list[float]:
    span = max(hi - lo, 1e-9)
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float):
        self.lo, self.hi, self.a, self.b = lo, hi if hi > lo else lo + 1.0, a, b

    def __call__(self, v: float) -> float:
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def _time_axis(x: _Scale, y: float, top: float) -> list[str]:
    out = [f'<line class="axis" x1="{x.a:.1f}" y1="{y:.1f}" x2="{x.b:.1f}" y2="{y:.1f}"/>']
    for t in _ticks(x.lo, x.hi):
        px = x(t)
        out.append(f'<line class="grid" x1="{px:.1f}" y1="{top:.1f}" x2="{px:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{px:.1f}" y="{y + 14:.1f}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text class="label" x="{(x.a + x.b) / 2:.1f}" y="{y + 30:.1f}" text-anchor="middle">'
               "seconds since the run started</text>")
    return out


def timeline(rows: Sequence[Any], t0: float, t1: float) -> str:
    """One ``<g class="worker-row">`` per row: queued (submitted -> started), alive (started -> ended),
    each chunk as a bar, and marks for submitted, started, first chunk and the end state."""
    height = 20 + ROW * max(len(rows), 1) + 40
    x = _Scale(0.0, max(t1 - t0, 1e-3), LEFT, WIDTH - RIGHT)
    bottom = 10 + ROW * max(len(rows), 1)
    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="worker timeline">']
    parts += _time_axis(x, bottom, 5)
    for i, row in enumerate(rows):
        yc = 10 + ROW * i + ROW / 2
        failed = row.failed
        parts.append(f'<g class="worker-row{" failed" if failed else ""}" data-worker="{escape(row.name)}">')
        parts.append(f'<text class="rowlabel" x="{LEFT - 8}" y="{yc + 4:.1f}" text-anchor="end">'
                     f'{escape(row.name)}</text>')
        rel = lambda t: x(t - t0)  # noqa: E731
        if row.submitted is not None and row.started is not None:
            parts.append(f'<line class="queued" x1="{rel(row.submitted):.1f}" y1="{yc:.1f}" '
                         f'x2="{rel(row.started):.1f}" y2="{yc:.1f}"><title>queued</title></line>')
        alive_end = row.ended or row.last_chunk
        if row.started is not None and alive_end is not None:
            parts.append(f'<rect class="alive" x="{rel(row.started):.1f}" y="{yc - 7:.1f}" '
                         f'width="{max(rel(alive_end) - rel(row.started), 1):.1f}" height="14"/>')
        for c in row.chunks:
            w = max(rel(c["t1"]) - rel(c["t0"]), 1.5)
            parts.append(f'<rect class="chunk" x="{rel(c["t0"]):.1f}" y="{yc - 5:.1f}" width="{w:.1f}" height="10">'
                         f'<title>{escape(str(c.get("dataset")))} {c.get("start")}-{c.get("stop")}: '
                         f'{c["t1"] - c["t0"]:.2f} s, {c.get("events")} events</title></rect>')
        marks = (("submitted", row.submitted, "mark-submitted"), ("started", row.started, "mark-started"),
                 ("first chunk", row.first_chunk, "mark-first"))
        for what, t, cls in marks:
            if t is not None:
                parts.append(f'<circle class="{cls}" cx="{rel(t):.1f}" cy="{yc:.1f}" r="4">'
                             f'<title>{what} at {t - t0:.1f} s</title></circle>')
        if row.ended is not None:
            px = rel(row.ended)
            parts.append(f'<path class="mark-end{" failed" if failed else ""}" d="M{px - 4:.1f},{yc - 4:.1f} '
                         f'l8,8 m0,-8 l-8,8"><title>{escape(str(row.end_state))} at {row.ended - t0:.1f} s'
                         f'</title></path>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: Iterable[tuple[str, Sequence[tuple[float, float]]]], y_label: str, css_class: str,
               step: bool = False, x_max: float | None = None) -> str:
    """A chart of ``(x seconds, y)`` points per named series on a shared time axis."""
    series = [(name, list(points)) for name, points in series]
    xs = [p[0] for _, pts in series for p in pts] or [0.0, 1.0]
    ys = [p[1] for _, pts in series for p in pts] or [0.0, 1.0]
    height = 240
    x = _Scale(0.0, max(max(xs), x_max or 0.0, 1e-3), LEFT, WIDTH - RIGHT)
    y = _Scale(0.0, max(max(ys) * 1.08, 1e-9), height - 50, 10)
    parts = [f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(y_label)}">']
    parts += _time_axis(x, y.a, y.b)
    parts.append(f'<line class="axis" x1="{LEFT}" y1="{y.a:.1f}" x2="{LEFT}" y2="{y.b:.1f}"/>')
    for v in _ticks(0.0, y.hi, 5):
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y(v):.1f}" x2="{WIDTH - RIGHT}" y2="{y(v):.1f}"/>')
    parts.append(f'<text class="label" x="14" y="{(y.a + y.b) / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(y.a + y.b) / 2:.1f})">{escape(y_label)}</text>')
    for k, (name, pts) in enumerate(series):
        if not pts:
            continue
        coords = []
        for i, (px, py) in enumerate(pts):
            if step and i:
                coords.append(f"{x(px):.1f},{y(pts[i - 1][1]):.1f}")
            coords.append(f"{x(px):.1f},{y(py):.1f}")
        parts.append(f'<polyline class="series s{k}" fill="none" points="{" ".join(coords)}">'
                     f'<title>{escape(name)}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)
