"""The values the vault core works with: record, key, grant, caller, and id validation.

Standard library only: the core (``vault.py``, ``sweep.py``, ``envelope.py``) and every adapter
share these types, and none of them may pull Azure, MSAL or HTTP in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple, TypeGuard

from .errors import BadRequest
from .sensitive import Sensitive

__all__ = [
    "Status",
    "RecordKey",
    "TokenRecord",
    "RecordSummary",
    "TenantKey",
    "TokenGrant",
    "Caller",
    "CallerKind",
    "AppCaller",
    "valid_id",
    "is_valid_id",
]

# Tenant and user ids are lower-case GUIDs. Nothing else may reach a table key or a filter,
# so this is checked wherever an id enters the system.
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def is_valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _GUID.match(value) is not None


def valid_id(value: object, field_name: str) -> str:
    """Return ``value`` if it is a lower-case GUID, else raise ``BadRequest`` naming the field."""
    if not is_valid_id(value):
        raise BadRequest(f"{field_name} must be a lower-case GUID.", field=field_name)
    return value


class Status(str, Enum):
    ACTIVE = "active"
    REAUTH_REQUIRED = "reauth_required"
    REVOKED = "revoked"


@dataclass(frozen=True)
class RecordKey:
    tenant_id: str
    user_id: str

    def __post_init__(self) -> None:
        valid_id(self.tenant_id, "tenant_id")
        valid_id(self.user_id, "user_id")


@dataclass(frozen=True)
class TokenRecord:
    """One user's stored refresh token, as the table holds it (docs/design.md "Record layout").

    ``ciphertext`` is the envelope of the refresh token, or empty when there is nothing to
    redeem. ``etag`` is the version of the row this record was read from (None: never stored);
    every write is conditional on it.
    """

    tenant_id: str
    user_id: str
    client_id: str
    key_version: str
    ciphertext: bytes = field(repr=False)
    status: Status
    scopes: tuple[str, ...]
    created_at: datetime
    refreshed_at: datetime
    failure_count: int = 0
    last_error: str | None = None
    etag: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        valid_id(self.tenant_id, "tenant_id")
        valid_id(self.user_id, "user_id")

    @property
    def key(self) -> RecordKey:
        return RecordKey(self.tenant_id, self.user_id)

    @property
    def redeemable(self) -> bool:
        return self.status is Status.ACTIVE and bool(self.ciphertext)

    def evolve(self, **changes: Any) -> "TokenRecord":
        return replace(self, **changes)

    def metadata(self) -> dict:
        """What a caller may see of the record: never a token, never ciphertext."""
        return {
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "client_id": self.client_id,
            "status": self.status.value,
            "key_version": self.key_version,
            "scopes": list(self.scopes),
            "created_at": _iso(self.created_at),
            "refreshed_at": _iso(self.refreshed_at),
        }


@dataclass(frozen=True)
class RecordSummary:
    """The projection the sweep pages through: keys and the columns it decides on."""

    tenant_id: str
    user_id: str
    key_version: str
    status: Status
    refreshed_at: datetime

    @property
    def key(self) -> RecordKey:
        return RecordKey(self.tenant_id, self.user_id)


@dataclass(frozen=True)
class TenantKey:
    """One version of a tenant's 32-byte data key.

    ``created`` orders versions (Key Vault's ``created_on``; the keyring's list position):
    opaque version ids cannot, and a record's key version must never move backwards.
    """

    tenant_id: str
    version: str
    material: Sensitive[bytes] = field(repr=False)
    created: datetime | None = None

    def newer_than(self, other: "TenantKey") -> bool:
        if self.created is None or other.created is None:
            return False
        return self.created > other.created


@dataclass(frozen=True)
class TokenGrant:
    """What the identity provider answered to an OBO or refresh request."""

    access_token: Sensitive[str] = field(repr=False)
    refresh_token: Sensitive[str] | None = field(repr=False)
    expires_on: int  # epoch seconds
    scopes: tuple[str, ...]
    token_type: str = "Bearer"
    #: the vault answered from its in-memory access-token cache, without the identity provider
    from_cache: bool = False


class AppCaller(NamedTuple):
    """An app allowed to call with an app token: its app id *and* the tenant its tokens come
    from. Any tenant's admin can give a multi-tenant app's service principal in their tenant our
    app roles (and, without app-instance property lock, a credential): a token with the right
    app id but another ``tid`` is someone else acting as that app."""

    app_id: str
    tenant_id: str

    def __str__(self) -> str:
        return f"{self.app_id}@{self.tenant_id}"


class CallerKind(str, Enum):
    USER = "user"
    APP = "app"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller, from a validated bearer token.

    A user caller carries its own token (``assertion``) because OBO exchanges exactly that
    token. An app caller is identified by its app id (``azp``/``appid``) and home tenant.
    """

    kind: CallerKind
    tenant_id: str
    object_id: str | None = None  # oid, for users
    app_id: str | None = None  # azp/appid
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    assertion: Sensitive[str] | None = field(default=None, repr=False)

    @property
    def is_user(self) -> bool:
        return self.kind is CallerKind.USER

    @property
    def app(self) -> AppCaller | None:
        """The (app id, home tenant) pair of an app caller."""
        return AppCaller(self.app_id, self.tenant_id) if self.app_id and not self.is_user else None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
