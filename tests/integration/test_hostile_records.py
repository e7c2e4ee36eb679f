"""Stored data tampered with behind the vault's back, in Azurite, through the plain SDK: a
flipped ciphertext byte, one user's ciphertext copied into another's row, a row moved to
another tenant, a KeyVersion changed, a blob truncated. Redeem fails closed — ``internal`` to
the caller, one log line for ops with the code and the record's ids, no identity-provider call —
and never hands out another user's token; the sweep flags and skips such a row and works the
rest of its batch."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from azure.data.tables import TableClient, UpdateMode

from tests.support.stack_fixtures import SCOPES, new_id
from tokenvault.adapters.memory_queue import MemoryQueue
from tokenvault.cli.sweep import run_in_process
from tokenvault.maintenance import Outcome
from tokenvault.model import RecordKey, Status
from tokenvault.sweep import Planner, Worker


def body(response) -> dict:
    return json.loads(response.get_body())


@pytest.fixture
def table(stack) -> TableClient:
    """The stack's table through a plain SDK client: the attacker's (or a bug's) view."""
    client = TableClient.from_connection_string(stack.azurite.connection_string,
                                                stack.settings.backend.table)
    yield client
    client.close()


def stored(stack, tenant: str) -> str:
    user = new_id()
    assert stack.store(tenant, user).status_code == 201
    return user


def rewrite(table: TableClient, tenant: str, user: str, **columns) -> dict:
    entity = dict(table.get_entity(tenant, user))
    entity.update(columns)
    table.upsert_entity(entity, mode=UpdateMode.REPLACE)
    return entity


def flipped(blob: bytes, at: int) -> bytes:
    changed = bytearray(blob)
    changed[at] ^= 0x01
    return bytes(changed)


# Each row tampers with user B's record (A is another user of the same tenant, stored first).
TAMPERING = {
    "a byte of the sealed token flipped": lambda s: rewrite(
        s.table, s.tenant, s.b, Ciphertext=flipped(s.row(s.b)["Ciphertext"], 20)),
    "a byte of the nonce flipped": lambda s: rewrite(
        s.table, s.tenant, s.b, Ciphertext=flipped(s.row(s.b)["Ciphertext"], 3)),
    "a byte of the tag flipped": lambda s: rewrite(
        s.table, s.tenant, s.b, Ciphertext=flipped(s.row(s.b)["Ciphertext"], -1)),
    "the format byte changed": lambda s: rewrite(
        s.table, s.tenant, s.b, Ciphertext=b"\x03" + s.row(s.b)["Ciphertext"][1:]),
    "A's ciphertext copied into B's row": lambda s: rewrite(
        s.table, s.tenant, s.b, Ciphertext=s.row(s.a)["Ciphertext"],
        KeyVersion=s.row(s.a)["KeyVersion"]),
    "KeyVersion moved to the tenant's newer key": lambda s: rewrite(
        s.table, s.tenant, s.b, KeyVersion=s.rotated()),
    "truncated to the header and half the tag": lambda s: rewrite(
        s.table, s.tenant, s.b, Ciphertext=s.row(s.b)["Ciphertext"][:21]),
    "truncated by one byte": lambda s: rewrite(
        s.table, s.tenant, s.b, Ciphertext=s.row(s.b)["Ciphertext"][:-1]),
}


class Scene:
    def __init__(self, stack, table: TableClient, tenant: str) -> None:
        self.stack, self.table, self.tenant = stack, table, tenant
        self.a, self.b = stored(stack, tenant), stored(stack, tenant)
        self._rotated: str | None = None

    def row(self, user: str, tenant: str | None = None):
        return self.table.get_entity(tenant or self.tenant, user)

    def rotated(self) -> str:
        if self._rotated is None:
            self._rotated = self.stack.admin.rotate(self.tenant).version
            self.stack.expire_key_cache()
        return self._rotated


def ciphertext_invalid_lines(caplog, tenant: str, user: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "code", None) == "ciphertext_invalid"
            and getattr(r, "tenant_id", None) == tenant and getattr(r, "user_id", None) == user
            and r.levelno >= logging.ERROR]


