"""The engine registry (hpckit.engines) is the one list of engine names: the CLI, launch, doctor and the
site model read it, the renderers agree with it, and no other module writes the names out as a list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hpckit
from hpckit.cli.app import app
from hpckit.deploy import BACKENDS, load_site
from hpckit.engines import ENGINES, batch_names, get
from hpckit.core.errors import LaunchError, UsageError
from hpckit.launch import BATCH_BACKENDS
from hpckit.launch.plan import pick_backend

NAMES = ("iterative", "futures", "dask", "parsl", "taskvine")
PACKAGE = Path(hpckit.__file__).parent


def test_registry_holds_each_engine_once_and_batch_engines_have_renderers():
    assert sorted(ENGINES) == sorted(NAMES)
    assert all(e.name == n for n, e in ENGINES.items())
    # every engine with a worker pool for a site has a renderer in hpckit.deploy.backends, and no more
    assert sorted(batch_names()) == sorted(BACKENDS) == sorted(BATCH_BACKENDS)
    assert {n for n, e in ENGINES.items() if not e.batch} == {"iterative", "futures"}


def test_unknown_names_are_one_line_naming_every_engine():
    with pytest.raises(UsageError, match=r"unknown executor 'spark'; expected one of .*taskvine"):
        get("spark")
    with pytest.raises(LaunchError, match="unknown backend 'spark'"):
        pick_backend(load_site("local").site, "spark")
    assert get("DASK").name == "dask"
    with pytest.raises(Exception, match="unknown backend 'spark'"):
        load_site("local", ["default_backend=spark"])
    r = CliRunner().invoke(app, ["doctor", "--site", "local", "--backend", "spark"], env={"COLUMNS": "300"})
    assert r.exit_code == 1 and "error: unknown backend 'spark'; expected one of" in r.output, r.output
    assert "Traceback" not in r.output


def test_cli_choices_come_from_the_registry():
    from hpckit.cli.run import Executor

    assert [e.value for e in Executor] == list(ENGINES)
    r = CliRunner().invoke(app, ["run", "a.py", "f.json", "--executor", "spark"], env={"COLUMNS": "300"})
    assert r.exit_code != 0
    text = re.sub(r"[\s│╭╮╰╯─]+", " ", r.output)
    assert "'spark' is not one of" in text and all(f"'{n}'" in text for n in ENGINES), r.output


LIST_OF_NAMES = re.compile(r"""["'](?:%s)["']\s*[,:)]\s*[^\n#]*?["'](?:%s)["']""" % (("|".join(NAMES),) * 2))


def test_no_module_outside_the_engines_lists_engine_names():
    """A tuple, list, dict or chain of two engine names outside hpckit/engines (and the executors, which are
    the engines' own) is a second list to keep in step: read hpckit.engines.ENGINES instead."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(("engines/", "processor/executors/")):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if LIST_OF_NAMES.search(code):
                found.append(f"hpckit/{rel}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
