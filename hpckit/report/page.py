"""The run report: one self-contained HTML page (inline CSS, SVG charts, PNG plots as data: URIs; no
script, no network) built from a :class:`RunData`."""

from __future__ import annotations

import base64
import datetime as dt
from html import escape
from pathlib import Path
from typing import Any

from hpckit.io.paths import atomic_write, umask_mode
from hpckit.report import svg
from hpckit.report.rundata import RunData

SECTIONS = {  # id -> heading, in page order
    "what-ran": "What ran",
    "workers": "Workers",
    "chunks": "Chunks done over time",
    "throughput": "Events per second",
    "per-worker": "Per worker",
    "io": "Bytes read, retries, skipped files",
    "failures": "Failures",
    "worker-logs": "Worker logs",
    "cutflow": "Cutflow",
    "histograms": "Histograms",
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;
 background:#f6f7f9}
main{max-width:1000px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:8px 0 4px} h2{font-size:17px;margin:0 0 10px;color:#263047}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:14px 16px;margin:14px 0}
.status{padding:10px 14px;border-radius:6px;font-weight:600;margin:10px 0}
.status-finished{background:#e5f5ea;color:#1b5e20;border:1px solid #a5d6a7}
.status-failed{background:#fdecea;color:#8e1b10;border:1px solid #f5b5ad}
.status-killed{background:#fff4e0;color:#7a4a00;border:1px solid #f3c77b}
.status-running{background:#e8f0fe;color:#1a3e8c;border:1px solid #a8c2f5}
table{border-collapse:collapse;font-size:13px;width:100%} td,th{padding:3px 8px;text-align:left;
 border-bottom:1px solid #eceef2;vertical-align:top} th{color:#4a5568;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:190px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f3f4f6;padding:8px;border-radius:4px;white-space:pre-wrap;word-break:break-word;margin:4px 0}
.muted{color:#6b7280} .legend span{margin-right:14px;font-size:12px}
.sw{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle;border-radius:2px}
svg text{font-size:11px;fill:#374151} svg .label{font-size:12px;fill:#4b5563}
svg .axis{stroke:#6b7280;stroke-width:1} svg .grid{stroke:#eef0f3;stroke-width:1}
svg .queued{stroke:#9ca3af;stroke-width:2;stroke-dasharray:4 3} svg .alive{fill:#dbe7fb}
svg .chunk{fill:#2f6fd6;opacity:.85} svg .mark-submitted{fill:#fff;stroke:#6b7280;stroke-width:1.5}
svg .mark-started{fill:#7aa7ef} svg .mark-first{fill:#16a34a} svg .mark-end{stroke:#6b7280;stroke-width:2}
svg .mark-end.failed{stroke:#dc2626} svg .worker-row.failed .rowlabel{fill:#b91c1c;font-weight:600}
svg .series{stroke:#2f6fd6;stroke-width:2} svg .series.s1{stroke:#d97706}
.plots{display:flex;flex-wrap:wrap;gap:12px} .plots figure{margin:0;flex:1 1 440px;max-width:470px}
.plots img{width:100%;height:auto;border:1px solid #eceef2} figcaption{font-size:12px;color:#4b5563}
ul.failures li{margin-bottom:8px}
"""


def _clock(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1000
    return str(n)


def _kv(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows if v not in (None, ""))
    return f'<table class="kv">{body}</table>'


def _table(head: list[str], rows: list[list[Any]], num: set[int] = frozenset()) -> str:
    th = "".join(f'<th class="{"num" if i in num else ""}">{escape(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"num" if i in num else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _section(sid: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{escape(SECTIONS[sid])}</h2>{body}</section>'


# ------------------------------------------------------------------------------------------------


def _what_ran(run: RunData) -> str:
    launch = run.launch
    info = {**{k: launch[k] for k in ("analysis", "fileset", "chunksize", "workers") if k in launch}, **run.info}
    planned = run.event("planned") or {}
    metrics = run.metrics or {}
    datasets = info.get("datasets") or {}
    ds_rows = [[escape(n), d.get("files", "?"), "data" if d.get("data") else "simulation"]
               for n, d in datasets.items()]
    fileset = escape(str(info.get("fileset", "-")))
    if ds_rows:
        nfiles = sum(int(d.get("files", 0)) for d in datasets.values())
        fileset += f" <span class='muted'>({len(ds_rows)} datasets, {nfiles} files)</span>"
    command = launch.get("command", {}).get("argv") or info.get("argv")
    duration = run.t_end - run.t_origin if run.t_origin else None
    chunks_total = planned.get("chunks") or metrics.get("chunks")
    chunks_done = len(run.unique_chunks) + int(planned.get("from_checkpoint", 0))
    again = len(run.chunks) - len(run.unique_chunks)
    rows = [
        ("Analysis", f"<code>{escape(str(info.get('analysis', '-')))}</code>"
                     + (f" ({escape(info['processor'])})" if info.get("processor") else "")),
        ("Fileset", fileset),
        ("Site", escape(str(launch.get("site", "this machine (hpckit run)")))),
        ("Backend", escape(str(launch.get("backend") or info.get("executor", "-")))
         + (f" <span class='muted'>(mode {escape(str(launch['mode']))})</span>" if launch.get("mode") else "")),
        ("Workers", escape(str(info.get("workers", "-"))) + (f", {len(run.job_ids)} batch job(s)" if run.job_ids else "")),
        ("Chunk size", escape(str(info.get("chunksize", "-")))),
        ("Lock hash", f"<code>{escape(launch['lock_hash'])}</code>" if launch.get("lock_hash")
         else "<span class='muted'>not recorded (the run checked no worker's environment)</span>"),
        ("Run directory", f"<code>{escape(str(run.run_dir))}</code>"),
        ("Command", f"<code>{escape(' '.join(map(str, command)))}</code>" if command else None),
        ("Started", _clock(run.t_origin)),
        ("Duration", f"{duration:.1f} s" if duration is not None else None),
        ("Chunks", (f"{chunks_done} of {chunks_total} done" if chunks_total else f"{chunks_done} done")
         + (f" ({planned['from_checkpoint']} from the checkpoint)" if planned.get("from_checkpoint") else "")
         + (f"; {again} run again by the engine (counted once)" if again else "")),
        ("Events", f"{run.events_done:,}" + (f" of {planned['events']:,}" if planned.get("events") else "")),
    ]
    body = _kv(rows)
    if ds_rows:
        body += "<h3 style='font-size:14px;margin:12px 0 4px'>Datasets</h3>" + _table(
            ["dataset", "files", "drawn as"], ds_rows, {1})
    return _section("what-ran", body)


def _workers(run: RunData, rows: list) -> str:
    if not rows:
        return _section("workers", "<p class='muted'>No worker recorded a chunk and no batch job was submitted.</p>")
    legend = ("<div class='legend'><span><span class='sw' style='background:#9ca3af'></span>queued</span>"
              "<span><span class='sw' style='background:#dbe7fb'></span>alive</span>"
              "<span><span class='sw' style='background:#2f6fd6'></span>chunk</span>"
              "<span>&#9675; submitted</span><span style='color:#7aa7ef'>&#9679; started</span>"
              "<span style='color:#16a34a'>&#9679; first chunk</span><span>&#10005; ended "
              "(<span style='color:#dc2626'>red: failed</span>)</span></div>")
    what = "batch job" if run.job_ids else "worker process"
    return _section("workers", f"<p class='muted'>One row per {what} ({len(rows)}).</p>"
                    + svg.timeline(rows, run.t_origin, run.t_end) + legend)


def _chunks_over_time(run: RunData) -> str:
    ends = sorted(c["t1"] - run.t_origin for c in run.chunks)
    if not ends:
        return _section("chunks", "<p class='muted'>No chunk finished.</p>")
    pts = [(0.0, 0)] + [(t, i + 1) for i, t in enumerate(ends)]
    return _section("chunks", svg.line_chart([("chunks done", pts)], "chunks done", "chunks-chart", step=True,
                                                x_max=run.t_end - run.t_origin))


def rate_series(chunks: list[dict], t0: float, bins: int = 40) -> list[tuple[float, float]]:
    """Events/s in ``bins`` equal time bins; each chunk's events are spread evenly over its duration."""
    if not chunks:
        return []
    lo = min(c["t0"] for c in chunks) - t0
    hi = max(c["t1"] for c in chunks) - t0
    width = max((hi - lo) / bins, 1e-3)
    rate = [0.0] * bins
    for c in chunks:
        a, b = c["t0"] - t0, c["t1"] - t0
        dur = max(b - a, 1e-9)
        for i in range(max(int((a - lo) / width), 0), min(int((b - lo) / width) + 1, bins)):
            overlap = min(b, lo + (i + 1) * width) - max(a, lo + i * width)
            if overlap > 0:
                rate[i] += c.get("events", 0) * overlap / dur / width
    return [(lo + (i + 0.5) * width, r) for i, r in enumerate(rate)]


def _throughput(run: RunData) -> str:
    pts = rate_series(run.chunks, run.t_origin)
    if not pts:
        return _section("throughput", "<p class='muted'>No chunk finished.</p>")
    busy = sum(c["t1"] - c["t0"] for c in run.chunks)
    span = max(c["t1"] for c in run.chunks) - min(c["t0"] for c in run.chunks)
    note = (f"<p class='muted'>{run.events_done:,} events; {run.events_done / span if span > 0 else 0:,.0f} events/s "
            f"from the first chunk's start to the last chunk's end; {busy:.2f} s of chunk time in all.</p>")
    return _section("throughput", svg.line_chart([("events/s", pts)], "events / s", "rate-chart", x_max=run.t_end - run.t_origin) + note)


def _per_worker(run: RunData, rows: list) -> str:
    if not rows:
        return _section("per-worker", "<p class='muted'>No worker.</p>")
    table = []
    for r in rows:
        rel = lambda t: f"{t - run.t_origin:.1f}" if t is not None else "-"  # noqa: E731
        table.append([escape(r.name), escape(", ".join(sorted(r.processes))) or "-", len(r.chunks), f"{r.events:,}",
                      f"{r.busy:.2f}", _bytes(r.bytes), rel(r.submitted), rel(r.started), rel(r.first_chunk),
                      rel(r.ended or r.last_chunk), escape(r.end_state or ("-" if r.ended else ""))])
    return _section("per-worker", _table(
        ["worker", "processes", "chunks", "events", "chunk time [s]", "bytes read", "submitted [s]",
         "started [s]", "first chunk [s]", "ended [s]", "end state"], table, {2, 3, 4, 5, 6, 7, 8, 9}))


def _io(run: RunData) -> str:
    skipped = run.all_skipped()
    rows = [("Bytes read", _bytes(run.bytes_read)), ("Retries", str(run.retries)),
            ("Skipped files", str(len(skipped)))]
    if run.metrics and run.metrics.get("columns"):
        rows.append(("Columns read", escape(", ".join(run.metrics["columns"]))))
    body = _kv(rows)
    if skipped:
        body += _table(["file", "chunk", "error"], [[f"<code>{escape(str(s.get('file')))}</code>",
                                                     escape(str(s.get("chunk") or "whole file")),
                                                     f"<pre>{escape(str(s.get('error')))}</pre>"] for s in skipped])
    return _section("io", body)


def _tail(path: str | None, n: int = 15) -> str:
    if not path:
        return ""
    try:
        with open(path, errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _failures(run: RunData, rows: list) -> str:
    items = []
    error = run.launch.get("error") or run.info.get("error")
    if error:
        items.append(("run", error))
    for e in run.run_events:
        if e.get("event") == "error" and e.get("error") != error:
            items.append(("runner", e.get("error")))
    for f in run.failures:
        items.append((f"{f.get('chunk')} on {f.get('worker')}", f.get("error")))
    last_state = {}
    for s in run.job_states:
        last_state[s["job"]] = s
    for r in rows:
        if r.failed:
            s = next((x for x in run.job_states if r.name == f"job {x['job']}" and x["state"] == r.end_state), {})
            msg = f"{r.end_state}" + (f" (exit {s.get('exit_code')})" if s.get("exit_code") else "")
            if s.get("note"):  # the job's own line (a site whose logs stay on the nodes)
                msg += f"\nthe job says: {s['note']}"
            tail = _tail(s.get("stderr"))
            items.append((r.name, msg + (f"\n--- stderr tail ---\n{tail}" if tail else "")))
    if run.bad_lines:
        items.append(("chunks.jsonl", f"{run.bad_lines} line(s) cut short (written while the run was killed)"))
    if not items:
        return _section("failures", "<p>None.</p>")
    lis = "".join(f"<li><b>{escape(str(w))}</b><pre>{escape(str(m))}</pre></li>" for w, m in items)
    return _section("failures", f'<ul class="failures">{lis}</ul>')


def _worker_logs(run: RunData, shown: int = 50) -> str:
    """What the workers logged at WARNING and above while they ran chunks (also where their batch logs stay
    on the nodes): the first ``shown`` lines, then how many more."""
    if not run.logs:
        return _section("worker-logs", "<p>No warning or error logged by a worker while it ran chunks.</p>")
    logs = sorted(run.logs, key=lambda r: r.get("t") or 0)
    t0 = run.t_origin or (logs[0].get("t") or 0)
    lines = [f"+{(r.get('t') or t0) - t0:7.1f} s  {r.get('worker')}  {r.get('level')}  {r.get('logger')}: "
             f"{r.get('message')}" for r in logs[:shown]]
    more = f"<p class='muted'>{len(logs) - shown} more line(s) in chunks.jsonl.</p>" if len(logs) > shown else ""
    return _section("worker-logs", f"<pre>{escape(chr(10).join(lines))}</pre>{more}")


def _histograms(run: RunData, plots: bool = True) -> str:
    if not plots:
        return _section("histograms", "<p class='muted'>Not drawn (the run had --no-plots); "
                        f"<code>hpckit report {escape(str(run.run_dir))}</code> draws them.</p>")
    if run.histograms is None:
        why = ("the run did not finish, so there is no output" if run.status[0] != "finished"
               else run.results_note or "the run named no output")
        return _section("histograms", f"<p class='muted'>No histograms: {escape(why)}.</p>")
    import matplotlib.pyplot as plt

    from hpckit.report.plots import figures, png_bytes

    info = run.info
    figs = []
    for name, fig in figures(run.histograms, info.get("data", []), bool(info.get("plot_split")),
                             known=(info.get("datasets") or {}).keys(), nominal=info.get("nominal"),
                             band=bool(info.get("band"))):
        try:
            png = base64.b64encode(png_bytes(fig)).decode()
        finally:
            plt.close(fig)
        figs.append(f'<figure><img alt="{escape(name)}" src="data:image/png;base64,{png}">'
                    f"<figcaption>{escape(name)}</figcaption></figure>")
    if not figs:
        return _section("histograms", "<p class='muted'>The output holds no histogram.</p>")
    return _section("histograms", f'<div class="plots">{"".join(figs)}</div>')


def _cutflows(run: RunData) -> str:
    """The run's cutflows (hpckit.report.cutflow): from its metrics file, else found in its output."""
    from hpckit.report.cutflow import find_cutflows

    tables = (run.metrics or {}).get("cutflow")
    if tables is None and run.numbers:
        tables = find_cutflows(run.numbers)
    if not tables:
        return _section("cutflow", "<p class='muted'>The output holds no cutflow.</p>")
    from hpckit.report.cutflow import cell

    parts = []
    for t in tables:
        rows = [[escape(str(label)), *(escape(cell(v)) for v in values)] for label, values in t["rows"]]
        parts.append(f"<h3>{escape(str(t['name']))}</h3>"
                     + _table(["cut", *map(str, t["columns"])], rows, set(range(1, len(t["columns"]) + 1))))
    return _section("cutflow", "".join(parts))


def render(run: RunData, plots: bool = True) -> str:
    """The whole page as a string."""
    state, sentence = run.status
    rows = run.workers()
    title = f"hpckit report: {Path(str(run.info.get('analysis') or run.launch.get('analysis') or run.run_dir)).name}"
    first, _, rest = sentence.partition("\n")
    if rest:
        first += " (more under Failures)"
    body = "".join([
        _what_ran(run), _workers(run, rows), _chunks_over_time(run), _throughput(run), _per_worker(run, rows),
        _io(run), _failures(run, rows), _worker_logs(run), _cutflows(run), _histograms(run, plots),
    ])
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
            f"<body><main><h1>{escape(title)}</h1>"
            f"<div class='status status-{state}' id='status' data-status='{state}'>{escape(first)}</div>"
            f"{body}<p class='muted'>Written {_clock(dt.datetime.now().timestamp())} by hpckit from the files in "
            f"<code>{escape(str(run.run_dir))}</code>; regenerate with <code>hpckit report "
            f"{escape(str(run.run_dir))}</code>.</p></main></body></html>\n")


def write(run: RunData, path: Path | None = None, plots: bool = True) -> Path:
    path = Path(path) if path else run.run_dir / "report.html"
    atomic_write(path, render(run, plots).encode("utf-8"), umask_mode())  # nothing half-written is left
    return path
