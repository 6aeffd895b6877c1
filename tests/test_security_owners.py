"""No code from another user runs as you: hpckit never unpickles a file it did not write in this run (the
report reads its numbers from the run's own JSON), and refuses checkpoint, output, run and cache
directories that another user owns or links to, with one line naming the directory.

The other user is real: files and links are chown'ed to uid 65534 ("nobody"), which needs root (the tests
and CI run as root; as another user these tests cannot make a second owner and are skipped).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, REPO, reference_dimuon

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root to give files to a second user (uid 65534)")


def hpckit(*args, cwd=REPO, timeout=300):
    return subprocess.run([sys.executable, "-m", "hpckit", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_pickle(path: Path, marker: Path, owner: int | None = NOBODY) -> None:
    """A pickle that creates ``marker`` when loaded, owned by ``owner`` (None: by us)."""
    path.write_bytes(pickle.dumps(_Evil(marker)))
    if owner is not None:
        os.chown(path, owner, owner)


def one_error_line(r: subprocess.CompletedProcess, *words: str) -> str:
    assert r.returncode != 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    line = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1, r.stderr
    for w in words:
        assert w in line[0], line[0]
    return line[0]


FAILING = '''
from hpckit.processor import ProcessorABC

class Boom(ProcessorABC):
    def process(self, events):
        raise RuntimeError("boom")

    def postprocess(self, accumulator):
        return accumulator
'''


def test_failed_run_in_a_shared_directory_loads_no_planted_pickle(tmp_path, fileset_path):
    """The issue's case: `hpckit run` fails, its output directory is a shared 1777 one where another user
    left `out.pkl` and `x.pkl`; the report step must not load either."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    marker = tmp_path / "PWNED"
    plant_pickle(shared / "out.pkl", marker)
    plant_pickle(shared / "x.pkl", marker)
    plant_pickle(shared / "mine.pkl", marker, owner=None)  # a stray pickle of our own is not loaded either
    analysis = tmp_path / "boom.py"
    analysis.write_text(FAILING)
    r = hpckit("run", analysis, "--fileset", fileset_path, "--executor", "iterative", "--no-status",
               "--output", shared / "out.pkl", cwd=tmp_path)
    assert r.returncode == 1 and "RuntimeError: boom" in r.stderr, r.stderr  # the processor's own traceback
    assert (shared / "report.html").is_file()  # the report was written (it says how the run failed)
    assert not marker.exists(), "a pickle planted in the output directory was loaded"


