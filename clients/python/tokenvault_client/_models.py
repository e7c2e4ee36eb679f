"""What the API answers, as Python values: a record's metadata and a redeemed access token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Tuple

from azure.core.credentials import AccessToken

__all__ = ["StoredRecord", "access_token_from", "record_from"]

# ISO 8601 as the vault writes it (``2026-11-01T12:00:00.123456Z``). Python 3.9's
# fromisoformat takes neither ``Z`` nor fractions other than 3 or 6 digits.
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z")


@dataclass(frozen=True)
class StoredRecord:
    """A stored record's metadata: never a token."""

    tenant_id: str
    user_id: str
    client_id: str
    #: ``active``, ``reauth_required`` or ``revoked``.
    status: str
    key_version: str
    scopes: Tuple[str, ...]
    created_at: datetime
    refreshed_at: datetime


def record_from(body: Mapping[str, Any]) -> StoredRecord:
    return StoredRecord(
        tenant_id=str(body["tenant_id"]), user_id=str(body["user_id"]),
        client_id=str(body.get("client_id", "")), status=str(body["status"]),
        key_version=str(body["key_version"]), scopes=tuple(str(s) for s in body["scopes"]),
        created_at=parse_time(body["created_at"]), refreshed_at=parse_time(body["refreshed_at"]))


def access_token_from(body: Mapping[str, Any], now: float) -> AccessToken:
    """The redeemed token. Its expiry is taken from ``expires_in`` on the caller's own clock,
    so a skew between the two machines' clocks cannot make a cached token outlive itself."""
    return AccessToken(str(body["access_token"]), int(now) + max(0, int(body["expires_in"])))


def parse_time(text: str) -> datetime:
    """An aware datetime from the vault's ISO 8601 text."""
    match = _ISO.match(text)
    if not match:
        raise ValueError(f"not an ISO 8601 time with an offset: {text[:40]!r}")
    whole, fraction, zone = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    moment = datetime.fromisoformat(f"{whole}.{micros}{'+00:00' if zone == 'Z' else zone}")
    return moment.astimezone(timezone.utc)
