"""OAuth scope rules the vault applies on every path.

msal adds ``openid profile offline_access`` to every request itself and refuses them from its
caller (docs/field-notes.md "msal"), so the vault never stores, requests or compares them:
they are reserved. Scope values compare case-insensitively, as Entra treats them.

Scopes are a grant fixed at store time. A stored grant may not name TokenVault's own app
(``api://<client id>/…`` or ``<client id>/…``): a token for the vault itself, redeemed by an
app, would be a user token that reaches every route as that user. A redeem may ask only for
scopes the record holds.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["RESERVED_SCOPES", "is_reserved", "without_reserved", "names_app", "comparable",
           "beyond"]

RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


def is_reserved(scope: str) -> bool:
    return scope.lower() in RESERVED_SCOPES


def without_reserved(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes in their order, reserved ones dropped."""
    return tuple(s for s in scopes if not is_reserved(s))


def names_app(scope: str, client_id: str) -> bool:
    """Whether ``scope`` is addressed to the app registration ``client_id`` (its App ID URI
    ``api://<client id>`` or its bare client id as the resource), in any case."""
    lowered, client = scope.lower(), client_id.lower()
    return any(lowered == prefix or lowered.startswith(prefix + "/")
               for prefix in (f"api://{client}", client))


def comparable(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes as a set to compare grants with: lower-cased, reserved ones dropped."""
    return frozenset(s.lower() for s in without_reserved(scopes))


def beyond(requested: Iterable[str], granted: Iterable[str]) -> frozenset[str]:
    """The requested scopes that the grant does not hold (empty: the request is within it)."""
    return comparable(requested) - comparable(granted)
