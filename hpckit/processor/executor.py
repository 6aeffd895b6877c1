"""coffea's ``coffea.processor.executor`` names, for code that imports them from there."""

from hpckit.events.format_errors import UprootMissTreeError
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

__all__ = [
    "DaskExecutor",
    "Err",
    "ExecutorBase",
    "FileMeta",
    "FuturesExecutor",
    "IterativeExecutor",
    "Ok",
    "ParslExecutor",
    "Result",
    "Runner",
    "TaskVineExecutor",
    "UprootMissTreeError",
    "WorkItem",
]
