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
from hpckit.processor.fileset import FileMeta, WorkItem
from hpckit.processor.result import Err, Ok, Result
from hpckit.processor.runner import Runner

Accumulatable = object  # coffea's type alias; any value ``accumulate`` can add


def __getattr__(name: str):
    # exception types that subclass uproot's/pyarrow's: imported when first asked for
    if name in ("UprootMissTreeError", "InvalidParquetError"):
        from hpckit.events import format_errors

        return getattr(format_errors, name)
    raise AttributeError(f"module 'hpckit.processor' has no attribute {name!r}")


__all__ = [
    "Accumulatable",
    "AccumulatorABC",
    "Err",
    "FileMeta",
    "Ok",
    "Result",
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
