"""The Runner's chunk list held as a few numbers a chunk (hpckit.processor.chunkplan): the same WorkItems
as the planned list, in any access an executor makes."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from hpckit import processor
from hpckit.processor.chunkplan import ChunkPlan

FILESET = str(Path(__file__).resolve().parents[1] / "examples" / "fileset.json")


def test_same_items_as_the_planned_list():
    planned = list(processor.Runner(processor.IterativeExecutor(status=False), chunksize=3,
                                    persistent_metadata=False).preprocess(FILESET))
    plan = ChunkPlan(planned)
    assert len(plan) == len(planned) == 20 and list(plan) == planned
    assert [plan[i] for i in range(-1, len(plan))] == planned[-1:] + planned
    assert plan[3:11] == planned[3:11] and plan[::7] == planned[::7]
    assert [p.key for p in plan] == [p.key for p in planned]
    assert all(a.usermeta == b.usermeta and a.replicas == b.replicas for a, b in zip(plan, planned))
    assert plan.entries() == sum(len(i) for i in planned) == 80
    assert pickle.loads(pickle.dumps(plan[5])) == planned[5]
    assert len(plan._files) == 2  # one description a file, not a chunk


def test_a_plan_of_many_chunks_costs_a_few_numbers_a_chunk():
    item = list(processor.Runner(processor.IterativeExecutor(status=False), chunksize=40,
                                 persistent_metadata=False).preprocess(FILESET))[0]
    many = [processor.WorkItem(item.dataset, item.filename, item.treename, i, i + 1, item.fileuuid, item.usermeta)
            for i in range(10_000)]
    plan = ChunkPlan(many)
    held = sum(sys.getsizeof(a) for a in (plan._file, plan._start, plan._stop))
    assert held < 30 * len(many) and 3 * held < sum(sys.getsizeof(w) for w in many)  # 104 bytes a WorkItem alone
    assert plan[9_999] == many[9_999]
