"""The sweep when things go wrong, on the real parts: the identity provider throttles or fails
mid-batch, a tenant's key is deleted and recovered, a redeem races the sweep on one record, and
a worker dies between the identity provider's answer and its write.

Faults come from the edges only: the Entra fake's targeted faults, the Key Vault fake's state,
and — for the race and the crash — ``EdgeRecords``, the real ``TableRecords`` with a hook just
before each write. The sweep runs through function_app's queue function over the real queue.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.integration.test_sweep_e2e import (
    drain,
    queue_client,
    rows,
    seed,
    stored_tokens,
    summaries,
    sweep,
    totals,
)
from tokenvault import bootstrap
from tokenvault.adapters.entra import EntraIdentityProvider
from tokenvault.adapters.storage_queue import StorageQueue
from tokenvault.adapters.table_records import TableRecords
from tokenvault.model import Status, TokenRecord
from tokenvault.sweep import Planner, SweepHandler, Worker
from tokenvault.vault import Vault


class EdgeRecords(TableRecords):
    """``TableRecords`` with ``before_update`` called just before each write reaches the table
    (where a concurrent writer or a crash can strike), counting the writes that landed."""

    def __init__(self, table) -> None:
        super().__init__(table)
        self.before_update: Callable[[TokenRecord], None] | None = None
        self.landed: Counter[str] = Counter()

    def update(self, record: TokenRecord) -> TokenRecord:
        if self.before_update is not None:
            self.before_update(record)
        stored = super().update(record)
        self.landed[record.user_id] += 1
        return stored


@pytest.fixture
def edge(stack, entra_session) -> EdgeRecords:
    """A sweep instance composed like the app but writing through ``EdgeRecords``, installed so
    function_app's queue function uses it. HTTP (redeem) still runs on the stack's own app: a
    separate instance, as in Azure."""
    settings = stack.settings
    records = EdgeRecords.from_connection_string(stack.azurite.connection_string, settings.backend.table)
    queue = StorageQueue.from_connection_string(stack.azurite.connection_string,
                                                settings.backend.refresh_queue)
    vault = Vault(client_id=settings.client_id, keys=stack.app.keys, records=records,
                  identity=EntraIdentityProvider.from_settings(settings, session=entra_session),
                  clock=stack.clock)
    planner = Planner(records=records, keys=stack.app.keys, queue=queue, clock=stack.clock,
                      refresh_after=settings.refresh_after)
    worker = Worker(vault=vault, queue=queue, clock=stack.clock,
                    refresh_after=settings.refresh_after)
    bootstrap.install(dataclasses.replace(stack.app, vault=vault, records=records,
                                          sweep=SweepHandler(planner=planner, worker=worker)))
    yield records
    records.close()
    queue.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """For what runs on a clock no test can pin (Azurite's message visibility, another
    thread reaching the fake)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["throttled", "server_error"])
def test_an_identity_provider_fault_mid_batch_defers_the_rest_by_its_retry_after(
        stack, caplog, kind):
    tenant = stack.onboard()
    seeded = seed(stack, tenant, 20, due=20)  # one batch, every record due
    users = seeded.users
    victim = users[5]
    stack.entra.fault(kind, grant="refresh", user=(tenant, victim), retry_after=2)
    before = rows(stack, tenant)

    plan, batches = sweep(stack, caplog)

    assert plan["planned"] == 20 and plan["batches"] == 1
    (batch,) = batches
    # Refreshes run a few at a time: those in flight when the fault came back finished, the
    # victim failed, and nothing was started after it — the rest went back on the queue.
    assert batch["failed"] == 1 and batch["refreshed"] + batch["failed"] + batch["deferred"] == 20
    assert batch["deferred"] > 0 and batch["retry_after"] == 2
    after = rows(stack, tenant)
    tokens = stored_tokens(stack, tenant)
    refreshed = {u for u in users if tokens[u] != seeded.tokens[u]}
    assert len(refreshed) == batch["refreshed"] and victim not in refreshed
    failed = after[victim]
    assert (failed.failure_count, failed.last_error, failed.status) == \
        (1, "upstream_unavailable", Status.ACTIVE)
    assert failed.ciphertext == before[victim].ciphertext  # the token is kept as it was
    deferred = set(users) - refreshed - {victim}
    assert {u for u in deferred if after[u].etag != before[u].etag} == set()
    assert stack.entra.counts["refresh"] == batch["refreshed"] + 1  # the deferred: not asked
    # The rest is back on the queue, invisible for the Retry-After.
    with queue_client(stack) as queue:
        assert queue.get_queue_properties().approximate_message_count == 1
        assert list(queue.peek_messages(max_messages=32)) == []

    wait_until(lambda: drain(stack).delivered > 0, "the deferred batch to become visible")

    tokens = stored_tokens(stack, tenant)
    assert {u for u in users if tokens[u] == seeded.tokens[u]} == {victim}
    # The failed record is still due: the next run picks it up, and it recovers.
    plan, batches = sweep(stack, caplog)
    assert plan["planned"] == 1 and totals(batches)["refreshed"] == 1
    recovered = rows(stack, tenant)[victim]
    assert (recovered.failure_count, recovered.last_error) == (0, None)
    tokens = stored_tokens(stack, tenant)
    assert all(tokens[u] != seeded.tokens[u] for u in users)
    assert all(stack.entra.refresh_token_valid(t) for t in tokens.values())
    assert stack.entra.counts["refresh"] == 20 + 1  # each once, the victim once more


