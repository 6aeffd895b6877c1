"""The `hpckit` command line: thin commands that call library functions."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="hpckit: one processor, any executor, any site.")



@app.callback()
def _main() -> None:
    """hpckit: one processor, any executor, any site."""


# Sub-command modules register themselves on `app` when imported.
from hpckit import cli_run  # noqa: E402,F401
from hpckit import cli_deploy  # noqa
from hpckit import cli_env  # noqa
from hpckit import cli_launch  # noqa
from hpckit import cli_report  # noqa