@pytest.mark.parametrize("name", list(TAMPERING))
def test_redeem_of_a_tampered_record_fails_closed_and_tells_ops_which(stack, table, onboarded_tenant, name,
                                                                      caplog):
    s = Scene(stack, table, onboarded_tenant)
    TAMPERING[name](s)
    before = s.row(s.b)
    refreshes = stack.entra.counts["refresh"]
    caplog.set_level(logging.INFO)

    response = stack.redeem(onboarded_tenant, s.b)

    assert (response.status_code, body(response)["code"]) == (500, "internal")
    assert set(body(response)) == {"type", "title", "status", "code", "detail", "correlation_id"}
    assert stack.entra.counts["refresh"] == refreshes  # nothing was sent to the IdP
    assert ciphertext_invalid_lines(caplog, onboarded_tenant, s.b), "no log line names the record"
    after = s.row(s.b)
    assert after["Ciphertext"] == before["Ciphertext"] and after.metadata["etag"] == \
        before.metadata["etag"]
    # A, whose ciphertext may have been copied, is untouched and still served.
    assert stack.redeem(onboarded_tenant, s.a).status_code == 200
    assert stack.entra.refresh_token_valid(stack.stored_refresh_token(onboarded_tenant, s.a))


def test_a_row_moved_to_another_tenant_opens_for_nobody(stack, table, onboarded_tenant, caplog):
    s = Scene(stack, table, onboarded_tenant)
    other = stack.onboard()
    row = dict(s.row(s.a))
    # As it was, and re-labelled with the other tenant's key version, as an attacker would.
    moved = {**row, "PartitionKey": other}
    relabelled_user = new_id()
    relabelled = {**row, "PartitionKey": other, "RowKey": relabelled_user,
                  "KeyVersion": stack.app.keys.latest(other).version}
    table.create_entity(moved)
    table.create_entity(relabelled)
    caplog.set_level(logging.INFO)

    as_is = stack.redeem(other, s.a)
    relabelled_answer = stack.redeem(other, relabelled_user)
    by_app = stack.call("redeem_token", token=stack.app_token(),
                        body={"scopes": SCOPES, "tenant_id": other, "user_id": relabelled_user})

    # The other tenant has no such key version: to the vault that version is gone (revoked).
    assert (as_is.status_code, body(as_is)["code"]) == (403, "tenant_revoked")
    assert (relabelled_answer.status_code, body(relabelled_answer)["code"]) == (500, "internal")
    assert (by_app.status_code, body(by_app)["code"]) == (500, "internal")
    assert ciphertext_invalid_lines(caplog, other, relabelled_user)
    assert stack.redeem(onboarded_tenant, s.a).status_code == 200  # the original row is unharmed


def test_an_emptied_ciphertext_means_sign_in_again(stack, table, onboarded_tenant):
    s = Scene(stack, table, onboarded_tenant)
    entity = dict(s.row(s.b))
    del entity["Ciphertext"]
    table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    response = stack.redeem(onboarded_tenant, s.b)

    assert (response.status_code, body(response)["code"]) == (409, "reauth_required")