def test_a_deleted_tenant_key_marks_only_that_tenant_revoked_and_recovery_restores_it(
        stack, caplog):
    revoked, other = stack.onboard(), stack.onboard()
    gone = seed(stack, revoked, 30, due=10)
    kept = seed(stack, other, 30, due=10)
    new_version = stack.admin.rotate(other).version
    stack.admin.revoke(revoked)  # Key Vault now answers 404 for tenant-<revoked>
    stack.expire_key_cache()
    before = rows(stack, revoked)

    plan, batches = sweep(stack, caplog)

    assert plan["revoked_tenants"] == [revoked] and plan["planned"] == 60
    assert totals(batches) == Counter(revoked=30, rewrapped=20, refreshed=10)
    after = rows(stack, revoked)
    assert {r.status for r in after.values()} == {Status.REVOKED}
    assert {r.last_error for r in after.values()} == {"tenant_revoked"}
    # Marked, and otherwise untouched: same ciphertext, key version and refresh time.
    assert all((a.ciphertext, a.key_version, a.refreshed_at)
               == (before[u].ciphertext, before[u].key_version, before[u].refreshed_at)
               for u, a in after.items())
    assert stack.entra.counts["refresh"] == 10  # the other tenant's due records only
    assert {r.key_version for r in rows(stack, other).values()} == {new_version}
    other_tokens = stored_tokens(stack, other)
    assert {u for u in kept.users if other_tokens[u] != kept.tokens[u]} == kept.due

    again, _ = sweep(stack, caplog)
    assert again["planned"] == 0  # already marked: not worked again while the key is gone

    stack.admin.recover(revoked)
    stack.expire_key_cache()
    plan, batches = sweep(stack, caplog)

    assert plan["revoked_tenants"] == [] and plan["planned"] == 30
    assert totals(batches) == Counter(restored=20, refreshed=10)
    restored = rows(stack, revoked)
    assert {r.status for r in restored.values()} == {Status.ACTIVE}
    assert {r.last_error for r in restored.values()} == {None}
    tokens = stored_tokens(stack, revoked)  # decrypts again with the recovered key
    assert {u for u in gone.users if tokens[u] != gone.tokens[u]} == gone.due
    assert all(stack.entra.refresh_token_valid(t) for t in tokens.values())


def test_a_redeem_that_writes_between_the_sweeps_refresh_and_its_write_wins(
        stack, edge, caplog):
    tenant = stack.onboard()
    seeded = seed(stack, tenant, 5, due=5)
    target = seeded.users[2]
    redeemed: dict = {}

    def redeem_first(record: TokenRecord) -> None:
        if record.user_id != target:
            return
        edge.before_update = None
        # Another instance serves a redeem for the same user, start to finish, right now.
        thread = threading.Thread(target=lambda: redeemed.update(
            response=stack.redeem(tenant, target)))
        thread.start()
        thread.join()
        redeemed["etag"] = rows(stack, tenant)[target].etag

    edge.before_update = redeem_first
    _, batches = sweep(stack, caplog)

    assert redeemed["response"].status_code == 200
    assert totals(batches) == Counter(refreshed=4, skipped=1)  # the sweep yielded
    assert edge.landed[target] == 0  # its write from the old ETag was refused
    stored = rows(stack, tenant)[target]
    assert stored.etag == redeemed["etag"] and stored.status is Status.ACTIVE
    token = stored_tokens(stack, tenant)[target]
    assert token != seeded.tokens[target] and stack.entra.refresh_token_valid(token)
    assert stack.entra.refresh_record(token).oid == target
    assert stack.entra.counts["refresh"] == 5 + 1  # the sweep's five and the redeem's one


