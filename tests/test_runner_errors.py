"""Bad inputs get a clear error naming the file, field or chunk; with skipbadfiles, a listed skip."""

from __future__ import annotations

import shutil

import pytest
from conftest import DATASETS, reference_dimuon
from dimuon import DimuonProcessor

from hpckit import processor
from hpckit.core.errors import ChunkError, FileAccessError, FilesetError, ProcessorError


def _runner(**kw):
    kw.setdefault("executor", processor.IterativeExecutor(status=False))
    return processor.Runner(**kw)


def _fileset_with(bad_path, tree="Events"):
    return {
        "DYJetsToLL": {"files": {str(DATASETS["DYJetsToLL"]): "Events"}},
        "Bad": {"files": {str(bad_path): tree}},
    }


def _truncated(tmp_path):
    p = tmp_path / "truncated.root"
    p.write_bytes(DATASETS["DYJetsToLL"].read_bytes()[:200_000])
    return p


def _empty(tmp_path):
    p = tmp_path / "empty.root"
    p.write_bytes(b"")
    return p


def _missing(tmp_path):
    return tmp_path / "does-not-exist.root"


def _garbage(tmp_path):
    p = tmp_path / "garbage.root"
    p.write_bytes(b"this is not a ROOT file\n" * 100)
    return p


BAD_FILES = {"missing": _missing, "truncated": _truncated, "empty": _empty, "not-root": _garbage}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_error_names_the_file(kind, tmp_path):
    bad = BAD_FILES[kind](tmp_path)
    with pytest.raises((FileAccessError, ChunkError)) as info:
        _runner(chunksize=20)(_fileset_with(bad), processor_instance=DimuonProcessor())
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("executor", ["iterative", "futures"])
@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_skipped_and_listed(kind, executor, tmp_path):
    bad = BAD_FILES[kind](tmp_path)
    ex = processor.IterativeExecutor(status=False) if executor == "iterative" else processor.FuturesExecutor(workers=2, status=False)
    runner = processor.Runner(ex, chunksize=20, skipbadfiles=True, savemetrics=True)
    with pytest.warns(UserWarning, match="skipping"):
        out, metrics = runner(_fileset_with(bad), processor_instance=DimuonProcessor())
    ref = reference_dimuon({"DYJetsToLL": DATASETS["DYJetsToLL"]})
    assert out["cutflow"] == ref["cutflow"]  # the good file is complete, the bad one absent
    assert metrics["skipped"] and all(s["file"] == str(bad) for s in metrics["skipped"])


def test_wrong_tree_name_lists_what_the_file_holds():
    with pytest.raises(FileAccessError, match=r"tree 'Evnts' not found in .*nano_dimuon.root \(it holds: .*Events"):
        _runner()(_fileset_with(DATASETS["DoubleMuon"], tree="Evnts"), processor_instance=DimuonProcessor())


def test_skipbadfiles_tuple_matches_cause_type(tmp_path):
    """A tuple only skips errors whose cause chain holds one of its types."""
    fs = _fileset_with(_missing(tmp_path))
    out = _runner(skipbadfiles=(FileNotFoundError,))(fs, processor_instance=DimuonProcessor())
    assert "Bad" not in out["cutflow"]
    with pytest.raises(FileAccessError):
        _runner(skipbadfiles=(KeyError,))(fs, processor_instance=DimuonProcessor())


def test_malformed_fileset_json(tmp_path):
    p = tmp_path / "fs.json"
    p.write_text('{"DY": {"files": ["a.root",]}}')
    with pytest.raises(FilesetError, match=r"fs.json is not valid JSON: .* line 1"):
        _runner()(str(p), processor_instance=DimuonProcessor())


@pytest.mark.parametrize(
    "fileset, match",
    [
        ({"DY": {"metadata": {}}}, "'files' key"),
        ({"DY": [str(DATASETS["DYJetsToLL"])]}, "no tree name"),
        ({"DY": {"files": {"a.root": "Events"}, "metadata": {"dataset": "x"}}}, "reserved"),
        ({"DY": {"files": []}}, "no files"),
    ],
)
def test_malformed_fileset_structure(fileset, match):
    with pytest.raises(FilesetError, match=match):
        _runner()(fileset, processor_instance=DimuonProcessor())


