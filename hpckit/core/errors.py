"""Exceptions that name what went wrong: the file, the chunk, the field.

They cross process boundaries (futures, Dask, Parsl, TaskVine), so each one pickles with its message
and keeps the traceback text of the place it came from.
"""

from __future__ import annotations


class HpckitError(Exception):
    """Base class of hpckit's own errors."""

    def __reduce__(self):  # pickle by message and attributes, whatever the __init__ signature
        return (_rebuild, (type(self), str(self), self.__dict__.copy()))


def _rebuild(cls, message, state):
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class FilesetError(HpckitError, ValueError):
    """The fileset (or its JSON file) is malformed."""


class FileAccessError(HpckitError, OSError):
    """A file could not be opened or read: missing, not ROOT, truncated, corrupt, or lacking the tree.

    ``original`` is the qualified name of the underlying exception type; ``cause_types`` lists the type
    names along the ``__cause__`` chain so ``skipbadfiles`` tuples can match even after pickling.
    """

    def __new__(cls, message: str = "", *args, **kwargs):
        return super().__new__(cls, message)  # OSError would read (errno, strerror) from extra args

    def __init__(self, message: str, filename: str, original: BaseException | None = None):
        super().__init__(message)
        self.path = filename
        self.cause_types = _type_chain(original)

    def __str__(self) -> str:  # OSError's own format would show errno/strerror
        return str(self.args[0]) if self.args else ""

    @property
    def filename(self) -> str:  # type: ignore[override]
        return self.path


class FileNotFound(FileAccessError, FileNotFoundError):
    """The file does not exist (a ``FileNotFoundError``, as coffea raises)."""


class NotATreeError(FileAccessError):
    """The object named in the fileset exists but is neither a TTree nor an RNTuple."""


class ChunkError(HpckitError):
    """Processing one chunk failed; the message names the chunk and carries the worker's traceback."""

    def __init__(self, message: str, chunk: str = "", traceback_text: str = ""):
        full = message if not traceback_text else f"{message}\n\nTraceback from the worker:\n{traceback_text}"
        super().__init__(full)
        self.chunk = chunk
        self.traceback_text = traceback_text


class ProcessorError(ChunkError):
    """The user's ``process()`` raised or returned something unusable. Never retried, never skipped."""


class LaunchError(HpckitError, RuntimeError):
    """`hpckit launch` could not get workers or run (submission refused, workers never came, ...)."""


class MissingExtra(HpckitError, ImportError):
    """An optional extra or external command is not installed; the message names the install command."""


class UsageError(HpckitError, ValueError):
    """A bad option value (unknown schema, executor, backend, ...)."""


class EngineError(HpckitError):
    """An execution engine (process pool, Dask, Parsl, TaskVine) failed outside the processor."""


def error_chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and what it was raised from or while handling, each once."""
    out: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in out):
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _type_chain(exc: BaseException | None) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for e in error_chain(exc) for c in type(e).__mro__]