def test_a_redeem_that_read_before_the_sweeps_write_keeps_the_sweeps_token(
        stack, edge, caplog):
    tenant = stack.onboard()
    seeded = seed(stack, tenant, 1, due=1)
    (target,) = seeded.users
    redeemed: dict = {}
    slow = stack.entra.fault("slow", grant="refresh", user=(tenant, target), delay=2.0)
    slow.times = 0  # armed below, once the sweep has its own refresh token in hand
    thread = threading.Thread(target=lambda: redeemed.update(
        response=stack.redeem(tenant, target)))

    def redeem_in_flight(record: TokenRecord) -> None:
        edge.before_update = None
        slow.times = 1
        thread.start()  # the redeem reads the record (old ETag) and is held at the IdP...
        wait_until(lambda: slow.hits == 1, "the redeem to reach the identity provider")
        # ...while the sweep's write goes ahead.

    edge.before_update = redeem_in_flight
    _, batches = sweep(stack, caplog)
    after_sweep = rows(stack, tenant)[target]
    swept_token = stored_tokens(stack, tenant)[target]
    thread.join()

    assert redeemed["response"].status_code == 200
    assert totals(batches) == Counter(refreshed=1)
    assert edge.landed[target] == 1
    stored = rows(stack, tenant)[target]
    assert stored.etag == after_sweep.etag  # the redeem's write from the old ETag was refused
    token = stored_tokens(stack, tenant)[target]
    assert token == swept_token != seeded.tokens[target]
    assert stack.entra.refresh_token_valid(token)


def test_a_worker_that_dies_between_the_refresh_and_the_write_loses_nothing(
        stack, edge, caplog):
    tenant = stack.onboard()
    seeded = seed(stack, tenant, 20, due=20)
    users = seeded.users
    updates = Counter()
    lock = threading.Lock()

    def crash_on_the_fourth_write(record: TokenRecord) -> None:
        with lock:
            updates["n"] += 1
            crash = updates["n"] == 4
        if crash:
            raise RuntimeError("the worker died")  # after the IdP answered, before the write

    edge.before_update = crash_on_the_fourth_write
    stack.app.sweep.plan_run()
    first = drain(stack, stop_on_failure=True)
    assert first.failed == 1

    # Each record is on its new refresh token or its old one; every one decrypts and works.
    # Refreshes in flight beside the one that died finished; nothing was started after it.
    tokens = stored_tokens(stack, tenant)
    written = {u for u in users if tokens[u] != seeded.tokens[u]}
    assert len(written) == sum(edge.landed.values()) >= 3 and len(written) < 19
    assert all(stack.entra.refresh_token_valid(t) for t in tokens.values())
    asked = stack.entra.counts["refresh"]
    assert asked == len(written) + 1

    edge.before_update = None
    caplog.clear()
    with caplog.at_level("INFO", logger="tokenvault.sweep"):
        retry = drain(stack)  # the host delivers the message again

    assert retry.failed == 0
    (batch,) = summaries(caplog, "sweep.batch")
    assert batch["attempt"] == 2 and (batch["skipped"], batch["refreshed"]) == \
        (len(written), 20 - len(written))
    tokens = stored_tokens(stack, tenant)
    assert all(tokens[u] != seeded.tokens[u] for u in users)
    assert all(stack.entra.refresh_token_valid(t) for t in tokens.values())
    assert edge.landed == Counter({u: 1 for u in users})  # none written twice
    assert stack.entra.counts["refresh"] == 20 + 1  # the crashed one was asked again


def test_a_tenant_whose_key_is_malformed_does_not_stop_the_others(stack, caplog):
    """Real Key Vault fake, real queue: one tenant's latest secret version is not a key (a
    botched manual rotation); the plan skips that tenant, names it, and every other tenant is
    planned and worked."""
    broken, others = stack.onboard(), [stack.onboard() for _ in range(2)]
    seeded = {t: seed(stack, t, 30, due=10) for t in [broken, *others]}
    rotated = {t: stack.admin.rotate(t).version for t in others}
    stack.keyvault.put_secret(f"tenant-{broken}", "not a key at all")
    stack.expire_key_cache()
    before = rows(stack, broken)

    plan, batches = sweep(stack, caplog)

    assert plan["tenants_failed"] == {broken: "tenant_key_invalid"}
    assert plan["records_of_failed_tenants"] == 30 and plan["planned"] == 60
    assert totals(batches) == Counter(rewrapped=40, refreshed=20)
    assert {b["tenant_id"] for b in batches} == set(others)
    for tenant in others:
        assert {r.key_version for r in rows(stack, tenant).values()} == {rotated[tenant]}
        tokens = stored_tokens(stack, tenant)
        assert {u for u in seeded[tenant].users
                if tokens[u] != seeded[tenant].tokens[u]} == seeded[tenant].due
    assert {u: r.etag for u, r in rows(stack, broken).items()} == \
        {u: r.etag for u, r in before.items()}  # untouched, for ops to mend
    assert stack.entra.counts["refresh"] == 20
