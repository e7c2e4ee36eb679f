"""``decide``: what the sweep does with one record, from the record as read and what is known of
its tenant's key — plain values, no ports. ``Vault.maintain`` acts on it (tests/unit/test_maintain.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.unit.world import CLIENT, SCOPES, TENANT, USER
from tokenvault.maintenance import Step, decide
from tokenvault.model import Status, TokenRecord

THRESHOLD = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
FRESH = THRESHOLD + timedelta(days=1)  # refreshed after the threshold: not due
STALE = THRESHOLD - timedelta(seconds=1)  # refreshed before it: due
OURS, NEWER = "a" * 32, "b" * 32
GONE = None  # the tenant's key is revoked, or was never there
OTHER_CLIENT = "99999999-8888-7777-6666-555555555555"


def record(status: Status = Status.ACTIVE, *, ciphertext: bytes = b"sealed", refreshed_at=FRESH,
           client_id: str = CLIENT, key_version: str = OURS) -> TokenRecord:
    return TokenRecord(tenant_id=TENANT, user_id=USER, client_id=client_id,
                       key_version=key_version, ciphertext=ciphertext, status=status,
                       scopes=SCOPES, created_at=THRESHOLD - timedelta(days=30),
                       refreshed_at=refreshed_at)


# name → (record as read, version a token would be sealed with now, the step)
DECISIONS = {
    "up to date": (record(), OURS, Step.SKIP),
    "refreshed exactly at the threshold is not due": (record(refreshed_at=THRESHOLD), OURS,
                                                      Step.SKIP),
    "due": (record(refreshed_at=STALE), OURS, Step.REFRESH),
    "due and on an old key: the refresh reseals it": (record(refreshed_at=STALE), NEWER,
                                                      Step.REFRESH),
    "on an old key, not due": (record(), NEWER, Step.REWRAP),
    # the user must sign in again: nothing to do, whatever the keys
    "reauth required": (record(Status.REAUTH_REQUIRED, ciphertext=b"", refreshed_at=STALE),
                        NEWER, Step.SKIP),
    "reauth required, key gone": (record(Status.REAUTH_REQUIRED, ciphertext=b""), GONE,
                                  Step.SKIP),
    "reauth required, ciphertext left": (record(Status.REAUTH_REQUIRED, refreshed_at=STALE), OURS,
                                         Step.SKIP),
    "active without a token": (record(ciphertext=b"", refreshed_at=STALE), NEWER, Step.SKIP),
    "active without a token, key gone": (record(ciphertext=b""), GONE, Step.SKIP),
    # the tenant's key
    "key gone": (record(), GONE, Step.MARK_REVOKED),
    "key gone, due": (record(refreshed_at=STALE), GONE, Step.MARK_REVOKED),
    "revoked, key still gone": (record(Status.REVOKED), GONE, Step.MARK_REVOKED),
    "revoked, key back": (record(Status.REVOKED), OURS, Step.RESTORE),
    "revoked, key back, due": (record(Status.REVOKED, refreshed_at=STALE), OURS, Step.REFRESH),
    "revoked, key back on a newer version": (record(Status.REVOKED), NEWER, Step.REWRAP),
    "revoked without a token, key back": (record(Status.REVOKED, ciphertext=b""), OURS, Step.SKIP),
    # stored for another app registration: its token is useless to us
    "another client's, due": (record(client_id=OTHER_CLIENT, refreshed_at=STALE), OURS, Step.SKIP),
    "another client's, old key": (record(client_id=OTHER_CLIENT), NEWER, Step.SKIP),
    "another client's, key gone": (record(client_id=OTHER_CLIENT), GONE, Step.MARK_REVOKED),
}


@pytest.mark.parametrize("name", list(DECISIONS))
def test_the_sweep_decides_from_the_record_and_its_key(name):
    read, sealing_version, step = DECISIONS[name]

    assert decide(read, sealing_version=sealing_version, refresh_before=THRESHOLD,
                  client_id=CLIENT) is step
