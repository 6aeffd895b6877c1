"""The launch's environment fingerprint reaches real worker processes through the Runner: a worker
whose versions differ refuses the first chunk, naming the package, before the processor is unpickled."""

from __future__ import annotations

import functools
import json

import pytest
from dimuon import DimuonProcessor

from hpckit import processor
from hpckit.deploy.envlock import EnvironmentMismatch, check_environment, current_fingerprint


def _check_with(pins_change: dict) -> functools.partial:
    fp = json.loads(current_fingerprint().to_json())
    fp["pins"].update(pins_change)
    return functools.partial(check_environment, json.dumps(fp))


@pytest.mark.parametrize("executor", ["futures", "dask"])
def test_worker_with_other_version_refuses_work(executor, fileset_path):
    """Real pool workers / Dask worker processes run the check; lz4 is pinned at a version nobody has."""
    ex = (processor.FuturesExecutor(workers=2, status=False) if executor == "futures"
          else processor.DaskExecutor(workers=1, status=False, retries=0))
    runner = processor.Runner(ex, worker_check=_check_with({"lz4": "0.0.1"}))
    with pytest.raises(Exception) as info:
        runner(str(fileset_path), processor_instance=DimuonProcessor())
    text = str(info.value)
    assert "lz4: client 0.0.1, worker" in text and "refusing work" in text
    assert isinstance(info.value, EnvironmentMismatch) or "EnvironmentMismatch" in text


def test_matching_worker_runs(fileset_path, reference):
    from conftest import assert_matches_reference

    runner = processor.Runner(processor.FuturesExecutor(workers=2, status=False), worker_check=_check_with({}))
    assert_matches_reference(runner(str(fileset_path), processor_instance=DimuonProcessor()), reference)
