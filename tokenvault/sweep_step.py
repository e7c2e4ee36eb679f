"""The sweep's step on records: ``maintain`` one, or ``sweep_batch`` a tenant's batch.

What to do with a record is ``maintenance.decide``'s call on the record as read; this module
carries it out on the ports, with the primitives the use cases use too (``record_keeping``).
``Vault.maintain`` and ``Vault.sweep_batch`` delegate here: the sweep's worker and the tests
keep one object to call, and ``vault.py`` keeps only the use cases callers ask for.

The vault's write rules hold here as there (see ``tokenvault.vault``); what is the sweep's own
is that it never retries a write it lost: a redeem that changed the record meanwhile knew
more, and wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .errors import (
    CiphertextInvalid,
    ReauthRequired,
    RecordConflict,
    TenantNotOnboarded,
    TenantRevoked,
    UpstreamUnavailable,
    VaultError,
)
from .maintenance import Outcome, Step, decide, settled
from .model import RecordKey, TenantKey, TokenRecord
from .ports import IdentityProvider, Records
from .record_keeping import RecordKeeper, opened
from .sensitive import Sensitive

__all__ = ["SweepStep", "SweptBatch"]


@dataclass
class SweptBatch:
    """What ``Vault.sweep_batch`` did with a batch, and what it left to be done one by one."""

    #: user id → outcome, for the records it settled (rewrapped, skipped, failed).
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    #: user id → error code, for the failed ones among them (for the log; never a secret).
    failures: dict[str, str] = field(default_factory=dict)
    #: records as read that need a step of their own (a refresh above all), in batch order.
    pending: list[TokenRecord] = field(default_factory=list)


class SweepStep:
    def __init__(self, *, kept: RecordKeeper, client_id: str, records: Records,
                 identity: IdentityProvider) -> None:
        self._kept = kept
        self._client_id = client_id
        self._records = records
        self._identity = identity

    def maintain(self, key: RecordKey, *, refresh_before: datetime,
                 record: TokenRecord | None = None) -> Outcome:
        """Bring one record up to date: refresh it at the IdP if it was last refreshed before
        ``refresh_before``, else rewrap it if its key version is not the latest (``decide``).
        ``record``: the record as ``sweep_batch`` just read it (None: read it now).

        Safe to repeat: it decides on the record as it is now, and every write is conditional.
        Raises ``UpstreamUnavailable`` (after noting the failure on the record) so the caller
        can back off; other failures are reported as outcomes.
        """
        if not self._kept.keeps(key.tenant_id):
            return Outcome.NOT_ALLOWED  # neither refreshed nor rewrapped: not a tenant of ours
        record = record if record is not None else self._kept.read_or_none(key)
        if record is None or settled(record):
            return Outcome.SKIPPED  # decided before the keys are read: no Key Vault call for it
        tenant_key, sealing_version = self._sweep_keys(record)
        step = decide(record, sealing_version=sealing_version, refresh_before=refresh_before,
                      client_id=self._client_id)
        if step is Step.SKIP:
            return Outcome.SKIPPED
        if step is Step.MARK_REVOKED:
            self._kept.mark_revoked(record)
            return Outcome.REVOKED
        if step is Step.RESTORE:
            return Outcome.RESTORED if self._kept.restore(record) else Outcome.SKIPPED
        assert tenant_key is not None  # decide marks the record revoked without one
        token = self._token_of(record, tenant_key)
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
        if not self._kept.keeps(tenant_id):
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
        return self._kept.resealed(record, self._token_of(record, tenant_key))

    def _token_of(self, record: TokenRecord, tenant_key: TenantKey) -> Sensitive[str]:
        """The record's token; a ciphertext that does not open is noted on the record and raised."""
        try:
            return opened(record, tenant_key)
        except CiphertextInvalid:
            self._kept.note_failure(record, CiphertextInvalid.code)  # ops find it in LastError
            raise

    def _sweep_keys(self, record: TokenRecord) -> tuple[TenantKey | None, str | None]:
        """The record's own key, and the version a token of it would be sealed with now;
        (None, None) when the tenant's key is revoked or gone."""
        try:
            tenant_key = self._kept.key_of(record)
            return tenant_key, self._kept.sealing_key_of(record).version
        except (TenantRevoked, TenantNotOnboarded):
            return None, None

    def _sweep_refresh(self, record: TokenRecord, token: Sensitive[str]) -> Outcome:
        try:
            grant = self._identity.refresh(record.tenant_id, token, record.scopes)
        except ReauthRequired as refused:
            if not refused.grant_dead:
                # The token lives: keep it, and let ops see why this refresh failed.
                self._kept.note_failure(record, refused.reason)
                return Outcome.FAILED
            self._kept.mark_dead(record, refused)
            return Outcome.REAUTH_REQUIRED
        except UpstreamUnavailable:
            self._kept.note_failure(record, "upstream_unavailable")
            raise
        # No rotation means the old token is still the one to keep; it is rewrapped all the same.
        written = self._write_back_for_sweep(self._kept.refreshed(record), grant.refresh_token or token)
        return Outcome.REFRESHED if written else Outcome.SKIPPED

    def _write_back_for_sweep(self, record: TokenRecord, token: Sensitive[str]) -> bool:
        """The sweep's write: ``token`` under the sealing key, the record active. It never
        retries: a redeem that changed the record meanwhile knew more, and wins.
        Returns whether ours was written."""
        try:
            self._records.update(self._kept.resealed(record, token))
            return True
        except RecordConflict:
            return False
