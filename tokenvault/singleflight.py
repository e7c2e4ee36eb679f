"""Single flight: concurrent calls for the same key share one execution.

Used where many threads of one process ask for the same thing at once (a key from Key Vault,
a refresh at the identity provider): the first caller does the work, the others wait for its
result — or its exception — instead of repeating the call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["SingleFlight"]


class _Call(Generic[T]):
    __slots__ = ("done", "result", "error")
    # Unset until the work returns: once ``done`` is set, either ``error`` is not None or
    # ``result`` holds the value (which may itself be None when T allows it).
    result: T

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call[T]] = {}

    def do(self, key: Hashable, work: Callable[[], T]) -> T:
        """Run ``work`` unless a call for ``key`` is in flight; then share that call's outcome."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result
        try:
            call.result = work()
            return call.result
        except BaseException as error:
            call.error = error
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
