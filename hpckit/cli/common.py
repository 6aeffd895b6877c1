"""What every command shares: the consoles, one way to fail, and each RunSpec option defined once."""

from __future__ import annotations

from pathlib import Path
from typing import List, NoReturn, Optional

import typer
from rich.console import Console

from hpckit.core.defaults import VINE_PORT
from hpckit.run import RunSpec

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def say(msg: str) -> None:
    """One plain line on stderr (no markup, no highlighting: paths and job ids print as they are)."""
    err.print(msg, highlight=False, soft_wrap=True, markup=False)


def fail(exc: BaseException | str, code: int = 1) -> NoReturn:
    """``error: <message>`` on stderr, exit ``code`` (no traceback)."""
    err.print("[red]error:[/red] ", end="", markup=True)
    err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _d(name: str):
    return RunSpec.default(name)


# ---- the options `run` and `launch` share (RunSpec fields: one default each) -------------------------
ANALYSIS = typer.Argument(..., help="Python file defining a ProcessorABC subclass")
FILESET = typer.Option(..., "--fileset", "-f", help="fileset JSON")
PROCESSOR = typer.Option(_d("processor_name"), "--processor", "-p", help="processor class name")
CHUNKSIZE = typer.Option(_d("chunksize"), "--chunksize", help="events per chunk")
MAXCHUNKS = typer.Option(_d("maxchunks"), "--maxchunks", min=1, help="at most this many chunks per dataset")
TREENAME = typer.Option(_d("treename"), "--treename", help="tree name when the fileset does not give one")
SCHEMA = typer.Option(_d("schema"), "--schema", help="nanoaod or base (any case)")
CHECKPOINT = typer.Option(_d("checkpoint"), "--checkpoint", help="checkpoint directory (a rerun resumes)")
SKIPBADFILES = typer.Option(_d("skipbadfiles"), "--skipbadfiles", help="skip unreadable files, listing them")
REFRESH_METADATA = typer.Option(_d("refresh_metadata"), "--refresh-metadata",
                                help="read every file's metadata again instead of from the per-user cache")
STATUS = typer.Option(_d("status"), "--status/--no-status", help="progress bar")
PLOTS = typer.Option(_d("plots"), "--plots/--no-plots", help="a PNG per histogram next to the output")
DATA = typer.Option(None, "--data", help="dataset drawn as data points (repeatable; fileset metadata "
                    "isData: true also marks one)")
PLOT_SPLIT = typer.Option(_d("plot_split"), "--plot-split", help="also one PNG per category value (e.g. per dataset); "
                          "needed for histograms with a category axis other than dataset and variation")
NOMINAL = typer.Option(_d("nominal"), "--nominal", help="the value of a variation axis (syst, variation, shift, ...) "
                       "that plots draw (default: its bin called 'nominal'); docs/physics.md")
BAND = typer.Option(_d("band"), "--band/--no-band", help="draw a variation axis' envelope as a band around the nominal")
WORKERS = typer.Option(None, "--workers", "-j", min=1,
                       help="workers (default: min(cores here or the site's maximum, chunks))")
ADAPT = typer.Option(None, "--adapt", help="MIN:MAX workers, grown while chunks wait and released when "
                     "idle (default: the site's adapt block, else a fixed number)")
PORT = typer.Option(VINE_PORT, "--port", help="TaskVine manager port (0: any free port)")
SET = typer.Option(None, "--set", help="override a site key: key.path=value (repeatable)")
SITE = typer.Option(..., "--site", help="site name or path to a site YAML file")


def run_spec(analysis: Path, fileset: Path, processor_name: Optional[str], chunksize: int, maxchunks: Optional[int],
             treename: Optional[str], schema: str, checkpoint: Optional[Path], skipbadfiles: bool,
             output: Optional[Path], status: bool, plots: bool, data: Optional[List[str]],
             plot_split: bool, nominal: Optional[str] = None, band: bool = False,
             refresh_metadata: bool = False) -> RunSpec:
    """A RunSpec from the shared options (a bad value is an error line, not a traceback)."""
    from hpckit.core.errors import HpckitError

    try:
        return RunSpec(analysis=analysis, fileset=fileset, processor_name=processor_name, chunksize=chunksize,
                       maxchunks=maxchunks, treename=treename, schema=schema, checkpoint=checkpoint,
                       skipbadfiles=skipbadfiles, output=output, status=status, plots=plots, data=tuple(data or ()),
                       plot_split=plot_split, nominal=nominal, band=band,
                       refresh_metadata=refresh_metadata)
    except HpckitError as exc:
        fail(exc)


def overrides(set_: Optional[List[str]]) -> list[str]:
    return list(set_ or [])
