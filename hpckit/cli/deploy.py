"""`hpckit sites`, `hpckit sites show NAME`, `hpckit render`: thin commands over hpckit.deploy."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from hpckit.core.defaults import VINE_PORT
from hpckit.cli.common import fail as _fail, say
from hpckit.deploy import BACKENDS, SiteError, list_sites, load_site, render_all
from hpckit.deploy.render import RenderError
from hpckit.core.resources import data_dir

console = Console()

sites_app = typer.Typer(help="List the known sites, or show one (merged, with where each value came from).")


@sites_app.callback(invoke_without_command=True)
def sites(ctx: typer.Context) -> None:
    """Table of sites: scheduler, default backend, what was checked and how."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Column

    table = Table(Column("site", no_wrap=True), "scheduler", "default backend", "checked", "description")
    for name in list_sites():
        try:
            s = load_site(name).site
        except SiteError as exc:
            table.add_row(name, "[red]invalid[/red]", "", "", str(exc).splitlines()[-1].strip())
            continue
        table.add_row(name, s.scheduler, s.default_backend, f"{s.checked} (facts of {s.gathered_on})", s.description)
    console.print(table)


@sites_app.command("show")
def show(
    name: str = typer.Argument(..., help="site name or path to a site YAML file"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override key.path=value (repeatable)"),
) -> None:
    """The merged site and, for each value, the layer it came from."""
    try:
        loaded = load_site(name, set_ or [])
    except SiteError as exc:
        _fail(exc)
    s = loaded.site
    table = Table("key", "value", "from", title=f"site {s.name} ({s.scheduler})")
    unverified = set(s.unverified)
    builtin = str(data_dir("sites"))
    for key, value, origin in loaded.flat():
        mark = " [yellow](unverified)[/yellow]" if key in unverified and origin != "--set" else ""
        if origin.startswith(builtin):
            origin = "built-in " + origin[len(builtin) + 1 :]
        table.add_row(key, repr(value) if not isinstance(value, str) else value, origin + mark)
    console.print(table)


def render_command(
    site: str = typer.Option(..., "--site", help="site name or path to a site YAML file"),
    backend: str = typer.Option(..., "--backend", help=", ".join(BACKENDS)),
    out: Path = typer.Option(..., "--out", help="directory to write the artifacts into"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override key.path=value (repeatable)"),
    manager_host: Optional[str] = typer.Option(
        None, help="TaskVine manager host the workers dial (default: the address of the site's interface here, "
                   "else this host's name; 127.0.0.1 only for loopback-only sites)"),
    port: int = typer.Option(VINE_PORT, help="TaskVine manager port"),
) -> None:
    """Render a site for a backend and write every artifact into --out."""
    if backend not in BACKENDS:
        _fail(ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}"))
    try:
        paths = render_all(load_site(site, set_ or []).site, backend, out, manager_host=manager_host, port=port)
    except (SiteError, RenderError) as exc:
        _fail(exc)
    for p in paths:
        console.print(str(p), highlight=False, soft_wrap=True)
    from hpckit.engines import ENGINES

    note = ENGINES[backend].render_note(load_site(site, set_ or []).site, paths)
    if note:
        say(f"note: {note}")
