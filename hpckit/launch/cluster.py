"""``hpckit.cluster(...)``: a site's workers for as long as a notebook or script needs them.

::

    with hpckit.cluster("perlmutter", backend="dask", workers=20) as executor:
        out = processor.Runner(executor=executor)(fileset, processor_instance=MyProcessor())
        out = processor.Runner(executor=executor)(fileset, processor_instance=MyProcessor())  # same workers

Without ``with``: ``c = hpckit.cluster(...)``, then ``c.executor``, ``c.run(...)``, ``c.close()``; in Jupyter
the object shows its jobs, workers and state. The jobs are cancelled when the block ends, on ``close()``,
at interpreter exit, and - through the pool's lifeline - when the process is killed.
"""

from __future__ import annotations

import atexit
import html
import sys
import time
from pathlib import Path
from typing import Any, Callable

from hpckit.launch.session import PoolOptions, Session, parse_adapt
from hpckit.core.units import plural


class Cluster:
    """A running pool of workers (see the module docstring); made by :func:`cluster`."""

    def __init__(self, session: Session, status: bool = True):
        self.session = session
        self.status = status
        atexit.register(self.close)

    # ---- what a Runner needs ----
    @property
    def executor(self) -> Any:
        """The executor on these workers, for ``processor.Runner(executor=...)`` (any number of calls)."""
        return self.session.executor(self.status)

    def run(self, analysis: str | Path, fileset: str | Path, **options: Any) -> Any:
        """Run the processor of the file ``analysis`` over ``fileset`` (``hpckit.run.RunSpec`` options), the
        file loaded anew each time so edits show; its output, plots and report.html go to
        ``<run dir>/runs/NNN``. Returns the output."""
        from hpckit.run import RunSpec

        out, self.last_metrics, self.last_written = self.session.run(RunSpec(analysis, fileset, **options))
        return out

    # ---- the pool ----
    @property
    def run_dir(self) -> Path:
        return self.session.run_dir

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard with its token (loopback of this host; None for Parsl and TaskVine)."""
        return self.session.dashboard_link()

    def workers(self) -> list[dict]:
        return self.session.workers()

    def job_ids(self) -> list[str]:
        return self.session.job_ids()

    def close(self) -> list[str]:
        """Cancel every job and wait until the scheduler lists none (returns those left; normally none)."""
        atexit.unregister(self.close)
        return self.session.down()

    def __enter__(self) -> Any:
        return self.executor

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- for people ----
    def __repr__(self) -> str:
        s = self.session
        return (f"<hpckit.Cluster {s.run_dir.name}: {s.site.name}, {s.backend}, {s.state}, "
                f"{plural(len(s.workers()), 'worker')}, {plural(len(s.job_ids()), 'job')}>")

    def _repr_html_(self) -> str:
        info = self.session.summary()
        e = html.escape
        states = _job_states(self.session)
        jobs = "".join(f"<tr><td>{e(j)}</td><td>{e(states.get(j, '?'))}</td></tr>" for j in info["jobs"])
        workers = "".join(f"<tr><td>{e(str(w.get('address')))}</td><td>{e(str(w.get('host')))}</td>"
                          f"<td>{e(str(w.get('pid', w.get('workers', ''))))}</td></tr>" for w in info["workers"])
        link = info["dashboard"]
        dash = f'<a href="{e(link)}" target="_blank">dashboard</a>' if link else "no dashboard"
        return (f"<div><b>hpckit cluster</b> <code>{e(info['name'])}</code>: {e(info['site'])}, {e(info['backend'])}, "
                f"<b>{e(info['state'])}</b>, up {info['age_s']:.0f} s, {dash}<br>"
                f"<small>run dir {e(info['run_dir'])}</small>"
                f"<table><tr><th>job</th><th>state</th></tr>{jobs}</table>"
                f"<table><tr><th>worker</th><th>host</th><th>pid</th></tr>{workers}</table></div>")


def _job_states(session: Session) -> dict[str, str]:
    ids = session.job_ids()
    if not ids or not session.sched.batch:
        return {}
    try:
        return {j: s.state.value for j, s in session.sched.status(ids).items()}
    except Exception:  # noqa: BLE001 - informational
        return {}


def cluster(site: str, backend: str | None = None, workers: int | None = None, run_dir: str | Path | None = None,
            adapt: str | tuple[int, int] | None = None, *, overrides: list[str] | None = None,
            worker_timeout: float = 300.0, env: str | Path | None = None, status: bool = True,
            say: Callable[[str], None] | None = None) -> Cluster:
    """Start ``site``'s workers as `hpckit launch` does (same site file, checks, environment delivery, TLS,
    records in ``run_dir``) and keep them until closed. ``workers`` defaults to the site's maximum;
    ``adapt=(min, max)`` (or ``"min:max"``) scales with the load instead."""
    opts = PoolOptions(site=site, backend=backend, workers=workers, adapt=parse_adapt(adapt),
                       overrides=list(overrides or []), run_dir=Path(run_dir) if run_dir else None,
                       worker_timeout=worker_timeout, env=Path(env) if env else None,
                       say=say or (lambda msg: print(msg, file=sys.stderr)))
    t0 = time.perf_counter()
    session = Session(opts).up()
    c = Cluster(session, status=status)
    session.check_environment()  # records the environment the workers serve now: a later change is refused
    link = session.dashboard_link()
    opts.say(f"hpckit: cluster {session.run_dir.name} up in {time.perf_counter() - t0:.1f} s"
             + (f"; dashboard {link}" if link else ""))
    return c
