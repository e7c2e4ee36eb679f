"""What the use cases (``tokenvault.vault``) and the sweep's step (``tokenvault.sweep_step``)
both do to a record and its keys, in one place so the two apply the same rules:

- which tenants are kept (``keeps``), checked against the record's tenant first;
- which key a token is sealed with: the tenant's latest, or the record's own when that is newer
  (``sealing_key``: never backwards); no key but records means the tenant is revoked;
- a record found gone, or a key found revoked, is forgotten by the access-token cache too;
- how a token is opened and sealed (bound to the record's identity), and a record resealed or
  marked refreshed;
- the writes that change only a record's state (dead, revoked, restored, a failure noted): each
  conditional, and losing one is fine.

The writes that carry a token back (a redeem's retried one, the sweep's one-shot one) differ
by caller, and stay with it.
"""

from __future__ import annotations

import logging
from typing import Any

from .access_cache import AccessTokenCache
from .envelope import Binding, seal, unseal
from .errors import (
    CiphertextInvalid,
    NotFound,
    ReauthRequired,
    RecordConflict,
    TenantNotOnboarded,
    TenantRevoked,
)
from .model import RecordKey, Status, TenantKey, TokenRecord
from .ports import Clock, Keys, Records
from .sensitive import Sensitive

__all__ = ["RecordKeeper", "event", "opened", "sealed"]

# The vault's logger: these records are the vault's, and keep the name they had in vault.py.
log = logging.getLogger("tokenvault.vault")


class RecordKeeper:
    """A record and its keys, on the ports: reads, keys, sealing, and state-only writes."""

    def __init__(self, *, keys: Keys, records: Records, clock: Clock,
                 access_tokens: AccessTokenCache | None,
                 allowed_tenants: frozenset[str]) -> None:
        self._allowed = allowed_tenants
        self._keys = keys
        self._records = records
        self._clock = clock
        self._access = access_tokens

    # --- policy ---------------------------------------------------------------------------

    def keeps(self, tenant_id: str) -> bool:
        """Whether records of ``tenant_id`` are kept here (``TOKENVAULT_ALLOWED_TENANTS``)."""
        return not self._allowed or tenant_id in self._allowed

    def require_allowed(self, tenant_id: str) -> None:
        if not self.keeps(tenant_id):
            raise TenantNotOnboarded("The vault keeps no records of this tenant.")

    # --- keys -----------------------------------------------------------------------------

    def latest_key(self, tenant_id: str) -> TenantKey:
        try:
            return self._keys.latest(tenant_id)
        except TenantNotOnboarded:
            # No key but records: the key was deleted, which is how ops revoke a tenant.
            if self._records.tenant_has_records(tenant_id):
                raise TenantRevoked() from None
            raise

    def sealing_key(self, latest: TenantKey, existing: TokenRecord | None) -> TenantKey:
        """The key to seal a token with: the latest, unless the stored record is on a version newer
        than our cached "latest" (another instance saw a rotation first). Never backwards."""
        if existing is None or existing.key_version == latest.version:
            return latest
        try:
            theirs = self._keys.get(latest.tenant_id, existing.key_version)
        except TenantRevoked:
            return latest
        return theirs if theirs.newer_than(latest) else latest

    def sealing_key_of(self, record: TokenRecord) -> TenantKey:
        """The key to seal a new token of ``record`` with now (``sealing_key`` on the tenant's
        latest key as the key store has it)."""
        return self.sealing_key(self._keys.latest(record.tenant_id), record)

    def key_of(self, record: TokenRecord) -> TenantKey:
        try:
            return self._keys.get(record.tenant_id, record.key_version)
        except TenantRevoked:
            if self._access is not None:
                self._access.forget_tenant(record.tenant_id)
            raise

    # --- reads ----------------------------------------------------------------------------

    def read(self, key: RecordKey) -> TokenRecord:
        try:
            return self._records.get(key)
        except NotFound:
            if self._access is not None:
                self._access.forget_user(key.tenant_id, key.user_id)
            raise

    def read_or_none(self, key: RecordKey) -> TokenRecord | None:
        try:
            return self._records.get(key)
        except NotFound:
            return None

    # --- records as they are to be written ----------------------------------------------

    def resealed(self, record: TokenRecord, token: Sensitive[str] | None) -> TokenRecord:
        """``record`` made active, with ``token`` sealed under the key to seal with (None: the
        stored ciphertext is kept as it is)."""
        updated = record.evolve(status=Status.ACTIVE)
        if token is None:
            return updated
        return sealed(updated, self.sealing_key_of(record), token)

    def refreshed(self, record: TokenRecord) -> TokenRecord:
        """``record`` as after a successful use of its token at the IdP."""
        return record.evolve(refreshed_at=self._clock.now(), failure_count=0, last_error=None)

    # --- state-only writes ----------------------------------------------------------------

    def mark_dead(self, record: TokenRecord, dead: ReauthRequired) -> None:
        if not dead.grant_dead:
            return  # only the identity provider saying the token is dead erases it
        dropped = record.evolve(status=Status.REAUTH_REQUIRED, ciphertext=b"",
                                last_error=dead.reason, failure_count=record.failure_count + 1)
        if self.update_quietly(dropped):
            log.warning("refresh token dead", extra=event(record.key, reason=dead.reason))

    def mark_revoked(self, record: TokenRecord) -> None:
        if record.status is not Status.REVOKED:
            self.update_quietly(record.evolve(status=Status.REVOKED, last_error="tenant_revoked"))
        if self._access is not None:
            self._access.forget_tenant(record.tenant_id)

    def restore(self, record: TokenRecord) -> bool:
        """Whether the record, its tenant's key back, was written active again."""
        return self.update_quietly(record.evolve(status=Status.ACTIVE, last_error=None))

    def note_failure(self, record: TokenRecord, code: str) -> None:
        self.update_quietly(record.evolve(failure_count=record.failure_count + 1,
                                          last_error=code))

    def update_quietly(self, record: TokenRecord) -> bool:
        """A conditional write whose loss is fine: whoever changed the record knew more."""
        try:
            self._records.update(record)
            return True
        except (RecordConflict, NotFound):
            return False


def opened(record: TokenRecord, key: TenantKey) -> Sensitive[str]:
    """The record's refresh token. A ciphertext that does not open (tampered, truncated,
    moved from another row) fails closed and is logged with the record's ids, never bytes."""
    try:
        return unseal(key.material, record.ciphertext, _binding(record))
    except CiphertextInvalid:
        log.error("stored ciphertext does not open", extra=event(
            record.key, code=CiphertextInvalid.code, key_version=record.key_version))
        raise


def sealed(record: TokenRecord, key: TenantKey, token: Sensitive[str]) -> TokenRecord:
    """``record`` holding ``token`` sealed under ``key``."""
    record = record.evolve(key_version=key.version)
    return record.evolve(ciphertext=seal(key.material, token, _binding(record)))


def event(key: RecordKey, **fields: Any) -> dict:
    """A log record's fields about ``key``'s record: ids, never secrets."""
    return {"tenant_id": key.tenant_id, "user_id": key.user_id, **fields}


def _binding(record: TokenRecord) -> Binding:
    return Binding(record.tenant_id, record.user_id, record.client_id, record.key_version)
