"""Small in-memory fakes of the ports, for unit tests of the core.

They subclass the real ports and keep the same contracts (ETags, conflicts, errors), so a
test of the vault against them checks the vault, not the fake. Integration tests use the real
adapters against Azurite and the HTTPS fakes instead.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from tests.support.leaks import remember
from tokenvault.errors import (
    BadRequest,
    NotFound,
    OfflineAccessMissing,
    ReauthRequired,
    RecordConflict,
    TenantNotOnboarded,
    TenantRevoked,
    UpstreamUnavailable,
)
from tokenvault.model import RecordKey, RecordSummary, TenantKey, TokenGrant, TokenRecord
from tokenvault.ports import Clock, IdentityProvider, Keys, Page, Records
from tokenvault.sensitive import Sensitive

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


class FixedClock(Clock):
    def __init__(self, now: datetime = T0) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment

    def advance(self, **delta) -> None:
        self.moment += timedelta(**delta)


class FakeKeys(Keys):
    """Tenant keys with versions oldest first; ``stale_latest`` pins what ``latest`` answers,
    like an instance whose cache has not seen a rotation yet."""

    def __init__(self) -> None:
        self.versions: dict[str, list[TenantKey]] = {}
        self.stale_latest: dict[str, TenantKey] = {}
        #: tenant → the error every read of its key raises (malformed, refused, unreachable).
        self.failing: dict[str, Exception] = {}
        self.calls = Counter()
        self._created = itertools.count()

    def onboard(self, tenant_id: str) -> TenantKey:
        return self.rotate(tenant_id)

    def rotate(self, tenant_id: str) -> TenantKey:
        material = os.urandom(32)
        remember(material)
        key = TenantKey(tenant_id, secrets.token_hex(16), Sensitive(material),
                        T0 + timedelta(seconds=next(self._created)))
        self.versions.setdefault(tenant_id, []).append(key)
        return key

    def revoke(self, tenant_id: str) -> list[TenantKey]:
        return self.versions.pop(tenant_id)

    def restore(self, tenant_id: str, keys: list[TenantKey]) -> None:
        self.versions[tenant_id] = keys

    def latest(self, tenant_id: str) -> TenantKey:
        self.calls["latest"] += 1
        if tenant_id in self.failing:
            raise self.failing[tenant_id]
        if tenant_id in self.stale_latest:
            return self.stale_latest[tenant_id]
        if not self.versions.get(tenant_id):
            raise TenantNotOnboarded()
        return self.versions[tenant_id][-1]

    def get(self, tenant_id: str, version: str) -> TenantKey:
        self.calls["get"] += 1
        if tenant_id in self.failing:
            raise self.failing[tenant_id]
        for key in self.versions.get(tenant_id, ()):
            if key.version == version:
                return key
        raise TenantRevoked()


class FakeRecords(Records):
    """Rows with ETags. ``before_update`` runs inside ``update`` before the ETag check, so a
    test can slip a concurrent writer (or a crash) in at exactly that point."""

    def __init__(self) -> None:
        self.rows: dict[RecordKey, TokenRecord] = {}
        self.writes = Counter()
        self.before_update: Callable[[TokenRecord], None] | None = None
        self.before_update_many: Callable[[list[TokenRecord]], None] | None = None
        self.reads = Counter()
        self._lock = threading.Lock()
        self._etags = itertools.count(1)

    def _stamp(self, record: TokenRecord) -> TokenRecord:
        stored = record.evolve(etag=f'W/"{next(self._etags)}"')
        self.rows[record.key] = stored
        return stored

    def get(self, key: RecordKey) -> TokenRecord:
        self.reads["get"] += 1
        with self._lock:
            if key not in self.rows:
                raise NotFound()
            return self.rows[key]

    def get_many(self, tenant_id: str, user_ids) -> dict[str, TokenRecord]:
        self.reads["get_many"] += 1
        with self._lock:
            return {u: self.rows[RecordKey(tenant_id, u)] for u in user_ids
                    if RecordKey(tenant_id, u) in self.rows}

    def create(self, record: TokenRecord) -> TokenRecord:
        with self._lock:
            if record.key in self.rows:
                raise RecordConflict()
            self.writes["create"] += 1
            return self._stamp(record)

    def update(self, record: TokenRecord) -> TokenRecord:
        hook, self.before_update = self.before_update, None
        if hook:
            hook(record)
        with self._lock:
            current = self.rows.get(record.key)
            if current is None:
                raise NotFound()
            if current.etag != record.etag:
                raise RecordConflict()
            self.writes["update"] += 1
            return self._stamp(record)

    def update_many(self, records) -> list[TokenRecord | None]:
        """As on Table storage: transactions of at most 100, all or nothing, a transaction
        refused for one record sent again without it. ``before_update_many`` runs first, with
        the records, so a test can change or delete some of them meanwhile."""
        if len({r.tenant_id for r in records}) > 1:
            raise ValueError("update_many takes records of one tenant (one partition)")
        if not all(r.etag for r in records):
            raise ValueError("update_many needs the ETag each record was read with")
        hook, self.before_update_many = self.before_update_many, None
        if hook:
            hook(list(records))
        written: list[TokenRecord | None] = [None] * len(records)
        for start in range(0, len(records), 100):
            pending = list(range(start, min(start + 100, len(records))))
            while pending:
                with self._lock:
                    stale = next((n for n, i in enumerate(pending)
                                  if self.rows.get(records[i].key) is None
                                  or self.rows[records[i].key].etag != records[i].etag), None)
                    if stale is None:
                        self.writes["transaction"] += 1
                        self.writes["update"] += len(pending)
                        for i in pending:
                            written[i] = self._stamp(records[i])
                        pending = []
                    else:
                        self.writes["refused_transaction"] += 1
                        pending.pop(stale)
        return written

    def put(self, record: TokenRecord) -> TokenRecord:
        """Test set-up and concurrent writers: an unconditional write."""
        with self._lock:
            return self._stamp(record)

    def delete(self, key: RecordKey, etag: str | None = None) -> None:
        with self._lock:
            current = self.rows.get(key)
            if current is None:
                raise NotFound()
            if etag is not None and etag != current.etag:
                raise RecordConflict()
            del self.rows[key]

    def scan(self, tenant_id=None, *, page_size=1000, continuation=None) -> Page:
        rows = sorted((r for r in self.rows.values() if tenant_id in (None, r.tenant_id)),
                      key=lambda r: (r.tenant_id, r.user_id))
        if continuation is not None and not continuation.isdigit():
            raise BadRequest("continuation is not a token this service issued.", field="continuation")
        start = int(continuation or 0)
        chunk = rows[start:start + page_size]
        after = start + page_size
        return Page([RecordSummary(r.tenant_id, r.user_id, r.key_version, r.status,
                                   r.refreshed_at) for r in chunk],
                    str(after) if after < len(rows) else None)

    def tenant_has_records(self, tenant_id: str) -> bool:
        return any(k.tenant_id == tenant_id for k in self.rows)


class FakeIdentityProvider(IdentityProvider):
    """Issues opaque tokens, rotates refresh tokens (old ones stay valid, as at Entra), and
    fails on demand: ``fail_next`` is a list of exceptions raised by the next calls."""

    def __init__(self, clock: Clock, *, rotate: bool = True, latency: float = 0.0) -> None:
        self.clock = clock
        self.rotate = rotate
        self.latency = latency
        self.live: dict[str, RecordKey] = {}
        self.dead: set[str] = set()
        self.fail_next: list[Exception] = []
        #: runs at the start of the next refresh call: a concurrent actor slips in there.
        self.before_refresh: Callable[[], None] | None = None
        self.omit_refresh_token = False
        self.calls = Counter()
        self.issued_access: list[str] = []
        #: refresh calls in flight now, and the most ever in flight, per tenant.
        self.in_flight: Counter = Counter()
        self.most_in_flight: Counter = Counter()
        self._lock = threading.Lock()

    def issue_refresh_token(self, key: RecordKey) -> Sensitive[str]:
        token = "rt-" + secrets.token_urlsafe(24)
        remember(token)
        self.live[token] = key
        return Sensitive(token)

    def _grant(self, key: RecordKey, scopes: Sequence[str], refresh: bool) -> TokenGrant:
        access = "at-" + secrets.token_urlsafe(24)
        remember(access)
        self.issued_access.append(access)
        return TokenGrant(
            access_token=Sensitive(access),
            refresh_token=self.issue_refresh_token(key) if refresh else None,
            expires_on=int(self.clock.now().timestamp()) + 3600,
            scopes=tuple(scopes))

    def _maybe_fail(self) -> None:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            if self.fail_next:
                raise self.fail_next.pop(0)

    def on_behalf_of(self, tenant_id, assertion, scopes) -> TokenGrant:
        self.calls["obo"] += 1
        self._maybe_fail()
        user = assertion.reveal().split(":")[1]
        if self.omit_refresh_token:
            raise OfflineAccessMissing()
        return self._grant(RecordKey(tenant_id, user), scopes, refresh=True)

    def refresh(self, tenant_id, refresh_token, scopes) -> TokenGrant:
        with self._lock:
            self.calls["refresh"] += 1
            self.in_flight[tenant_id] += 1
            self.most_in_flight[tenant_id] = max(self.most_in_flight[tenant_id],
                                                 self.in_flight[tenant_id])
        try:
            hook, self.before_refresh = self.before_refresh, None
            if hook:
                hook()
            self._maybe_fail()
            token = refresh_token.reveal()
            if token in self.dead or token not in self.live:
                raise ReauthRequired(reason="invalid_grant", grant_dead=True)
            return self._grant(self.live[token], scopes, refresh=self.rotate)
        finally:
            with self._lock:
                self.in_flight[tenant_id] -= 1

    def kill(self, key: RecordKey) -> None:
        """Revoke every refresh token of the user, as an admin password reset does."""
        self.dead |= {t for t, k in self.live.items() if k == key}




def throttled(retry_after: int = 7) -> UpstreamUnavailable:
    return UpstreamUnavailable(retry_after=retry_after, upstream="identity_provider")
