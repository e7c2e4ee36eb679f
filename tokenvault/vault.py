"""The use cases: store, redeem, describe, forget — and, by delegation, the sweep's step.

Composed from the ports only; nothing here knows Azure, MSAL or HTTP. Who may touch which
record is the HTTP layer's job; the vault holds the rules that hold whoever asks:
- only records of the allowed tenants (``allowed_tenants``; empty: any) are kept, read,
  redeemed or maintained, checked against the *record's* tenant before anything else is done;
- a grant's scopes are fixed at store time and never name TokenVault's own app, and a redeem
  may ask only for scopes the record holds — checked before any decrypt or identity-provider
  call.

Three rules shape every write, here and in ``record_keeping`` and ``sweep_step``:
- it is conditional on the ETag of the record it was derived from;
- when it loses that race, the record already stored wins unless it still holds the very
  refresh token we started from (then ours is newer and a redeem tries again; the sweep
  never does, so a redeem racing it always wins);
- a refresh token is dropped only when the identity provider said it is dead. Entra keeps old
  refresh tokens valid after rotation, so a rotation we fail to write loses nothing.

What the use cases and the sweep both do to a record (reads, keys, sealing, state-only
writes, the allowed-tenant check) is in ``tokenvault.record_keeping``; the sweep's step
(``maintain``, ``sweep_batch``) is in ``tokenvault.sweep_step``, which ``Vault`` delegates to
so the sweep's worker and the tests keep one object to call. What the sweep decides to do
with a record is ``tokenvault.maintenance.decide``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from .access_cache import AccessTokenCache
from .errors import (
    BadRequest,
    InsufficientPermissions,
    NotFound,
    OfflineAccessMissing,
    ReauthRequired,
    RecordConflict,
    ScopeNotStored,
    UpstreamUnavailable,
)
from .maintenance import Outcome
from .model import Caller, RecordKey, Status, TokenGrant, TokenRecord
from .ports import Clock, IdentityProvider, Keys, Records
from .record_keeping import RecordKeeper, event, opened, sealed
from .scopes import beyond, names_app, without_reserved
from .sensitive import Sensitive
from .singleflight import SingleFlight
from .sweep_step import SweepStep, SweptBatch

__all__ = ["Vault"]

log = logging.getLogger("tokenvault.vault")

# A lost race is retried this often before the caller is asked to retry later.
_WRITE_ATTEMPTS = 3


class Vault:
    def __init__(self, *, client_id: str, keys: Keys, records: Records,
                 identity: IdentityProvider, clock: Clock,
                 access_tokens: AccessTokenCache | None = None,
                 allowed_tenants: frozenset[str] = frozenset()) -> None:
        self._client_id = client_id
        self._records = records
        self._identity = identity
        self._clock = clock
        self._access = access_tokens
        self._flights: SingleFlight[TokenGrant] = SingleFlight()
        self._kept = RecordKeeper(keys=keys, records=records, clock=clock,
                                  access_tokens=access_tokens, allowed_tenants=allowed_tenants)
        self._sweep = SweepStep(kept=self._kept, client_id=client_id, records=records,
                                identity=identity)

    # Tests seal a rival writer's record with it, as store seals ours.
    _sealed = staticmethod(sealed)

    # --- store -------------------------------------------------------------------------

    def store(self, caller: Caller, scopes: Sequence[str]) -> TokenRecord:
        """Exchange the caller's token (OBO) and keep the refresh token, encrypted."""
        if not caller.is_user or caller.assertion is None or caller.object_id is None:
            raise InsufficientPermissions("Only a user may store their own token.")
        key = RecordKey(caller.tenant_id, caller.object_id)
        self._kept.require_allowed(key.tenant_id)
        if any(names_app(scope, self._client_id) for scope in scopes):
            # A grant for the vault itself would let an app that may only redeem act as the
            # user on every route of ours.
            raise BadRequest("scopes may not name TokenVault's own app.", field="scopes")
        # Without a key there is nowhere to put the token: fail before asking the IdP for one.
        latest = self._kept.latest_key(key.tenant_id)
        grant = self._identity.on_behalf_of(key.tenant_id, caller.assertion, scopes)
        if not grant.refresh_token:
            raise OfflineAccessMissing()
        now = self._clock.now()
        for _ in range(_WRITE_ATTEMPTS):
            existing = self._kept.read_or_none(key)
            write_key = self._kept.sealing_key(latest, existing)
            record = TokenRecord(
                tenant_id=key.tenant_id, user_id=key.user_id, client_id=self._client_id,
                key_version=write_key.version, ciphertext=b"", status=Status.ACTIVE,
                scopes=without_reserved(scopes),
                created_at=existing.created_at if existing else now,
                refreshed_at=now, etag=existing.etag if existing else None)
            record = self._sealed(record, write_key, grant.refresh_token)
            try:
                stored = self._records.update(record) if existing else self._records.create(record)
            except (RecordConflict, NotFound):
                continue  # another writer between our read and write: read again
            log.info("stored", extra=event(key, key_version=stored.key_version))
            return stored
        raise UpstreamUnavailable("The record is changing too often; retry.", retry_after=1,
                                  upstream="storage")

    # --- redeem ------------------------------------------------------------------------

    def redeem(self, key: RecordKey, scopes: Sequence[str]) -> TokenGrant:
        """A fresh access token for the stored user. Concurrent calls in one process for the
        same user and scopes share one identity-provider call."""
        self._kept.require_allowed(key.tenant_id)
        if any(names_app(scope, self._client_id) for scope in scopes):
            raise ScopeNotStored()  # never a stored grant: refused before the record is read
        flight = (key.tenant_id, key.user_id, frozenset(s.lower() for s in scopes))
        return self._flights.do(flight, lambda: self._redeem(key, tuple(scopes)))

    def _redeem(self, key: RecordKey, scopes: tuple[str, ...]) -> TokenGrant:
        record = self._kept.read(key)
        self._require_stored_scopes(record, scopes)
        self._require_redeemable(record)
        tenant_key = self._kept.key_of(record)
        cache_key = AccessTokenCache.key(key.tenant_id, key.user_id, self._client_id, scopes)
        # Served from memory only after the record and its key were checked just now.
        if self._access is not None and record.status is Status.ACTIVE:
            cached = self._access.get(cache_key, self._clock.now())
            if cached is not None:
                return replace(cached, from_cache=True)
        refresh_token = opened(record, tenant_key)
        try:
            grant = self._identity.refresh(key.tenant_id, refresh_token, scopes)
        except ReauthRequired as refused:
            if not refused.grant_dead:
                # Consent, a step-up, scopes refused, a code we do not know: the caller must
                # bring the user back, and the stored token is left exactly as it was.
                raise
            record, grant = self._retry_if_raced(record, scopes, refused)
        if grant.refresh_token or record.status is not Status.ACTIVE:
            self._write_back_for_redeem(record, grant.refresh_token)
        if self._access is not None:
            self._access.put(cache_key, grant, self._clock.now())
        log.info("redeemed", extra=event(key, rotated=bool(grant.refresh_token)))
        return grant

    def _retry_if_raced(self, record: TokenRecord, scopes: tuple[str, ...],
                        dead: ReauthRequired) -> tuple[TokenRecord, TokenGrant]:
        """invalid_grant for a token that was replaced meanwhile is a race, not a revocation:
        try once more with the newer token. Otherwise the token is dead."""
        current = self._kept.read(record.key)
        if current.ciphertext != record.ciphertext and current.redeemable:
            token = opened(current, self._kept.key_of(current))
            try:
                return current, self._identity.refresh(current.tenant_id, token, scopes)
            except ReauthRequired as again:
                if not again.grant_dead:
                    raise
                dead = again
        self._kept.mark_dead(current, dead)
        raise dead

    def _write_back_for_redeem(self, record: TokenRecord, token: Sensitive[str] | None) -> None:
        """After a redeem: write the rotated ``token`` (None: the IdP kept the old one, which
        stays stored) and mark the record active.

        When the record changed since it was read, ours wins only if the stored one still
        holds the refresh token we started from (then we write again over it); otherwise the
        stored record is newer and is kept.
        """
        for _ in range(_WRITE_ATTEMPTS):
            updated = self._kept.refreshed(record) if token else record
            try:
                self._records.update(self._kept.resealed(updated, token))
                return
            except RecordConflict:
                current = self._kept.read(record.key)
                if current.ciphertext != record.ciphertext:
                    return  # a newer token is already stored
                record = current

    def _require_stored_scopes(self, record: TokenRecord, scopes: Sequence[str]) -> None:
        if beyond(scopes, record.scopes):
            raise ScopeNotStored()

    def _require_redeemable(self, record: TokenRecord) -> None:
        if record.client_id != self._client_id:
            # Stored for another app registration: its refresh token is useless to us.
            raise ReauthRequired(reason="client_mismatch")
        if record.status is Status.REAUTH_REQUIRED or not record.ciphertext:
            raise ReauthRequired(reason=record.last_error or "invalid_grant")

    # --- describe, forget ----------------------------------------------------------------

    def describe(self, key: RecordKey) -> TokenRecord:
        self._kept.require_allowed(key.tenant_id)
        return self._kept.read(key)

    def forget(self, key: RecordKey) -> None:
        self._kept.require_allowed(key.tenant_id)
        if self._access is not None:
            self._access.forget_user(key.tenant_id, key.user_id)
        self._records.delete(key)
        log.info("forgotten", extra=event(key))

    # --- the sweep's step and the policy it shares (sweep_step, record_keeping) ----------

    def maintain(self, key: RecordKey, *, refresh_before: datetime,
                 record: TokenRecord | None = None) -> Outcome:
        """Bring one record up to date (``SweepStep.maintain``)."""
        return self._sweep.maintain(key, refresh_before=refresh_before, record=record)

    def sweep_batch(self, tenant_id: str, refresh_before: Mapping[str, datetime]) -> SweptBatch:
        """The sweep's step for a batch of one tenant's users (``SweepStep.sweep_batch``)."""
        return self._sweep.sweep_batch(tenant_id, refresh_before)

    def keeps(self, tenant_id: str) -> bool:
        """Whether records of ``tenant_id`` are kept here (``TOKENVAULT_ALLOWED_TENANTS``)."""
        return self._kept.keeps(tenant_id)
