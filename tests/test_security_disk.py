"""A full disk and a read-only output directory: no temporary file left (``.report.html.part``,
``.run.json.part``, ...), no record cut mid-line, and one error line naming the file (and the free space).

Real file systems: a small tmpfs mounted for the test (needs root, as the tests and CI run) and a tmpfs
mounted read-only; each is unmounted at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def mount(tmp_path):
    """``mount(size_kb, ro=False)`` -> a fresh tmpfs directory of that size; unmounted in teardown."""
    mounted: list[Path] = []

    def make(size_kb: int, ro: bool = False) -> Path:
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        opts = f"size={size_kb}k,mode=0755" + (",ro" if ro else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], check=True, timeout=30)
        mounted.append(d)
        return d

    yield make
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], check=False, timeout=30)


def fill(d: Path, leave: int = 0) -> None:
    """Fill the file system of ``d`` until at most ``leave`` bytes are free."""
    with open(d / "filler", "wb") as fh:
        block = b"\0" * 4096
        try:
            while os.statvfs(d).f_bavail * os.statvfs(d).f_frsize > leave:
                fh.write(block)
                fh.flush()
        except OSError:
            pass


def hpckit(*args, cwd):
    return subprocess.run([sys.executable, "-m", "hpckit", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if p.name.endswith(".part") or p.name.startswith("."))


def test_chunk_records_whole_or_not_at_all(mount):
    """Appending to chunks.jsonl until the disk is full: every line in the file is a whole record."""
    from hpckit.processor.records import ChunkRecorder

    d = mount(64)
    rec = ChunkRecorder(d / "chunks.jsonl")
    fill(d, leave=0)
    (d / "filler").unlink()
    fill(d, leave=8192)  # two pages left: the file's last line lands across a page boundary
    for i in range(2000):
        rec({"kind": "chunk", "t0": i, "t1": i + 1, "file": "x" * (37 + i % 50), "n": i})
    text = (d / "chunks.jsonl").read_bytes()
    assert text, "nothing was written at all"
    assert text.endswith(b"\n"), f"a record was cut mid-line: ...{text[-80:]!r}"
    lines = text.decode().splitlines()
    assert [json.loads(x)["n"] for x in lines] == list(range(len(lines)))
    assert len(lines) < 2000  # the disk did fill up


def test_run_on_a_full_disk(mount, tmp_path):
    """`hpckit run` whose output directory fills up: one error line naming the file and the free space,
    no temporary file, every chunks.jsonl line whole."""
    d = mount(256)
    out = d / "res"
    out.mkdir()
    fill(d, leave=12 * 1024)  # room for the records, not for the PNG plot / report
    r = hpckit("run", EXAMPLES / "dimuon.py", "--fileset", EXAMPLES / "fileset.json", "--executor", "iterative",
               "--chunksize", "10", "--no-status", "--output", out / "out.pkl", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    err = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(err) == 1, r.stderr
    assert str(out) in err[0] and "No space left on device" in err[0] and "free" in err[0], err[0]
    assert leftovers(out) == [], leftovers(out)
    text = (out / "chunks.jsonl").read_text() if (out / "chunks.jsonl").exists() else ""
    for line in text.splitlines():
        json.loads(line)
    assert text == "" or text.endswith("\n")


def test_report_into_a_full_disk_leaves_nothing(mount, tmp_path):
    """`hpckit report DIR -o <full disk>`: one error line naming report.html, no `.report.html.part`."""
    res = tmp_path / "res"
    r = hpckit("run", EXAMPLES / "dimuon.py", "--fileset", EXAMPLES / "fileset.json", "--executor", "iterative",
               "--no-status", "--output", res / "out.pkl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = mount(64)
    fill(d, leave=0)
    r = hpckit("report", res, "-o", d / "report.html", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"cannot write {d / 'report.html'}" in r.stderr and "free" in r.stderr, r.stderr
    assert leftovers(d) == []


def test_read_only_output_directory(mount, tmp_path):
    d = mount(64, ro=True)
    r = hpckit("run", EXAMPLES / "dimuon.py", "--fileset", EXAMPLES / "fileset.json", "--executor", "iterative",
               "--no-status", "--output", d / "out.pkl", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    err = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and str(d) in err[0] and "Read-only file system" in err[0], r.stderr
    assert not list(d.iterdir())
