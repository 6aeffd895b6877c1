"""The shared Runner and its executors: ``from hpckit import processor`` replaces
``from coffea import processor``."""

from hpckit.processor.abc import ProcessorABC
from hpckit.processor.accumulate import (
    AccumulatorABC,
    accumulate,
    column_accumulator,
    defaultdict_accumulator,
    dict_accumulator,
    list_accumulator,
    set_accumulator,
    value_accumulator,
)
from hpckit.processor.checkpoint import CheckpointerABC, SimpleCheckpointer
from hpckit.processor.executors import (
    DaskExecutor,
    FuturesExecutor,
    IterativeExecutor,
    ParslExecutor,
    TaskVineExecutor,
)
from hpckit.processor.executors.base import ExecutorBase
from hpckit.processor.fileset import WorkItem
from hpckit.processor.runner import Runner

__all__ = [
    "AccumulatorABC",
    "CheckpointerABC",
    "DaskExecutor",
    "ExecutorBase",
    "FuturesExecutor",
    "IterativeExecutor",
    "ParslExecutor",
    "ProcessorABC",
    "Runner",
    "SimpleCheckpointer",
    "TaskVineExecutor",
    "WorkItem",
    "accumulate",
    "column_accumulator",
    "defaultdict_accumulator",
    "dict_accumulator",
    "list_accumulator",
    "set_accumulator",
    "value_accumulator",
]
