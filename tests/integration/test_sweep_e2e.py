"""The sweep end to end on the real parts: the timer function plans onto the real Storage queue
(Azurite), the queue function works each message as the host delivers it (base64-decoded, with
its dequeue count), the vault refreshes through the real msal against the Entra fake and reads
keys through the real SecretClient against the Key Vault fake.

Records are seeded straight into the table (transactions of 100, sealed under the tenant's key
from Key Vault, refresh tokens the Entra fake issued), not through 600 OBO calls: the store
path has its own tests, and the sweep only needs rows that look exactly like stored ones.

The helpers here (``seed``, ``drain``, ``stored_tokens``) serve the other sweep test modules.
"""

from __future__ import annotations

import base64
import gc
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from azure.data.tables import TableClient
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient

from tests.support.stack_fixtures import FUNCTIONS, SCOPES, Stack, new_id
from tokenvault.adapters.memory_queue import MemoryQueue
from tokenvault.adapters.table_entity import to_entity, to_record
from tokenvault.envelope import Binding, seal, unseal
from tokenvault.model import Status, TokenRecord
from tokenvault.sensitive import Sensitive
from tokenvault.sweep import Planner

DUE_AGE = timedelta(days=8)  # past TOKENVAULT_REFRESH_AFTER (P7D) whatever a user's jitter
FRESH_AGE = timedelta(days=1)  # before the jitter window (the last tenth of 7 days) opens


# --- helpers shared by the sweep tests ------------------------------------------------------

@dataclass
class Seeded:
    tenant_id: str
    key_version: str
    #: user id → the refresh token written for them (kept in memory, never printed)
    tokens: dict[str, str]
    due: set[str]

    @property
    def users(self) -> list[str]:
        return sorted(self.tokens)


def seed(stack: Stack, tenant_id: str, count: int, *, due: int = 0,
         scopes: list[str] = SCOPES) -> Seeded:
    """``count`` active records of ``tenant_id`` under its latest key, written in table
    transactions of 100, each granting ``scopes``; the first ``due`` (in row-key order) were
    last refreshed long enough ago to be due, the rest recently enough not to be."""
    key = stack.app.keys.latest(tenant_id)
    now = stack.clock.now()
    users = sorted(new_id() for _ in range(count))
    tokens, entities = {}, []
    for index, user in enumerate(users):
        token = stack.entra.issue_refresh_token(tenant_id, user, scopes=scopes)
        record = TokenRecord(tenant_id=tenant_id, user_id=user, client_id=stack.settings.client_id,
                             key_version=key.version, ciphertext=b"", status=Status.ACTIVE,
                             scopes=tuple(scopes), created_at=now - timedelta(days=30),
                             refreshed_at=now - (DUE_AGE if index < due else FRESH_AGE))
        binding = Binding(tenant_id, user, record.client_id, key.version)
        entities.append(to_entity(record.evolve(
            ciphertext=seal(key.material, Sensitive(token), binding))))
        tokens[user] = token
    with table(stack) as client:
        for start in range(0, len(entities), 100):
            client.submit_transaction([("create", e) for e in entities[start:start + 100]])
    return Seeded(tenant_id, key.version, tokens, set(users[:due]))


def table(stack: Stack) -> TableClient:
    return TableClient.from_connection_string(stack.azurite.connection_string,
                                              stack.settings.backend.table)


def rows(stack: Stack, tenant_id: str) -> dict[str, TokenRecord]:
    """Every record of the tenant as stored, by user id (one query, not a read per record)."""
    with table(stack) as client:
        entities = client.query_entities("PartitionKey eq @t", parameters={"t": tenant_id})
        return {r.user_id: r for r in map(to_record, entities)}


def stored_tokens(stack: Stack, tenant_id: str) -> dict[str, str]:
    """Decrypt every record of the tenant with its key version from Key Vault; a record that
    does not decrypt fails the test here."""
    tokens = {}
    for user, record in rows(stack, tenant_id).items():
        key = stack.app.keys.get(tenant_id, record.key_version)
        binding = Binding(tenant_id, user, record.client_id, record.key_version)
        tokens[user] = unseal(key.material, record.ciphertext, binding).reveal()
    return tokens


