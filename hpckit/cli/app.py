"""The `hpckit` Typer app: every command registered here, explicitly (command modules never import this one)."""

from __future__ import annotations

from typing import Optional

import typer

from hpckit import __version__
from hpckit.cli import deploy, env, jobs, launch, pools, report, run

app = typer.Typer(no_args_is_help=True, add_completion=False, help="hpckit: one processor, any executor, any site.",
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hpckit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Optional[bool] = typer.Option(None, "--version", "-V", callback=_version, is_eager=True,
                                                 help="print the version and exit")) -> None:
    """hpckit: one processor, any executor, any site."""


app.command("run")(run.run_command)
app.command("launch")(launch.launch_command)
app.command("up")(pools.up_command)
app.command("down")(pools.down_command)
app.command("doctor")(launch.doctor_command)
app.command("jobs")(jobs.jobs_command)
app.command("cancel")(jobs.cancel_command)
app.command("report")(report.report_command)
app.add_typer(deploy.sites_app, name="sites")
app.command("render")(deploy.render_command)
app.add_typer(env.env_app, name="env")
app.command("build")(env.build_cmd)
app.command("pack")(env.pack_cmd)
