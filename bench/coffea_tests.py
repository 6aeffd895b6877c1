"""Run coffea's own processor/executor tests against hpckit, with only the imports changed.

    python bench/coffea_tests.py [--version 2026.9.0] [--workdir /tmp/hpckit-coffea-tests] [-k EXPR]
                                 [--files test_local_executors.py,...] [--shuffle SEED] [-- extra pytest args]
    python bench/coffea_tests.py --nanoevents [--shuffle SEED] [--under-coffea]   # NanoEvents suite

The coffea source distribution is downloaded at run time (``pip download --no-binary :all: --no-deps``)
into the work directory and never committed here. Its tests (``tests/test_*.py``) and test processors
(``coffea/processor/test_items``) are copied next to its ``tests/samples`` with ``coffea`` imports
rewritten to hpckit's, then pytest runs them from the sdist root (their sample paths are relative to
it). Prints the pass/fail counts and writes them, with every failing test id, to
``<workdir>/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

DEFAULT_FILES = [
    "test_local_executors.py",
    "test_accumulators.py",
    "test_processor.py",
    "test_workitem.py",
    "test_checkpointing.py",
    "test_analysis_tools.py",
]

# coffea's NanoEvents tests (eager and virtual modes; the dask ones are out of scope: hpckit has no dask
# graph of events), run with --nanoevents
NANOEVENTS_FILES = [
    "test_nanoevents.py",
    "test_nanoevents_vector.py",
    "test_nanoevents_rntuple.py",
    "test_nanoevents_pfnano.py",
    "test_nanoevents_scoutingnano.py",
    "test_analysis_tools.py",
]
NANOEVENTS_KEYWORD = "not dask and not dak and not delayed"

# (pattern, replacement), applied in order to every copied test file
REWRITES = [
    (r"^(\s*)from coffea\.processor\.test_items import ", r"\1from hpckit_coffea_items import "),
    (r"^(\s*)from coffea\.processor\.executor import ", r"\1from hpckit.processor.executor import "),
    (r"^(\s*)from coffea\.processor import executor as ", r"\1from hpckit.processor import executor as "),
    (r"^(\s*)from coffea\.processor import ", r"\1from hpckit.processor import "),
    (r"^(\s*)from coffea import processor\b", r"\1from hpckit import processor"),
    (r"^(\s*)from coffea\.nanoevents import schemas\b", r"\1from hpckit.events import schema as schemas"),
    # cachetools is a coffea dependency, not hpckit's: the bounded cache the tests build needs only this
    (
        r"^from cachetools import LRUCache$",
        "try:\n    from cachetools import LRUCache\nexcept ImportError:  # hpckit-coffea-tests shim\n"
        "    from hpckit_coffea_items import LRUCache",
    ),
]

ITEMS_INIT = '''"""coffea's test processors with hpckit imports (written by bench/coffea_tests.py)."""
from collections import OrderedDict


class LRUCache(OrderedDict):
    """The bounded mapping of cachetools, enough for the tests' metadata cache."""

    def __init__(self, maxsize):
        super().__init__()
        self.maxsize = maxsize

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)


for _name in ("NanoEventsProcessor", "NanoTestProcessor", "NanoDaskProcessor", "NanoTestProcessorPandas"):
    try:
        globals()[_name] = getattr(__import__(f"hpckit_coffea_items.{_name}", fromlist=[_name]), _name)
    except Exception as _err:  # a processor needing what hpckit lacks: its tests fail, not the others
        print(f"hpckit-coffea-tests: cannot import test processor {_name}: {_err!r}")
'''

# -p hpckit_shuffle: the collected tests in a random order (seed HPCKIT_SHUFFLE_SEED), so a test that only
# passes after another one (a shared open file, a cache) shows up
SHUFFLE_PLUGIN = '''"""Run the collected tests in a random order (written by bench/coffea_tests.py)."""
import os
import random


def pytest_collection_modifyitems(session, config, items):
    seed = os.environ.get("HPCKIT_SHUFFLE_SEED")
    if seed:
        random.Random(int(seed)).shuffle(items)
        print(f"hpckit-coffea-tests: {len(items)} tests shuffled with seed {seed}")