def test_report_command_reads_json_only(tmp_path):
    """`hpckit report DIR` on a finished run: histograms and cutflow come from out.results.json (checked
    against plain uproot); a planted out.pkl is never loaded; a results file another user owns is refused
    and the page says why."""
    res = tmp_path / "res"
    r = hpckit("run", EXAMPLES / "dimuon.py", "--fileset", EXAMPLES / "fileset.json", "--executor", "iterative",
               "--no-status", "--no-plots", "--output", res / "out.pkl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    from hpckit.report import load_run

    run = load_run(res)
    ref = reference_dimuon()
    assert run.numbers["cutflow"] == ref["cutflow"]
    h = run.histograms["mass"]
    for ds, counts in ref["mass"].items():
        assert h[{"dataset": ds}].values().tolist() == counts.tolist()
    assert h.axes["mass"].label == "$m_{\\mu\\mu}$ [GeV]"

    marker = tmp_path / "PWNED"
    (res / "out.pkl").unlink()
    plant_pickle(res / "out.pkl", marker)
    plant_pickle(res / "extra.pkl", marker)
    r = hpckit("report", res, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    html = (res / "report.html").read_text()
    assert "<img" in html and "opposite-sign leading pair" in html
    assert not marker.exists()

    os.chown(res / "out.results.json", NOBODY, NOBODY)
    r = hpckit("report", res, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    html = (res / "report.html").read_text()
    assert "<img" not in html and f"owned by uid {NOBODY}" in html
    assert not marker.exists()


def test_checkpoint_directory_of_another_user_refused(tmp_path, fileset_path):
    from hpckit.io.paths import UnsafePathError
    from hpckit.processor import SimpleCheckpointer

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError, match=f"checkpoint directory {theirs}.*uid {NOBODY}"):
        SimpleCheckpointer(theirs, key=b"k" * 32)
    with pytest.raises(UnsafePathError, match=str(theirs)):  # nor a new directory inside theirs
        SimpleCheckpointer(theirs / "mine", key=b"k" * 32)
    # reached through their symbolic link: refused, nothing written where it points
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError, match=f"symbolic link {link}"):
        SimpleCheckpointer(link / "ckpt", key=b"k" * 32)
    assert not any(target.iterdir())
    # a checkpoint directory others may write (they could plant a link to the fingerprint directory)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(UnsafePathError, match="writable by group or others"):
        SimpleCheckpointer(open_dir, key=b"k" * 32)
    # the CLI: one line naming the directory, nothing run
    r = hpckit("run", EXAMPLES / "dimuon.py", "--fileset", fileset_path, "--executor", "iterative", "--no-status",
               "--checkpoint", theirs, "--output", tmp_path / "o" / "out.pkl", cwd=tmp_path)
    one_error_line(r, str(theirs), f"uid {NOBODY}")
    assert not (tmp_path / "o" / "out.pkl").exists()


def test_output_and_run_directories_of_another_user_refused(tmp_path, fileset_path):
    from hpckit.io.paths import own_dir
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o777)
    os.chown(theirs, NOBODY, NOBODY)
    r = hpckit("run", EXAMPLES / "dimuon.py", "--fileset", fileset_path, "--executor", "iterative", "--no-status",
               "--output", theirs / "out.pkl", cwd=tmp_path)
    one_error_line(r, "output directory", str(theirs))
    assert not list(theirs.iterdir())
    r = hpckit("launch", EXAMPLES / "dimuon.py", "--site", "local", "--fileset", fileset_path, "--dry-run",
               "--run-dir", theirs / "run", cwd=tmp_path)
    one_error_line(r, str(theirs))
    assert not list(theirs.iterdir())
    link = tmp_path / "runs"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    os.lchown(link, NOBODY, NOBODY)
    r = hpckit("launch", EXAMPLES / "dimuon.py", "--site", "slurm-local", "--fileset", fileset_path, "--dry-run",
               "--run-dir", link / "r1", cwd=tmp_path)
    one_error_line(r, str(link), "symbolic link")
    assert not list((tmp_path / "elsewhere").iterdir())
    # our own link to our own directory is fine
    mine = tmp_path / "mylink"
    mine.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert own_dir(mine / "r2", "run directory", create=True) == mine / "r2"


def test_wheel_cache_of_another_user_refused(tmp_path, monkeypatch):
    from hpckit.deploy.envlock import wheel_cache
    from hpckit.io.paths import UnsafePathError

    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    os.chown(cache / "wheels", NOBODY, NOBODY)
    monkeypatch.setenv("HPCKIT_CACHE", str(cache))
    with pytest.raises(UnsafePathError, match=f"wheel cache.*{cache / 'wheels'}"):
        wheel_cache()


def test_parsl_run_directory_of_another_user_refused(tmp_path, fileset_path):
    """`hpckit run --executor parsl` keeps Parsl's logs and CurveZMQ keys in <output dir>/runinfo; Parsl's
    interchange trusts every client key in its run's certificates directory, so a runinfo another user made
    first (in a shared output directory) is refused in one line before any pool starts."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    theirs = shared / "runinfo"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, NOBODY, NOBODY)
    r = hpckit("run", EXAMPLES / "dimuon.py", "--fileset", fileset_path, "--executor", "parsl", "--workers", "1",
               "--no-status", "--no-plots", "--output", shared / "out.pkl", cwd=tmp_path)
    one_error_line(r, str(theirs))
    assert not list(theirs.iterdir()) and not (shared / "out.pkl").exists()