class ReturnsNone(processor.ProcessorABC):
    def process(self, events):
        return None


class Raises(processor.ProcessorABC):
    calls = 0

    def process(self, events):
        type(self).calls += 1
        raise ZeroDivisionError("analysis bug on purpose")


def test_processor_returning_none():
    with pytest.raises(ProcessorError, match=r"returned None on chunk 0-40 of .*nano_dy.root"):
        _runner()(_fileset_with(DATASETS["DoubleMuon"]), processor_instance=ReturnsNone())


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_raising_processor_is_not_retried_and_shows_its_traceback(executor):
    Raises.calls = 0
    ex = processor.IterativeExecutor(status=False) if executor == "iterative" else processor.FuturesExecutor(workers=2, status=False)
    with pytest.raises(ProcessorError) as info:
        processor.Runner(ex, skipbadfiles=True)({"DY": {"files": {str(DATASETS["DYJetsToLL"]): "Events"}}}, processor_instance=Raises())
    msg = str(info.value)
    assert "ZeroDivisionError: analysis bug on purpose" in msg
    assert "chunk 0-40 of" in msg and 'raise ZeroDivisionError("analysis bug on purpose")' in msg
    if executor == "iterative":
        assert Raises.calls == 1


def test_incompatible_outputs_name_both_types():
    from hpckit.processor.accumulate import accumulate

    with pytest.raises(ValueError, match=r"\(int, str\)"):
        accumulate([{"a": 1}, {"a": "x"}])


def test_file_changed_after_chunking_is_detected(tmp_path):
    p = tmp_path / "f.root"
    shutil.copy(DATASETS["DYJetsToLL"], p)
    runner = _runner(chunksize=20)
    items = list(runner.preprocess({"DY": {"files": {str(p): "Events"}}}))
    from dataclasses import replace

    stale = [replace(i, fileuuid="00000000-0000-0000-0000-000000000000") for i in items]
    with pytest.raises(ChunkError, match="changed since it was chunked"):
        processor.Runner(processor.IterativeExecutor(status=False, retries=0))(stale, processor_instance=DimuonProcessor())


@pytest.mark.parametrize("runner", ["new-runner", "same-runner-with-checkpoints"])
@pytest.mark.parametrize("how", ["renamed-over", "rewritten-in-place"])
def test_a_file_replaced_between_two_runs_in_one_process_is_read_anew(how, runner, tmp_path):
    """A notebook reruns after a file was remade (a new skim under the same name): the second run, in the same
    process, reads the new file - not the handle kept open from the first run, whose uuid planning and the
    chunk check would both have agreed with (the old events, silently), nor the metadata a reused Runner
    kept (its old uuid would find the old file's checkpoints). Checked against plain uproot."""
    import numpy as np

    p = tmp_path / "skim.root"
    shutil.copy(DATASETS["DYJetsToLL"], p)
    fileset = {"S": {"files": {str(p): "Events"}}}
    kept = _runner(chunksize=7, checkpointer=processor.SimpleCheckpointer(tmp_path / "ck"))
    for source in (DATASETS["DYJetsToLL"], DATASETS["DoubleMuon"]):
        if source != DATASETS["DYJetsToLL"]:
            if how == "renamed-over":
                shutil.copy(source, tmp_path / "new.root")
                (tmp_path / "new.root").replace(p)
            else:
                p.write_bytes(source.read_bytes())
        run = kept if runner.startswith("same") else _runner(chunksize=7)
        out = run(fileset, processor_instance=DimuonProcessor())
        want = reference_dimuon({"S": source})
        assert out["cutflow"]["S"] == want["cutflow"]["S"], (source.name, out["cutflow"]["S"])
        assert np.array_equal(out["mass"][{"dataset": "S"}].values(), want["mass"]["S"]), source.name