'''

PYTEST_INI = """[pytest]
testpaths = tests
addopts = -p no:cacheprovider
"""


# any other ``from coffea.X import names``: each name from hpckit's module of that name (coffea.nanoevents ->
# hpckit.events), or None where hpckit lacks it, so only the tests that use it fail (not the whole file)
_OTHER_IMPORT = re.compile(r"^(?P<indent>[ \t]*)from coffea(?P<module>(?:\.\w+)*) import (?P<names>\([^)]*\)|[^\n]+)", re.M)
_MODULES = {".nanoevents": "hpckit.events", ".analysis_tools": "hpckit.analysis_tools"}


def _guarded_import(match: re.Match) -> str:
    indent, module = match["indent"], match["module"]
    if module in _MODULES:
        target = _MODULES[module]
    elif module.startswith(".nanoevents."):
        target = "hpckit.events" + module.removeprefix(".nanoevents")
    else:
        target = "hpckit" + module
    names = [n.strip() for n in match["names"].strip("()").replace("\n", " ").split(",") if n.strip()]
    return "\n".join(
        f"{indent}try:\n{indent}    from {target} import {name}\n"
        f"{indent}except ImportError:  # hpckit-coffea-tests: not in hpckit\n"
        f"{indent}    {name.split(' as ')[-1].strip()} = None"
        for name in names
    )


def rewrite(text: str) -> str:
    for pattern, repl in REWRITES:
        text = re.sub(pattern, repl, text, flags=re.M)
    return _OTHER_IMPORT.sub(_guarded_import, text)


def fetch_sdist(version: str, workdir: Path) -> Path:
    sdist = workdir / f"coffea-{version}.tar.gz"
    if not sdist.exists():
        print(f"downloading coffea {version} source distribution ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             f"coffea=={version}", "-d", str(workdir)],
            check=True,
        )
    root = workdir / f"coffea-{version}"
    if not root.exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(workdir, filter="data")
    return root


def prepare(root: Path, files: list[str], under_coffea: bool = False) -> Path:
    """A run directory: the sdist's samples, the chosen tests and the test processors, rewritten (left as
    they are ``under_coffea``, for the baseline)."""
    if under_coffea:
        globals()["rewrite"] = lambda text: text
    run = root.parent / ("coffea-run" if under_coffea else "hpckit-run")
    if run.exists():
        shutil.rmtree(run)
    (run / "tests").mkdir(parents=True)
    os.symlink(root / "tests" / "samples", run / "tests" / "samples")
    for name in ["conftest.py", *files]:
        src = root / "tests" / name
        (run / "tests" / name).write_text(rewrite(src.read_text()))
    items = run / "hpckit_coffea_items"
    items.mkdir()
    for src in (root / "src" / "coffea" / "processor" / "test_items").glob("*.py"):
        if src.name != "__init__.py":
            (items / src.name).write_text(rewrite(src.read_text()))
    for helper in (root / "tests").glob("*.py"):  # helper modules the tests import (dummy_distributions)
        if not helper.name.startswith("test_") and not (run / "tests" / helper.name).exists():
            (run / "tests" / helper.name).write_text(helper.read_text())
    (items / "__init__.py").write_text(ITEMS_INIT)
    (run / "hpckit_shuffle.py").write_text(SHUFFLE_PLUGIN)
    (run / "pytest.ini").write_text(PYTEST_INI)
    return run


def summarize(junit: Path) -> dict:
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    failing: dict[str, str] = {}
    passed: list[str] = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case]
        if "failure" in kinds or "error" in kinds:
            kind = "failed" if "failure" in kinds else "error"
            counts[kind] += 1
            node = case.find(kind if kind == "error" else "failure")
            failing[name] = (node.get("message") or "").splitlines()[0][:300] if node is not None else ""
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
            passed.append(name)
    return {"counts": counts, "failing": failing, "passed_ids": sorted(passed)}


def _against(coffea: dict, hpckit: dict) -> dict:
    """Of the tests that pass under coffea, how many pass under hpckit."""
    theirs = set(coffea["passed_ids"])
    ours = set(hpckit["passed_ids"])
    return {"coffea_passed": len(theirs), "hpckit_passed": len(theirs & ours),
            "fraction": len(theirs & ours) / len(theirs) if theirs else 0.0,
            "pass_only_under_hpckit": len(ours - theirs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="2026.9.0")
    parser.add_argument("--workdir", default=os.environ.get("HPCKIT_COFFEA_TESTS_DIR", "/tmp/hpckit-coffea-tests"))
    parser.add_argument("--files", default=",".join(DEFAULT_FILES))
    parser.add_argument("-k", dest="keyword", default=None)
    parser.add_argument("--nanoevents", action="store_true",
                        help=f"coffea's NanoEvents tests ({', '.join(NANOEVENTS_FILES)}), -k '{NANOEVENTS_KEYWORD}'")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED", help="run the tests in a random order")
    parser.add_argument("--under-coffea", action="store_true", help="run the unmodified tests under coffea (baseline)")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    if args.nanoevents:
        args.files = ",".join(NANOEVENTS_FILES)
        args.keyword = args.keyword or NANOEVENTS_KEYWORD

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    root = fetch_sdist(args.version, workdir)
    run = prepare(root, [f for f in args.files.split(",") if f], args.under_coffea)
    junit = workdir / ("junit-coffea.xml" if args.under_coffea else "junit.xml")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "hpckit_shuffle", f"--junitxml={junit}", *args.pytest_args]
    if args.keyword:
        cmd += ["-k", args.keyword]
    env = dict(os.environ)
    repo = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(run)] if args.under_coffea else [str(repo), str(run), env.get("PYTHONPATH", "")])
    if args.shuffle is not None:
        env["HPCKIT_SHUFFLE_SEED"] = str(args.shuffle)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=run, env=env)
    result = summarize(junit)
    result.update(version=args.version, files=args.files.split(","), keyword=args.keyword, shuffle=args.shuffle,
                  under="coffea" if args.under_coffea else "hpckit", seconds=round(time.perf_counter() - t0, 1))
    summary = workdir / ("summary-coffea.json" if args.under_coffea else "summary.json")
    baseline = workdir / "summary-coffea.json"
    if not args.under_coffea and baseline.exists():  # of the tests that pass under coffea, how many here
        theirs = json.loads(baseline.read_text())
        if theirs.get("files") == result["files"] and theirs.get("keyword") == result["keyword"]:
            result["of_coffea_passing"] = _against(theirs, result)
    summary.write_text(json.dumps(result, indent=1, sort_keys=True))
    c = result["counts"]
    print(f"coffea {args.version} tests under {result['under']}: {c['passed']} passed, {c['failed']} failed, "
          f"{c['error']} errors, {c['skipped']} skipped in {result['seconds']} s ({summary})")
    if "of_coffea_passing" in result:
        o = result["of_coffea_passing"]
        print(f"of the {o['coffea_passed']} that pass under coffea, {o['hpckit_passed']} pass under hpckit "
              f"({o['fraction']:.1%})")
    return 0 if c["failed"] == c["error"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
