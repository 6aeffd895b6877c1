"""Run coffea's own processor/executor tests against hpckit, with only the imports changed.

    python bench/coffea_tests.py [--version 2026.9.0] [--workdir /tmp/hpckit-coffea-tests] [-k EXPR]
                                 [--files test_local_executors.py,...] [-- extra pytest args]

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

# (pattern, replacement), applied in order to every copied test file
REWRITES = [
    (r"^(\s*)from coffea\.processor\.test_items import ", r"\1from hpckit_coffea_items import "),
    (r"^(\s*)from coffea\.processor\.executor import ", r"\1from hpckit.processor.executor import "),
    (r"^(\s*)from coffea\.processor import executor as ", r"\1from hpckit.processor import executor as "),
    (r"^(\s*)from coffea\.processor import ", r"\1from hpckit.processor import "),
    (r"^(\s*)from coffea import processor\b", r"\1from hpckit import processor"),
    (r"^(\s*)from coffea\.nanoevents import schemas\b", r"\1from hpckit.events import schema as schemas"),
    (r"^(\s*)from coffea\.nanoevents import ", r"\1from hpckit.events import "),
    (r"^(\s*)from coffea\.analysis_tools import ", r"\1from hpckit.analysis_tools import "),
    (r"^(\s*)from coffea\.nanoevents\.methods import vector\b", r"\1from hpckit.events import vector"),
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

PYTEST_INI = """[pytest]
testpaths = tests
addopts = -p no:cacheprovider
"""


def rewrite(text: str) -> str:
    for pattern, repl in REWRITES:
        text = re.sub(pattern, repl, text, flags=re.M)
    return text


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


def prepare(root: Path, files: list[str]) -> Path:
    """A run directory: the sdist's samples, the chosen tests and the test processors, rewritten."""
    run = root.parent / "hpckit-run"
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
    (items / "__init__.py").write_text(ITEMS_INIT)
    (run / "pytest.ini").write_text(PYTEST_INI)
    return run


def summarize(junit: Path) -> dict:
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    failing: dict[str, str] = {}
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
    return {"counts": counts, "failing": failing}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="2026.9.0")
    parser.add_argument("--workdir", default=os.environ.get("HPCKIT_COFFEA_TESTS_DIR", "/tmp/hpckit-coffea-tests"))
    parser.add_argument("--files", default=",".join(DEFAULT_FILES))
    parser.add_argument("-k", dest="keyword", default=None)
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    root = fetch_sdist(args.version, workdir)
    run = prepare(root, [f for f in args.files.split(",") if f])
    junit = workdir / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", f"--junitxml={junit}", *args.pytest_args]
    if args.keyword:
        cmd += ["-k", args.keyword]
    env = dict(os.environ)
    repo = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(repo), str(run), env.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=run, env=env)
    result = summarize(junit)
    result.update(version=args.version, files=args.files.split(","), keyword=args.keyword,
                  seconds=round(time.perf_counter() - t0, 1))
    (workdir / "summary.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    c = result["counts"]
    print(f"coffea {args.version} tests under hpckit: {c['passed']} passed, {c['failed']} failed, "
          f"{c['error']} errors, {c['skipped']} skipped in {result['seconds']} s ({workdir / 'summary.json'})")
    return 0 if c["failed"] == c["error"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
