"""The sweep's decision on one record, apart from the I/O that carries it out.

``decide`` looks at a record as read and says what the sweep's step (``tokenvault.sweep_step``,
behind ``Vault.maintain`` and ``Vault.sweep_batch``) is to do with it (a ``Step``); ``Outcome``
is what maintain reports it did. Both are plain values: the decision is tested on records
alone, without ports.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from .model import Status, TokenRecord

__all__ = ["Outcome", "Step", "decide", "settled"]


class Outcome(str, Enum):
    """What ``maintain`` did to one record."""

    REWRAPPED = "rewrapped"
    REFRESHED = "refreshed"
    RESTORED = "restored"  # the tenant's key is back: `revoked` → `active`
    REAUTH_REQUIRED = "reauth_required"
    REVOKED = "revoked"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to do, or someone else changed or deleted it meanwhile
    NOT_ALLOWED = "tenant_not_allowed"  # not a tenant in TOKENVAULT_ALLOWED_TENANTS: untouched


class Step(Enum):
    """What ``maintain`` is to do with a record, as ``decide`` sees it."""

    SKIP = "skip"
    MARK_REVOKED = "mark_revoked"  # the tenant's key is gone
    RESTORE = "restore"  # the tenant's key is back, and the record needs nothing else
    REWRAP = "rewrap"  # seal the same token under the newer key
    REFRESH = "refresh"  # redeem the token at the IdP, and seal what comes back


def decide(record: TokenRecord, *, sealing_version: str | None, refresh_before: datetime,
           client_id: str) -> Step:
    """The sweep's decision on one record as read; ``maintain`` acts on it.

    ``sealing_version`` is the version of the key a token of this record would be sealed with
    now (the latest, or the record's own if newer), or None when the tenant's key is revoked or
    gone. ``refresh_before``: a record last refreshed before it is due. ``client_id``: ours;
    a record stored for another app registration holds a token we cannot use.
    """
    if settled(record):
        return Step.SKIP
    if sealing_version is None:
        return Step.MARK_REVOKED
    if not record.ciphertext or record.client_id != client_id:
        return Step.SKIP
    if record.refreshed_at < refresh_before:
        return Step.REFRESH
    if sealing_version != record.key_version:
        return Step.REWRAP
    return Step.RESTORE if record.status is Status.REVOKED else Step.SKIP


def settled(record: TokenRecord) -> bool:
    """Nothing for the sweep to do, whatever the keys: the user must sign in again, or there
    is no token to keep. A revoked record is not settled: its tenant's key may be back."""
    return not record.redeemable and record.status is not Status.REVOKED