def test_the_sweep_flags_and_skips_tampered_rows_and_works_the_rest_of_the_batch(
        stack, table, onboarded_tenant, caplog):
    s = Scene(stack, table, onboarded_tenant)
    good = [s.a, stored(stack, onboarded_tenant), stored(stack, onboarded_tenant)]
    copied, truncated, flipped_user = s.b, stored(stack, onboarded_tenant), stored(stack, onboarded_tenant)
    rewrite(table, onboarded_tenant, copied, Ciphertext=s.row(s.a)["Ciphertext"])
    rewrite(table, onboarded_tenant, truncated, Ciphertext=s.row(truncated)["Ciphertext"][:30])
    rewrite(table, onboarded_tenant, flipped_user, Ciphertext=flipped(s.row(flipped_user)["Ciphertext"], 40))
    malformed = stored(stack, onboarded_tenant)
    rewrite(table, onboarded_tenant, malformed, Status="bogus")
    tampered = {copied: s.row(copied), truncated: s.row(truncated),
                flipped_user: s.row(flipped_user)}
    # Every record wants work: a newer key to rewrap under, and old enough to be refreshed.
    new_version = stack.admin.rotate(onboarded_tenant).version
    stack.expire_key_cache()
    stack.clock.advance(days=8)
    caplog.set_level(logging.INFO)

    queue = MemoryQueue()
    app, after = stack.app, stack.settings.refresh_after
    planner = Planner(records=app.records, keys=app.keys, queue=queue, clock=stack.clock,
                      refresh_after=after)
    worker = Worker(vault=app.vault, queue=queue, clock=stack.clock, refresh_after=after)
    plan, outcomes = run_in_process(planner, worker, queue, sleep=_no_sleep)

    # The row the vault cannot read is left out of the plan (and logged), the rest planned.
    assert (plan.scanned, plan.planned) == (6, 6)
    assert any(getattr(r, "code", None) == "record_malformed" for r in caplog.records)
    assert outcomes[Outcome.FAILED] == 3 and outcomes[Outcome.REFRESHED] == 3
    for user in good:
        record = stack.records.get(RecordKey(onboarded_tenant, user))
        assert record.key_version == new_version and record.refreshed_at == stack.clock.now()
        assert stack.entra.refresh_token_valid(stack.stored_refresh_token(onboarded_tenant, user))
    for user, before in tampered.items():
        after_row = s.row(user)
        assert after_row["Ciphertext"] == before["Ciphertext"], "a tampered blob was rewritten"
        assert after_row["KeyVersion"] == before["KeyVersion"]
        assert after_row["LastError"] == "ciphertext_invalid"
        assert after_row["FailureCount"] == before["FailureCount"] + 1
        assert after_row["Status"] == Status.ACTIVE.value
        failed = [r for r in caplog.records if r.getMessage() == "sweep.record_failed"
                  and getattr(r, "user_id", None) == user]
        assert [r.code for r in failed] == ["ciphertext_invalid"]
    batches = [r.sweep for r in caplog.records if getattr(r, "event", None) == "sweep.batch"]
    assert [(b["failed"], b["refreshed"]) for b in batches] == [(3, 3)]


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"the sweep deferred a batch by {seconds} s: nothing here is transient")


def test_a_tampered_row_does_not_hold_the_sweep_back_from_other_tenants(stack, table, onboarded_tenant):
    s = Scene(stack, table, onboarded_tenant)
    rewrite(table, onboarded_tenant, s.b, Ciphertext=flipped(s.row(s.b)["Ciphertext"], 25))
    other = stack.onboard()
    others = [stored(stack, other) for _ in range(2)]
    stack.clock.advance(days=8)

    queue = MemoryQueue()
    after = stack.settings.refresh_after
    planner = Planner(records=stack.app.records, keys=stack.app.keys, queue=queue,
                      clock=stack.clock, refresh_after=after)
    worker = Worker(vault=stack.app.vault, queue=queue, clock=stack.clock, refresh_after=after)
    _, outcomes = run_in_process(planner, worker, queue, sleep=_no_sleep)

    assert outcomes[Outcome.FAILED] == 1 and outcomes[Outcome.REFRESHED] == 3
    for user in others:
        assert stack.records.get(RecordKey(other, user)).refreshed_at == stack.clock.now()
    assert stack.clock.now() - stack.records.get(RecordKey(onboarded_tenant, s.b)).refreshed_at \
        > timedelta(days=7)
