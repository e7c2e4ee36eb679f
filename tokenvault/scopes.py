"""OAuth scope rules the vault applies on every path.

msal adds ``openid profile offline_access`` to every request itself and refuses them from its
caller (docs/field-notes.md "msal"), so the vault never stores, requests or compares them:
they are reserved. Scope values compare case-insensitively, as Entra treats them.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["RESERVED_SCOPES", "is_reserved", "without_reserved"]

RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


def is_reserved(scope: str) -> bool:
    return scope.lower() in RESERVED_SCOPES


def without_reserved(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes in their order, reserved ones dropped."""
    return tuple(s for s in scopes if not is_reserved(s))