def queue_client(stack: Stack, name: str | None = None) -> QueueClient:
    return QueueClient.from_connection_string(stack.azurite.connection_string,
                                              name or stack.settings.backend.refresh_queue)


def deliver(function, message) -> None:
    """Hand one queue message to a queue function as the host does: base64-decoded body."""
    function(QueueMessage(id=message.id, body=base64.b64decode(message.content),
                          dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt))


@dataclass
class Drained:
    delivered: int = 0
    failed: int = 0


def drain(stack: Stack, *, stop_on_failure: bool = False) -> Drained:
    """Work the stack's queue with function_app's ``refresh_work`` until no message is visible.
    A message whose function raises is made visible again at once (dequeue count + 1), as the
    host retries it; ``stop_on_failure`` returns right after such a failure."""
    work = FUNCTIONS["refresh_work"].get_user_function()
    result = Drained()
    with queue_client(stack) as queue:
        while True:
            messages = list(queue.receive_messages(max_messages=32, visibility_timeout=60))
            if not messages:
                return result
            for message in messages:
                result.delivered += 1
                try:
                    deliver(work, message)
                except Exception:  # noqa: BLE001 - the host's view: the function failed
                    result.failed += 1
                    queue.update_message(message, visibility_timeout=0)
                    if stop_on_failure:
                        return result
                    continue
                queue.delete_message(message)


def summaries(caplog, name: str) -> list[dict]:
    return [r.sweep for r in caplog.records if getattr(r, "event", None) == name]


