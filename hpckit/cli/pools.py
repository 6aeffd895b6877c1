"""`hpckit up` / `hpckit down` and the pools `hpckit jobs` lists: workers that stay up between runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hpckit.cli import common as c
from hpckit.engines import batch_names


def _seconds(text: str) -> float:
    """``30m``, ``2h``, ``90s``, ``45`` (minutes), ``0`` (never) -> seconds."""
    from hpckit.core.errors import UsageError

    t = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t) * 60
    except ValueError:
        raise UsageError(f"--idle-timeout {text!r}: expected e.g. 30m, 2h, 90s or 0 (never)") from None


def up_command(
    site: str = c.SITE,
    backend: Optional[str] = typer.Option(None, "--backend", help=f"{', '.join(batch_names())} (default: the site's)"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="workers (default: the site's maximum)"),
    adapt: Optional[str] = c.ADAPT,
    name: Optional[str] = typer.Option(None, "--name", help="the pool's name (default: <site>-<4 hex>)"),
    idle_timeout: str = typer.Option("30m", "--idle-timeout", help="end the pool after this long without a run "
                                     "(30m, 2h, 0 = never)"),
    set_: Optional[List[str]] = c.SET,
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="run directory (default: scratch or ./hpckit-runs)"),
    worker_timeout: float = typer.Option(300.0, "--worker-timeout", min=1, help="seconds to wait for a first worker"),
    port: int = c.PORT,
    env: Optional[Path] = typer.Option(None, "--env", help="hpckit pack tarball the workers run (env_delivery tarball)"),
) -> None:
    """Start SITE's workers and keep them up (a detached process) for `hpckit run --on NAME`."""
    from hpckit.core.errors import HpckitError
    from hpckit.launch import standing
    from hpckit.launch.dashboard import tunnel_command

    if workers and adapt:
        c.fail("give --workers N or --adapt MIN:MAX, not both")
    try:
        st = standing.up(standing.UpOptions(site=site, backend=backend, workers=workers, adapt=adapt, name=name,
                                            idle_timeout=_seconds(idle_timeout), overrides=c.overrides(set_),
                                            run_dir=str(run_dir) if run_dir else None, worker_timeout=worker_timeout,
                                            port=port, env=str(env) if env else None), say=c.say)
    except (HpckitError, OSError) as exc:
        c.fail(exc)
    n = st["name"]
    idle = f"ends itself after {st['idle_timeout']:g} s without a run" if st.get("idle_timeout") else "no idle timeout"
    c.out.print(n, markup=False, highlight=False)
    c.say(f"hpckit: pool {n} is up ({st['site']}, {st['backend']}; first worker after "
          f"{st.get('seconds_to_first_worker') or 0:.1f} s; {idle}); run dir {st['run_dir']}")
    c.say(f"  run on it:  hpckit run ANALYSIS --fileset FILESET --on {n}")
    c.say(f"  end it:     hpckit down {n}")
    if st.get("dashboard_port"):
        c.say(f"  dashboard:  {tunnel_command(st['dashboard_port'])}   then open the link in "
              f"{st['run_dir']}/dashboard (it holds the token)")


def down_command(name: str = typer.Argument(..., help="the pool's name (hpckit jobs lists them)")) -> None:
    """End the pool NAME: cancel every job and stop its process."""
    from hpckit.core.errors import HpckitError
    from hpckit.launch import standing

    try:
        c.say(standing.down(name))
    except (HpckitError, OSError) as exc:
        c.fail(exc)


def pool_rows() -> list[str]:
    """One line per standing pool for `hpckit jobs`: name, state, site/backend, workers, jobs, age."""
    from hpckit.launch import standing
    from hpckit.core.units import plural

    rows = []
    for p in standing.list_pools():
        age = f"up {p['age_s'] / 60:.0f} min" if p.get("age_s") is not None else ""
        workers = plural(p["workers"], "worker") if p.get("workers") is not None else "workers ?"
        jobs = f"jobs {' '.join(p['jobs'])}" if p.get("jobs") else ""
        rows.append(f"pool {p['name']}  {p['state']}  {p.get('site')}/{p.get('backend')}  {workers}  {jobs}  {age}  "
                    f"{p['run_dir']}")
    return rows


def run_on(name: str, spec) -> None:
    """`hpckit run ... --on NAME`."""
    from hpckit.core.errors import HpckitError
    from hpckit.launch import standing

    try:
        final = standing.run_on(name, spec, say=c.say)
    except (HpckitError, OSError) as exc:
        c.fail(exc)
    c.say(final["summary"])
