"""The use cases: store, redeem, describe, forget — and maintain, the sweep's per-record step.

Composed from the ports only; nothing here knows Azure, MSAL or HTTP. Who may touch which
record is the HTTP layer's job; the vault holds the rules that hold whoever asks:
- only records of the allowed tenants (``allowed_tenants``; empty: any) are kept, read,
  redeemed or maintained, checked against the *record's* tenant before anything else is done;
- a grant's scopes are fixed at store time and never name TokenVault's own app, and a redeem
  may ask only for scopes the record holds — checked before any decrypt or identity-provider
  call.

Three rules shape every write here:
- it is conditional on the ETag of the record it was derived from;
- when it loses that race, the record already stored wins unless it still holds the very
  refresh token we started from (then ours is newer and a redeem tries again; the sweep
  never does, so a redeem racing it always wins);
- a refresh token is dropped only when the identity provider said it is dead. Entra keeps old
  refresh tokens valid after rotation, so a rotation we fail to write loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from .access_cache import AccessTokenCache
from .envelope import Binding, seal, unseal
from .errors import (
    BadRequest,
    CiphertextInvalid,
    InsufficientPermissions,
    NotFound,
    OfflineAccessMissing,
    ReauthRequired,
    RecordConflict,
    ScopeNotStored,
    TenantNotOnboarded,
    TenantRevoked,
    UpstreamUnavailable,
    VaultError,
)
from .maintenance import Outcome, Step, SweptBatch, decide, settled
from .model import Caller, RecordKey, Status, TenantKey, TokenGrant, TokenRecord
from .ports import Clock, IdentityProvider, Keys, Records
from .scopes import beyond, names_app, without_reserved
from .sensitive import Sensitive
from .singleflight import SingleFlight

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
        self._allowed = allowed_tenants
        self._keys = keys
        self._records = records
        self._identity = identity
        self._clock = clock
        self._access = access_tokens
        self._flights: SingleFlight[TokenGrant] = SingleFlight()

    # --- store -------------------------------------------------------------------------

    def store(self, caller: Caller, scopes: Sequence[str]) -> TokenRecord:
        """Exchange the caller's token (OBO) and keep the refresh token, encrypted."""
        if not caller.is_user or caller.assertion is None or caller.object_id is None:
            raise InsufficientPermissions("Only a user may store their own token.")
        key = RecordKey(caller.tenant_id, caller.object_id)
        self._require_allowed(key.tenant_id)
        if any(names_app(scope, self._client_id) for scope in scopes):
            # A grant for the vault itself would let an app that may only redeem act as the
            # user on every route of ours.
            raise BadRequest("scopes may not name TokenVault's own app.", field="scopes")
        # Without a key there is nowhere to put the token: fail before asking the IdP for one.
        latest = self._latest_key(key.tenant_id)
        grant = self._identity.on_behalf_of(key.tenant_id, caller.assertion, scopes)
        if not grant.refresh_token:
            raise OfflineAccessMissing()
        now = self._clock.now()
        for _ in range(_WRITE_ATTEMPTS):
            existing = self._read_or_none(key)
            write_key = self._sealing_key(latest, existing)
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
            log.info("stored", extra=_event(key, key_version=stored.key_version))
            return stored
        raise UpstreamUnavailable("The record is changing too often; retry.", retry_after=1,
                                  upstream="storage")

    # --- redeem ------------------------------------------------------------------------

    def redeem(self, key: RecordKey, scopes: Sequence[str]) -> TokenGrant:
        """A fresh access token for the stored user. Concurrent calls in one process for the
        same user and scopes share one identity-provider call."""
        self._require_allowed(key.tenant_id)
        if any(names_app(scope, self._client_id) for scope in scopes):
            raise ScopeNotStored()  # never a stored grant: refused before the record is read
        flight = (key.tenant_id, key.user_id, frozenset(s.lower() for s in scopes))
        return self._flights.do(flight, lambda: self._redeem(key, tuple(scopes)))

    def _redeem(self, key: RecordKey, scopes: tuple[str, ...]) -> TokenGrant:
        record = self._read(key)
        self._require_stored_scopes(record, scopes)
        self._require_redeemable(record)
        tenant_key = self._key_of(record)
        cache_key = AccessTokenCache.key(key.tenant_id, key.user_id, self._client_id, scopes)
        # Served from memory only after the record and its key were checked just now.
        if self._access is not None and record.status is Status.ACTIVE:
            cached = self._access.get(cache_key, self._clock.now())
            if cached is not None:
                return replace(cached, from_cache=True)
        refresh_token = self._open(record, tenant_key)
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
        log.info("redeemed", extra=_event(key, rotated=bool(grant.refresh_token)))
        return grant

    def _retry_if_raced(self, record: TokenRecord, scopes: tuple[str, ...],
                        dead: ReauthRequired) -> tuple[TokenRecord, TokenGrant]:
        """invalid_grant for a token that was replaced meanwhile is a race, not a revocation:
        try once more with the newer token. Otherwise the token is dead."""
        current = self._read(record.key)
        if current.ciphertext != record.ciphertext and current.redeemable:
            token = self._open(current, self._key_of(current))
            try:
                return current, self._identity.refresh(current.tenant_id, token, scopes)
            except ReauthRequired as again:
                if not again.grant_dead:
                    raise
                dead = again
        self._mark_dead(current, dead)
        raise dead

    # --- describe, forget ----------------------------------------------------------------

    def describe(self, key: RecordKey) -> TokenRecord:
        self._require_allowed(key.tenant_id)
        return self._read(key)

    def forget(self, key: RecordKey) -> None:
        self._require_allowed(key.tenant_id)
        if self._access is not None:
            self._access.forget_user(key.tenant_id, key.user_id)
        self._records.delete(key)
        log.info("forgotten", extra=_event(key))

    # --- maintain (the sweep's step) -----------------------------------------------------

    def maintain(self, key: RecordKey, *, refresh_before: datetime,
                 record: TokenRecord | None = None) -> Outcome:
        """Bring one record up to date: refresh it at the IdP if it was last refreshed before
        ``refresh_before``, else rewrap it if its key version is not the latest (``decide``).
        ``record``: the record as ``sweep_batch`` just read it (None: read it now).

        Safe to repeat: it decides on the record as it is now, and every write is conditional.
        Raises ``UpstreamUnavailable`` (after noting the failure on the record) so the caller
        can back off; other failures are reported as outcomes.
        """
        if not self.keeps(key.tenant_id):
            return Outcome.NOT_ALLOWED  # neither refreshed nor rewrapped: not a tenant of ours
        record = record if record is not None else self._read_or_none(key)
        if record is None or settled(record):
            return Outcome.SKIPPED  # decided before the keys are read: no Key Vault call for it
        tenant_key, sealing_version = self._sweep_keys(record)
        step = decide(record, sealing_version=sealing_version, refresh_before=refresh_before,
                      client_id=self._client_id)
        if step is Step.SKIP:
            return Outcome.SKIPPED
        if step is Step.MARK_REVOKED:
            return self._mark_revoked(record)
        if step is Step.RESTORE:
            return self._restore(record)
        assert tenant_key is not None  # decide marks the record revoked without one
        try:
            token = self._open(record, tenant_key)
        except CiphertextInvalid:
            self._note_failure(record, CiphertextInvalid.code)  # ops find it in LastError
            raise
        if step is Step.REWRAP:
            return Outcome.REWRAPPED if self._write_back_for_sweep(record, token) else Outcome.SKIPPED
        return self._sweep_refresh(record, token)

    def sweep_batch(self, tenant_id: str, refresh_before: Mapping[str, datetime]) -> SweptBatch:
        """The sweep's step for a batch of one tenant's users (``refresh_before``: user id →
        the moment before which that user's record is due), before anything is asked of the
        identity provider: the records are read together (``Records.get_many``); those that
        need only a rewrap are resealed and written together (``Records.update_many``, each
        write conditional on its record's ETag; one that changed or vanished meanwhile is
        skipped); every other record that needs work is handed back, as read, for
        ``maintain(key, record=...)``.

        :raises UpstreamUnavailable: storage or the key store failed for the batch as a whole.
        """
        swept, rewraps = SweptBatch(), []
        if not self.keeps(tenant_id):
            # Not a tenant whose records this vault keeps: not even read.
            swept.outcomes.update(dict.fromkeys(refresh_before, Outcome.NOT_ALLOWED))
            return swept
        found = self._records.get_many(tenant_id, list(refresh_before))
        for user, due in refresh_before.items():
            record = found.get(user)
            if record is None or settled(record):
                swept.outcomes[user] = Outcome.SKIPPED
                continue
            try:
                tenant_key, sealing_version = self._sweep_keys(record)
                step = decide(record, sealing_version=sealing_version, refresh_before=due,
                              client_id=self._client_id)
                if step is Step.REWRAP:
                    assert tenant_key is not None  # decide rewraps only with a key
                    rewraps.append(self._rewrapped(record, tenant_key))
                elif step is Step.SKIP:
                    swept.outcomes[user] = Outcome.SKIPPED
                else:
                    swept.pending.append(record)
            except UpstreamUnavailable:
                raise
            except VaultError as error:  # a key that is not 32 bytes, a ciphertext that does not open
                swept.outcomes[user], swept.failures[user] = Outcome.FAILED, error.code
        for record, written in zip(rewraps, self._records.update_many(rewraps), strict=True):
            swept.outcomes[record.user_id] = Outcome.REWRAPPED if written else Outcome.SKIPPED
        return swept

    def _rewrapped(self, record: TokenRecord, tenant_key: TenantKey) -> TokenRecord:
        """``record`` with its token sealed under the key to seal with now, made active."""
        try:
            token = self._open(record, tenant_key)
        except CiphertextInvalid:
            self._note_failure(record, CiphertextInvalid.code)  # ops find it in LastError
            raise
        return self._resealed(record, token)

    def _sweep_keys(self, record: TokenRecord) -> tuple[TenantKey | None, str | None]:
        """The record's own key, and the version a token of it would be sealed with now;
        (None, None) when the tenant's key is revoked or gone."""
        try:
            tenant_key = self._key_of(record)
            return tenant_key, self._sealing_key(self._keys.latest(record.tenant_id), record).version
        except (TenantRevoked, TenantNotOnboarded):
            return None, None

    def _sweep_refresh(self, record: TokenRecord, token: Sensitive[str]) -> Outcome:
        try:
            grant = self._identity.refresh(record.tenant_id, token, record.scopes)
        except ReauthRequired as refused:
            if not refused.grant_dead:
                # The token lives: keep it, and let ops see why this refresh failed.
                self._note_failure(record, refused.reason)
                return Outcome.FAILED
            self._mark_dead(record, refused)
            return Outcome.REAUTH_REQUIRED
        except UpstreamUnavailable:
            self._note_failure(record, "upstream_unavailable")
            raise
        # No rotation means the old token is still the one to keep; it is rewrapped all the same.
        written = self._write_back_for_sweep(self._refreshed(record), grant.refresh_token or token)
        return Outcome.REFRESHED if written else Outcome.SKIPPED

    # --- writes ------------------------------------------------------------------------

    def _write_back_for_redeem(self, record: TokenRecord, token: Sensitive[str] | None) -> None:
        """After a redeem: write the rotated ``token`` (None: the IdP kept the old one, which
        stays stored) and mark the record active.

        When the record changed since it was read, ours wins only if the stored one still
        holds the refresh token we started from (then we write again over it); otherwise the
        stored record is newer and is kept.
        """
        for _ in range(_WRITE_ATTEMPTS):
            updated = self._refreshed(record) if token else record
            try:
                self._records.update(self._resealed(updated, token))
                return
            except RecordConflict:
                current = self._read(record.key)
                if current.ciphertext != record.ciphertext:
                    return  # a newer token is already stored
                record = current

    def _write_back_for_sweep(self, record: TokenRecord, token: Sensitive[str]) -> bool:
        """The sweep's write: ``token`` under the sealing key, the record active. It never
        retries: a redeem that changed the record meanwhile knew more, and wins.
        Returns whether ours was written."""
        try:
            self._records.update(self._resealed(record, token))
            return True
        except RecordConflict:
            return False

    def _resealed(self, record: TokenRecord, token: Sensitive[str] | None) -> TokenRecord:
        """``record`` made active, with ``token`` sealed under the key to seal with (None: the
        stored ciphertext is kept as it is)."""
        updated = record.evolve(status=Status.ACTIVE)
        if token is None:
            return updated
        return self._sealed(updated, self._sealing_key(self._keys.latest(record.tenant_id), record),
                            token)

    def _refreshed(self, record: TokenRecord) -> TokenRecord:
        """``record`` as after a successful use of its token at the IdP."""
        return record.evolve(refreshed_at=self._clock.now(), failure_count=0, last_error=None)

    def _mark_dead(self, record: TokenRecord, dead: ReauthRequired) -> None:
        if not dead.grant_dead:
            return  # only the identity provider saying the token is dead erases it
        dropped = record.evolve(status=Status.REAUTH_REQUIRED, ciphertext=b"",
                                last_error=dead.reason, failure_count=record.failure_count + 1)
        if self._update_quietly(dropped):
            log.warning("refresh token dead", extra=_event(record.key, reason=dead.reason))

    def _mark_revoked(self, record: TokenRecord) -> Outcome:
        if record.status is not Status.REVOKED:
            self._update_quietly(record.evolve(status=Status.REVOKED, last_error="tenant_revoked"))
        if self._access is not None:
            self._access.forget_tenant(record.tenant_id)
        return Outcome.REVOKED

    def _restore(self, record: TokenRecord) -> Outcome:
        restored = self._update_quietly(record.evolve(status=Status.ACTIVE, last_error=None))
        return Outcome.RESTORED if restored else Outcome.SKIPPED

    def _note_failure(self, record: TokenRecord, code: str) -> None:
        self._update_quietly(record.evolve(failure_count=record.failure_count + 1,
                                           last_error=code))

    def _update_quietly(self, record: TokenRecord) -> bool:
        """A conditional write whose loss is fine: whoever changed the record knew more."""
        try:
            self._records.update(record)
            return True
        except (RecordConflict, NotFound):
            return False

    # --- policy ---------------------------------------------------------------------------

    def keeps(self, tenant_id: str) -> bool:
        """Whether records of ``tenant_id`` are kept here (``TOKENVAULT_ALLOWED_TENANTS``)."""
        return not self._allowed or tenant_id in self._allowed

    def _require_allowed(self, tenant_id: str) -> None:
        if not self.keeps(tenant_id):
            raise TenantNotOnboarded("The vault keeps no records of this tenant.")

    def _require_stored_scopes(self, record: TokenRecord, scopes: Sequence[str]) -> None:
        if beyond(scopes, record.scopes):
            raise ScopeNotStored()

    # --- keys and records ----------------------------------------------------------------

    def _latest_key(self, tenant_id: str) -> TenantKey:
        try:
            return self._keys.latest(tenant_id)
        except TenantNotOnboarded:
            # No key but records: the key was deleted, which is how ops revoke a tenant.
            if self._records.tenant_has_records(tenant_id):
                raise TenantRevoked() from None
            raise

    def _sealing_key(self, latest: TenantKey, existing: TokenRecord | None) -> TenantKey:
        """The key to seal a token with: the latest, unless the stored record is on a version newer
        than our cached "latest" (another instance saw a rotation first). Never backwards."""
        if existing is None or existing.key_version == latest.version:
            return latest
        try:
            theirs = self._keys.get(latest.tenant_id, existing.key_version)
        except TenantRevoked:
            return latest
        return theirs if theirs.newer_than(latest) else latest

    def _key_of(self, record: TokenRecord) -> TenantKey:
        try:
            return self._keys.get(record.tenant_id, record.key_version)
        except TenantRevoked:
            if self._access is not None:
                self._access.forget_tenant(record.tenant_id)
            raise

    def _read(self, key: RecordKey) -> TokenRecord:
        try:
            return self._records.get(key)
        except NotFound:
            if self._access is not None:
                self._access.forget_user(key.tenant_id, key.user_id)
            raise

    def _read_or_none(self, key: RecordKey) -> TokenRecord | None:
        try:
            return self._records.get(key)
        except NotFound:
            return None

    def _require_redeemable(self, record: TokenRecord) -> None:
        if record.client_id != self._client_id:
            # Stored for another app registration: its refresh token is useless to us.
            raise ReauthRequired(reason="client_mismatch")
        if record.status is Status.REAUTH_REQUIRED or not record.ciphertext:
            raise ReauthRequired(reason=record.last_error or "invalid_grant")

    @staticmethod
    def _open(record: TokenRecord, key: TenantKey) -> Sensitive[str]:
        """The record's refresh token. A ciphertext that does not open (tampered, truncated,
        moved from another row) fails closed and is logged with the record's ids, never bytes."""
        try:
            return unseal(key.material, record.ciphertext, _binding(record))
        except CiphertextInvalid:
            log.error("stored ciphertext does not open", extra=_event(
                record.key, code=CiphertextInvalid.code, key_version=record.key_version))
            raise

    @staticmethod
    def _sealed(record: TokenRecord, key: TenantKey, token: Sensitive[str]) -> TokenRecord:
        record = record.evolve(key_version=key.version)
        return record.evolve(ciphertext=seal(key.material, token, _binding(record)))


def _binding(record: TokenRecord) -> Binding:
    return Binding(record.tenant_id, record.user_id, record.client_id, record.key_version)


def _event(key: RecordKey, **fields: Any) -> dict:
    return {"tenant_id": key.tenant_id, "user_id": key.user_id, **fields}