def sweep(stack: Stack, caplog) -> tuple[dict, list[dict]]:
    """One run: the timer function's plan, then the queue drained. Returns the plan summary
    and the batch summaries logged during the run."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tokenvault.sweep"):
        stack.app.sweep.plan_run()
        drain(stack)
    (plan,) = summaries(caplog, "sweep.plan")
    return plan, summaries(caplog, "sweep.batch")


def inventory(caplog) -> dict[str, Counter]:
    """The key-version inventory of the run last logged: the sum of its inventory lines."""
    (plan,) = summaries(caplog, "sweep.plan")[-1:]
    counts: dict[str, Counter] = {}
    for line in summaries(caplog, "sweep.inventory"):
        if line["run"] == plan["run"]:
            for tenant, version, n in line["counts"]:
                counts.setdefault(tenant, Counter())[version] += n
    return counts


def totals(batches: list[dict]) -> Counter:
    counted = ("rewrapped", "refreshed", "restored", "reauth_required", "revoked", "failed",
               "skipped", "deferred")
    return Counter({name: sum(b[name] for b in batches) for name in counted})


# --- the tests ------------------------------------------------------------------------------

def test_one_sweep_moves_three_tenants_to_their_latest_keys_and_refreshes_exactly_the_due(
        stack, caplog):
    tenants = [stack.onboard() for _ in range(3)]
    seeded = [seed(stack, t, 200, due=50) for t in tenants]
    rotated = {t: stack.admin.rotate(t).version for t in tenants[:2]}
    stack.expire_key_cache()  # cold: every key the run needs is fetched from Key Vault again
    etags_before = {t: {u: r.etag for u, r in rows(stack, t).items()} for t in tenants}
    keyvault_before = stack.keyvault.requests

    plan, batches = sweep(stack, caplog)

    # Every record of the rotated tenants was worked; of the third only the due ones.
    assert plan["scanned"] == 600 and plan["planned"] == 450 and plan["skipped"] == 150
    assert plan["batches"] == 2 + 2 + 1  # at most 100 users of one tenant per message
    assert inventory(caplog) == {s.tenant_id: {s.key_version: 200} for s in seeded}
    assert plan["revoked_tenants"] == [] and plan["poisoned"] == 0 and plan["duration_s"] >= 0
    assert plan["tenants"] == 3 and plan["tenants_failed"] == {}
    assert totals(batches) == Counter(rewrapped=300, refreshed=150)
    assert all({"run", "tenant_id", "duration_s", "failed", "skipped"} <= b.keys()
               for b in batches)
    assert {b["run"] for b in batches} == {plan["run"]}

    latest = {**{s.tenant_id: s.key_version for s in seeded}, **rotated}
    for s in seeded:
        stored = rows(stack, s.tenant_id)
        assert {r.key_version for r in stored.values()} == {latest[s.tenant_id]}
        assert {r.status for r in stored.values()} == {Status.ACTIVE}
        tokens = stored_tokens(stack, s.tenant_id)
        changed = {u for u in s.users if tokens[u] != s.tokens[u]}
        assert changed == s.due  # only refreshed records got a new refresh token
        assert all(stack.entra.refresh_token_valid(t) for t in tokens.values())
        assert all(stored[u].refreshed_at == stack.clock.now() for u in s.due)
        untouched = {u for u in s.users if stored[u].etag == etags_before[s.tenant_id][u]}
        if s.tenant_id in rotated:
            assert untouched == set()
        else:
            assert untouched == set(s.users) - s.due
    # One identity-provider call per due record: 150 in all, and each due record holds a
    # token that call returned, so none was refreshed twice and no rewrap asked at all.
    assert stack.entra.counts["refresh"] == 150
    # Key Vault, cold cache: "latest" once per tenant (the planner; the workers share the
    # cache) and the old version once per rotated tenant (to decrypt before rewrapping).
    used = stack.keyvault.requests - keyvault_before
    assert used == Counter(get=3, get_version=2)
    assert sum(used.values()) <= 2 * len(tenants)


def test_a_second_identical_run_changes_nothing(stack, caplog):
    tenants = [stack.onboard() for _ in range(2)]
    for t in tenants:
        seed(stack, t, 60, due=20)
    stack.admin.rotate(tenants[0])
    stack.expire_key_cache()
    first, _ = sweep(stack, caplog)
    assert first["planned"] == 60 + 20
    etags = {t: {u: r.etag for u, r in rows(stack, t).items()} for t in tenants}
    refreshes = stack.entra.counts["refresh"]

    second, batches = sweep(stack, caplog)

    assert second["planned"] == 0 and second["batches"] == 0 and batches == []
    assert second["skipped"] == second["scanned"] == 120
    assert stack.entra.counts["refresh"] == refreshes
    assert {t: {u: r.etag for u, r in rows(stack, t).items()} for t in tenants} == etags
    with queue_client(stack) as queue:
        assert queue.get_queue_properties().approximate_message_count == 0
    latest = stack.app.keys.latest(tenants[0]).version
    assert inventory(caplog)[tenants[0]] == {latest: 60}


def test_the_same_batch_delivered_twice_writes_once(stack, caplog):
    """At-least-once delivery: a batch the host hands out again does no second write."""
    tenant = stack.onboard()
    seeded = seed(stack, tenant, 20, due=10)
    stack.admin.rotate(tenant)
    stack.expire_key_cache()
    stack.app.sweep.plan_run()
    with queue_client(stack) as queue:
        (message,) = queue.receive_messages(max_messages=32, visibility_timeout=60)
    work = FUNCTIONS["refresh_work"].get_user_function()
    deliver(work, message)
    after_first = {u: r.etag for u, r in rows(stack, tenant).items()}
    caplog.clear()

    with caplog.at_level(logging.INFO, logger="tokenvault.sweep"):
        deliver(work, message)

    (again,) = summaries(caplog, "sweep.batch")
    assert again["skipped"] == 20 and again["refreshed"] == again["rewrapped"] == 0
    assert {u: r.etag for u, r in rows(stack, tenant).items()} == after_first
    assert stack.entra.counts["refresh"] == len(seeded.due)


def test_a_plan_leaves_no_page_of_records_behind(stack):
    """The plan streams: once a page of the scan is planned, nothing keeps its entities alive,
    not even as cyclic garbage waiting for a full collection (which is how memory would grow
    with the record count between collections)."""
    tenant = stack.onboard()
    seed(stack, tenant, 2500)
    stack.admin.rotate(tenant)
    stack.expire_key_cache()
    planner = Planner(records=stack.records, keys=stack.app.keys, queue=MemoryQueue(),
                      clock=stack.clock, refresh_after=stack.settings.refresh_after)
    gc.collect()
    gc.disable()
    try:
        summary = planner.plan()
        garbage = gc.collect()
    finally:
        gc.enable()
    assert summary.planned == summary.scanned == 2500
    assert garbage < 500  # a page of 1000 entities left for the collector would be thousands
