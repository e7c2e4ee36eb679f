"""A holder for secret values that refuses to be printed.

Tokens, keys, assertions and client secrets travel through the code wrapped in ``Sensitive``
so that a stray ``repr``, f-string, log argument or exception message shows ``<redacted>``
instead of the value. The value comes out only through ``reveal()``, which makes every place
that handles a secret in clear easy to find.
"""

from __future__ import annotations

from typing import Generic, NoReturn, TypeVar

T = TypeVar("T", str, bytes)

__all__ = ["Sensitive"]


class Sensitive(Generic[T]):
    __slots__ = ("_value",)
    _value: T  # set once, in __init__, through object.__setattr__ (our __setattr__ refuses)

    def __init__(self, value: T) -> None:
        if isinstance(value, Sensitive):
            value = value.reveal()
        object.__setattr__(self, "_value", value)

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<redacted>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sensitive):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Sensitive is immutable")

    def __reduce__(self) -> NoReturn:
        # Pickling would write the value out of the process in clear.
        raise TypeError("Sensitive values cannot be pickled")
