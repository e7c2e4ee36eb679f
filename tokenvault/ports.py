"""The interfaces the vault core needs. Adapters implement them; tests use small fakes.

Each method documents the ``VaultError`` subclasses it may raise: adapters translate their
library's exceptions into exactly these, so the core never sees an Azure or MSAL exception.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

from .model import RecordKey, RecordSummary, TenantKey, TokenGrant, TokenRecord
from .sensitive import Sensitive

__all__ = ["Keys", "Records", "Page", "IdentityProvider", "Queue", "Clock", "SystemClock"]


class Keys(ABC):
    """Per-tenant data keys (Key Vault secret ``tenant-<tenant_id>``); read only."""

    @abstractmethod
    def latest(self, tenant_id: str) -> TenantKey:
        """The tenant's newest key version.

        :raises TenantNotOnboarded: the tenant has no key.
        :raises TenantKeyInvalid: the secret is not base64 of 32 bytes.
        :raises UpstreamUnavailable: the key store is throttled or down.
        """

    @abstractmethod
    def get(self, tenant_id: str, version: str) -> TenantKey:
        """One version of the tenant's key.

        :raises TenantRevoked: the version (or the whole secret) is gone.
        :raises TenantKeyInvalid, UpstreamUnavailable: as for ``latest``.
        """


class Records(ABC):
    """One record per (tenant, user). Every write is conditional."""

    @abstractmethod
    def get(self, key: RecordKey) -> TokenRecord:
        """Point read; the record carries its ETag.

        :raises NotFound: no such record.
        :raises UpstreamUnavailable: storage throttled or down.
        """

    @abstractmethod
    def get_many(self, tenant_id: str, user_ids: Sequence[str]) -> dict[str, TokenRecord]:
        """The records of these users of one tenant, by user id, read together (on Table
        storage one range query from the lowest user id to the highest: keep the users close
        together in row-key order). Users without a record, and rows that cannot be read, are
        left out; each record carries its ETag.

        :raises UpstreamUnavailable: storage throttled or down.
        """

    @abstractmethod
    def create(self, record: TokenRecord) -> TokenRecord:
        """Insert a new record; returns it with its ETag.

        :raises RecordConflict: a record with that key exists.
        """

    @abstractmethod
    def update(self, record: TokenRecord) -> TokenRecord:
        """Replace the record only if its stored ETag is still ``record.etag``.

        Never re-creates a deleted record.

        :raises RecordConflict: the record changed since it was read.
        :raises NotFound: the record was deleted.
        """

    @abstractmethod
    def update_many(self, records: Sequence[TokenRecord]) -> list[TokenRecord | None]:
        """``update`` for many records of one tenant at once: each is replaced only if its
        stored ETag is still its ``etag``; none is ever re-created.

        Returns, in order, each record as written (with its new ETag), or None where the record
        changed or was deleted since it was read: nothing is written for it. On Table storage the
        records go in entity-group transactions of at most 100; a transaction refused for one
        record's ETag (412) or absence (404) is sent again without that record.

        :raises ValueError: records of more than one tenant, or a record without an ETag.
        :raises UpstreamUnavailable: storage throttled or down; records of an earlier
            transaction of the same call may be written.
        """

    @abstractmethod
    def delete(self, key: RecordKey, etag: str | None = None) -> None:
        """Delete the record (if ``etag`` is given, only that version of it).

        :raises NotFound: no such record.
        :raises RecordConflict: ``etag`` given and the record changed.
        """

    @abstractmethod
    def scan(self, tenant_id: str | None = None, *, page_size: int = 1000,
             continuation: str | None = None) -> "Page":
        """One page of record summaries (a projection: never the ciphertext).

        Pass the returned page's ``continuation`` back to get the next page.
        """

    @abstractmethod
    def tenant_has_records(self, tenant_id: str) -> bool:
        """Whether any record exists for the tenant (to tell revoked from not onboarded)."""


class Page:
    """A page of a scan and the token for the next one (None: this was the last)."""

    __slots__ = ("items", "continuation")

    def __init__(self, items: Sequence[RecordSummary], continuation: str | None) -> None:
        self.items = items
        self.continuation = continuation

    def __iter__(self) -> Iterator[RecordSummary]:
        return iter(self.items)


class IdentityProvider(ABC):
    """The OAuth authority (Entra ID), acting as the configured confidential client."""

    @abstractmethod
    def on_behalf_of(self, tenant_id: str, assertion: Sensitive[str],
                     scopes: Sequence[str]) -> TokenGrant:
        """Exchange the user's token for a grant that must include a refresh token.

        :raises OfflineAccessMissing: no refresh token in the answer.
        :raises ReauthRequired: the user must interact (consent, MFA, claims challenge).
        :raises InvalidToken: the assertion was refused.
        :raises UpstreamUnavailable: throttled, 5xx or timeout (with Retry-After).
        """

    @abstractmethod
    def refresh(self, tenant_id: str, refresh_token: Sensitive[str],
                scopes: Sequence[str]) -> TokenGrant:
        """Redeem a refresh token. The grant may carry a new refresh token (rotation).

        :raises ReauthRequired: the refresh token is dead (invalid_grant family) or
            interaction is needed; ``claims`` set when the provider sent a challenge.
        :raises UpstreamUnavailable: throttled, 5xx or timeout (with Retry-After).
        """


class Queue(ABC):
    """The sweep's work queue (Storage queue ``tokenvault-refresh``)."""

    @abstractmethod
    def send(self, message: dict, *, delay: int = 0) -> None:
        """Enqueue one JSON message in the encoding the Functions host expects, visible
        after ``delay`` seconds.

        :raises UpstreamUnavailable: storage throttled or down.
        """

    @abstractmethod
    def poison(self, body: bytes) -> None:
        """Move a message that can never be worked to the poison queue as it was received
        (its body as the host handed it over), instead of letting the host retry it.

        :raises UpstreamUnavailable: storage throttled or down (the host then retries the
            message, and poisons it itself in the end).
        """

    @abstractmethod
    def poisoned(self) -> int:
        """About how many messages the host has moved to the poison queue."""


class Clock(ABC):
    @abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(timezone.utc)
