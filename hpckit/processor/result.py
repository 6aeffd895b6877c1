"""coffea's ``Result``/``Ok``/``Err``: what ``Runner(use_result_type=True)`` returns instead of raising
for the errors ``skipbadfiles`` names (``Err.value`` keeps the partial output, if any)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Result(Generic[T]):
    def is_ok(self) -> bool:
        raise NotImplementedError

    def is_err(self) -> bool:
        return not self.is_ok()

    def unwrap(self) -> T:
        """The value of an ``Ok``; an ``Err`` raises its exception."""
        raise NotImplementedError


class Ok(Result[T]):
    def __init__(self, value: T) -> None:
        self._value = value

    @property
    def value(self) -> T:
        return self._value

    def is_ok(self) -> bool:
        return True

    def unwrap(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return f"Ok({self._value!r})"


class Err(Result):
    def __init__(self, exception: BaseException, value: Any = None) -> None:
        self._exception, self._value = exception, value

    @property
    def exception(self) -> BaseException:
        return self._exception

    @property
    def value(self) -> Any:
        """The partial output gathered before the failure, or None."""
        return self._value

    def is_ok(self) -> bool:
        return False

    def unwrap(self) -> Any:
        raise self._exception

    def __repr__(self) -> str:
        return f"Err({self._exception!r})"
