"""Run coffea's own tests for the pieces hpckit re-implements, with coffea's imports changed to hpckit's.

    python bench/coffea_tests.py                     # downloads coffea's sdist into /tmp (never committed)
    python bench/coffea_tests.py --sdist DIR         # an unpacked coffea-X.Y.Z directory

Today: tests/test_analysis_tools.py (PackedSelection, Weights, cutflow, N-1) against hpckit.analysis_tools
and hpckit.events.NanoEventsFactory. Prints pytest's summary; the dask (``_dak``) cases need coffea's dask
mode, which hpckit does not have.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VERSION = "2026.9.0"
FILES = ["test_analysis_tools.py"]
HELPERS = ["dummy_distributions.py"]
SAMPLES = ["nano_dy.root"]
IMPORTS = [(r"from coffea\.analysis_tools import", "from hpckit.analysis_tools import"),
           (r"from coffea\.nanoevents import", "from hpckit.events import")]


def sdist(workdir: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-q",
                    f"coffea=={VERSION}", "-d", str(workdir)], check=True)
    archive = next(workdir.glob("coffea-*.tar.gz"))
    shutil.unpack_archive(archive, workdir)
    return workdir / f"coffea-{VERSION}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sdist", type=Path)
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpckit-coffea-tests-") as tmp:
        root = args.sdist or sdist(Path(tmp) / "download")
        run = Path(tmp) / "run"
        (run / "tests" / "samples").mkdir(parents=True)
        for name in FILES:
            text = (root / "tests" / name).read_text()
            for pattern, repl in IMPORTS:
                text = re.sub(pattern, repl, text)
            (run / "tests" / name).write_text(text)
        for name in HELPERS:
            shutil.copy(root / "tests" / name, run / "tests" / name)
        for name in SAMPLES:
            shutil.copy(root / "tests" / "samples" / name, run / "tests" / "samples" / name)
        env_path = f"{REPO}:{run / 'tests'}"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(run),
                               *[f"tests/{n}" for n in FILES], *args.pytest_args],
                              cwd=run, env={**__import__("os").environ, "PYTHONPATH": env_path})
        sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
