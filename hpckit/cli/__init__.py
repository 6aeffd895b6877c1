"""The `hpckit` command line: thin commands (parse, call one library function, print)."""

from hpckit.cli.app import app

__all__ = ["app"]
