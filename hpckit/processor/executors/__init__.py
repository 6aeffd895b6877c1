"""Executors: one per file. Distributed ones import their engine only when constructed."""

from hpckit.processor.executors.futures import FuturesExecutor
from hpckit.processor.executors.iterative import IterativeExecutor
from hpckit.processor.executors.dask import DaskExecutor
from hpckit.processor.executors.parsl import ParslExecutor
from hpckit.processor.executors.taskvine import TaskVineExecutor

__all__ = ["DaskExecutor", "FuturesExecutor", "IterativeExecutor", "ParslExecutor", "TaskVineExecutor"]
