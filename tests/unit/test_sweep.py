"""The sweep's plan and work against in-memory fakes: what gets planned, in what batches, and
what the worker does with a batch when things go wrong."""

import itertools
import json
import logging
import os
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tests.fakes import throttled
from tests.unit.world import SCOPES, World
from tokenvault.adapters.memory_queue import MemoryQueue
from tokenvault.cli.sweep import run_in_process
from tokenvault.envelope import Binding, _seal_v1
from tokenvault.errors import BadRequest
from tokenvault.maintenance import Outcome
from tokenvault.model import RecordKey, Status
from tokenvault.sensitive import Sensitive
from tokenvault.sweep import Planner, SweepHandler, Worker, due_before

TENANTS = ["aaaaaaaa-0000-0000-0000-00000000000%d" % i for i in range(1, 4)]
REFRESH_AFTER = timedelta(days=7)


def user(n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, str(n)))


class Sweep:
    def __init__(self, world: World, *, budget=timedelta(minutes=4), ticks=None,
                 concurrency: int = 8) -> None:
        self.world = world
        self.queue = MemoryQueue()
        ticks = ticks or itertools.repeat(0.0)
        self.planner = Planner(records=world.records, keys=world.keys, queue=self.queue,
                               clock=world.clock, refresh_after=REFRESH_AFTER, time_budget=budget,
                               batch_size=20, page_size=50, monotonic=lambda: next(ticks))
        self.worker = Worker(vault=world.vault, queue=self.queue, clock=world.clock,
                             refresh_after=REFRESH_AFTER, concurrency=concurrency)

    def run(self):
        return run_in_process(self.planner, self.worker, self.queue, sleep=lambda s: None)


@pytest.fixture
def world() -> World:
    w = World()
    for tenant in TENANTS:
        w.keys.onboard(tenant)
        for n in range(1, 61):
            w.vault.store(w.user(user(n), tenant), SCOPES)
    return w


def test_nothing_is_planned_when_every_record_is_fresh_and_current(world):
    summary = Sweep(world).planner.plan()
    assert summary.planned == 0 and summary.scanned == 180 and summary.skipped == 180


def test_stale_key_versions_are_planned_in_bounded_single_tenant_batches(world):
    world.keys.rotate(TENANTS[0])
    world.keys.calls.clear()
    sweep = Sweep(world)
    summary = sweep.planner.plan()

    assert summary.planned == 60 and summary.batches == 3
    messages = [m for m, _ in sweep.queue.items]
    assert all(m["kind"] == "batch" and m["tenant_id"] == TENANTS[0] for m in messages)
    assert all(len(m["users"]) <= 20 for m in messages)
    assert world.keys.calls["latest"] == 3  # once per tenant, not once per record


def inventory(caplog) -> dict[str, Counter]:
    """A run's key-version inventory: the sum of its ``sweep.inventory`` lines."""
    counts: dict[str, Counter] = {}
    for record in caplog.records:
        if getattr(record, "event", None) == "sweep.inventory":
            for tenant, version, n in record.sweep["counts"]:
                counts.setdefault(tenant, Counter())[version] += n
    return counts


def test_the_inventory_counts_records_per_key_version(world, caplog):
    old = world.keys.latest(TENANTS[0]).version
    world.keys.rotate(TENANTS[0])
    with caplog.at_level(logging.INFO, logger="tokenvault.sweep"):
        summary = Sweep(world).planner.plan()
    assert summary.inventory_lines == 1 and summary.tenants == 3
    assert inventory(caplog)[TENANTS[0]] == {old: 60}
    assert sum(inventory(caplog)[TENANTS[1]].values()) == 60


def test_an_inventory_split_over_continuations_sums_to_the_whole(world, caplog):
    old = world.keys.latest(TENANTS[1]).version
    new = world.keys.rotate(TENANTS[1]).version
    world.records.put(world.records.rows[RecordKey(TENANTS[1], user(1))].evolve(key_version=new))
    sweep = Sweep(world, budget=timedelta(0), ticks=itertools.count())  # a page per part
    with caplog.at_level(logging.INFO, logger="tokenvault.sweep"):
        plan, _ = sweep.run()
    parts = [r.sweep for r in caplog.records if getattr(r, "event", None) == "sweep.plan"]
    assert len(parts) == 4  # 180 records, 50 a page
    assert inventory(caplog) == {TENANTS[0]: {world.keys.latest(TENANTS[0]).version: 60},
                                 TENANTS[1]: {old: 59, new: 1},
                                 TENANTS[2]: {world.keys.latest(TENANTS[2]).version: 60}}


def test_due_records_spread_over_the_last_tenth_of_the_refresh_window(world):
    world.clock.advance(days=6, hours=16)  # past 90 % of 7 days: some users due, not all
    summary = Sweep(world).planner.plan()
    assert 0 < summary.planned < 180
    world.clock.advance(hours=8)  # past 7 days: all due
    assert Sweep(world).planner.plan().planned == 180


def test_due_before_is_stable_and_within_the_window():
    now = World().clock.now()
    first = due_before(user(7), now, REFRESH_AFTER)
    assert first == due_before(user(7), now, REFRESH_AFTER)
    assert now - REFRESH_AFTER <= first <= now - REFRESH_AFTER * 0.9


def test_a_long_plan_hands_off_a_continuation_instead_of_running_long(world):
    world.keys.rotate(TENANTS[1])
    ticks = iter([0.0, 0.0, 301.0, 301.0, 301.0] + [302.0] * 50)
    sweep = Sweep(world, budget=timedelta(minutes=5), ticks=ticks)
    first = sweep.planner.plan()

    assert first.continued and first.scanned == 100
    continuation = [m for m, _ in sweep.queue.items if m["kind"] == "plan"]
    assert len(continuation) == 1 and continuation[0]["continuation"]


def test_a_whole_sweep_in_process_then_a_second_changes_nothing(world):
    world.keys.rotate(TENANTS[0])
    world.keys.rotate(TENANTS[1])
    world.clock.advance(days=8)
    first_plan, first = Sweep(world).run()
    assert first_plan.planned == 180
    assert first[Outcome.REFRESHED] == 180 and world.idp.calls["refresh"] == 180

    etags = {k: r.etag for k, r in world.records.rows.items()}
    second_plan, second = Sweep(world).run()
    assert second_plan.planned == 0 and not second
    assert etags == {k: r.etag for k, r in world.records.rows.items()}


def test_a_revoked_tenant_is_marked_once_and_restored_when_its_key_is_back(world):
    keys = world.keys.revoke(TENANTS[2])
    plan, outcomes = Sweep(world).run()
    assert plan.revoked_tenants == {TENANTS[2]} and outcomes[Outcome.REVOKED] == 60
    assert Sweep(world).planner.plan().planned == 0  # already marked: not planned again

    world.keys.restore(TENANTS[2], keys)
    _, outcomes = Sweep(world).run()
    assert outcomes[Outcome.RESTORED] == 60
    assert all(r.status is Status.ACTIVE for r in world.records.rows.values())


def test_throttling_defers_the_rest_of_the_batch_by_its_retry_after(world):
    world.clock.advance(days=8)
    world.idp.fail_next = [throttled(retry_after=42)]
    sweep = Sweep(world, concurrency=1)
    message = {"v": 1, "kind": "batch", "run": "r", "tenant_id": TENANTS[0],
               "users": [user(n) for n in range(1, 11)]}

    summary = sweep.worker.work(message)

    assert summary.counts[Outcome.FAILED] == 1 and summary.deferred == 9
    (deferred, delay), = sweep.queue.items
    assert delay == 42 and deferred["users"] == [user(n) for n in range(2, 11)]
    assert world.idp.calls["refresh"] == 1  # nothing else was tried during the back-off


def test_one_broken_record_does_not_stop_the_batch(world):
    world.keys.rotate(TENANTS[0])
    broken = RecordKey(TENANTS[0], user(1))
    world.records.put(world.records.rows[broken].evolve(ciphertext=b"\x01" + bytes(40)))
    message = {"v": 1, "kind": "batch", "run": "r", "tenant_id": TENANTS[0],
               "users": [user(n) for n in range(1, 6)]}

    summary = Sweep(world).worker.work(message)

    assert summary.counts == {Outcome.FAILED: 1, Outcome.REWRAPPED: 4}
    # Left as it was, but for the note ops look for: its ciphertext is not rewritten.
    after = world.records.rows[broken]
    assert after.ciphertext == b"\x01" + bytes(40) and after.last_error == "ciphertext_invalid"
    assert after.failure_count == 1


@pytest.mark.parametrize("message", [
    {}, {"tenant_id": "x", "users": []}, {"tenant_id": TENANTS[0], "users": "abc"},
    {"tenant_id": TENANTS[0], "users": ["' or 1 eq 1"]},
])
def test_a_malformed_batch_is_refused(world, message):
    with pytest.raises(BadRequest):
        Sweep(world).worker.work(message)


def test_summaries_are_logged_as_one_structured_line_each(world, caplog):
    world.keys.rotate(TENANTS[0])
    with caplog.at_level(logging.INFO, logger="tokenvault.sweep"):
        Sweep(world).run()
    plans = [r for r in caplog.records if getattr(r, "event", None) == "sweep.plan"]
    batches = [r for r in caplog.records if getattr(r, "event", None) == "sweep.batch"]
    assert len(plans) == 1 and len(batches) == 3
    assert plans[0].sweep["planned"] == 60 and TENANTS[0] in inventory(caplog)
    assert sum(b.sweep["rewrapped"] for b in batches) == 60
    # The message text alone carries the fields: it is all Application Insights receives.
    for record in plans + batches:
        name, fields = record.getMessage().split(" ", 1)
        assert name == record.event and json.loads(fields) == json.loads(json.dumps(record.sweep))


def handler(sweep: Sweep) -> SweepHandler:
    return SweepHandler(planner=sweep.planner, worker=sweep.worker, queue=sweep.queue)


def test_the_queue_function_works_a_batch_from_its_json_body(world):
    world.keys.rotate(TENANTS[0])
    sweep = Sweep(world)
    body = json.dumps({"v": 1, "kind": "batch", "run": "r", "tenant_id": TENANTS[0],
                       "users": [user(n) for n in range(1, 4)]}).encode()

    handler(sweep).handle(body, dequeue_count=1)

    latest = world.keys.latest(TENANTS[0]).version
    assert all(world.records.rows[RecordKey(TENANTS[0], user(n))].key_version == latest
               for n in range(1, 4))
    assert world.records.rows[RecordKey(TENANTS[0], user(4))].key_version != latest


def test_the_queue_function_continues_a_plan_from_a_continuation_message(world):
    world.keys.rotate(TENANTS[2])
    sweep = Sweep(world)
    body = json.dumps({"v": 1, "kind": "plan", "run": "r", "tenant_id": None,
                       "continuation": "120", "inventory": {}})

    handler(sweep).handle(body)

    batches = [m for m, _ in sweep.queue.items if m["kind"] == "batch"]
    assert {m["tenant_id"] for m in batches} == {TENANTS[2]}
    assert sum(len(m["users"]) for m in batches) == 60


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"v": 2, "kind": "batch"}', b'{"v": 1, "kind": "other"}',
    b'{"v": 1, "kind": "plan"}', b'{"v": 1, "kind": "plan", "continuation": "x", "tenant_id": "A"}',
    b"\xff\xfe", b'{"v": 1, "kind": "plan", "continuation": "bm90IGEgdG9rZW4"}',
    json.dumps({"v": 1, "kind": "batch", "tenant_id": TENANTS[0],
                "users": [user(n) for n in range(101)]}).encode(),
])
def test_a_message_that_can_never_be_worked_is_poisoned_at_once_not_retried(world, body, caplog):
    sweep = Sweep(world)
    world.records.writes.clear()

    handler(sweep).handle(body, dequeue_count=1)  # returns: the host deletes the message

    assert sweep.queue.poison_bodies == [body] and sweep.queue.items == []
    assert not world.records.writes and world.idp.calls["refresh"] == 0
    (poisoned,) = [r for r in caplog.records if r.getMessage() == "sweep.message_poisoned"]
    assert poisoned.code == "bad_request" and poisoned.sweep == {"attempt": 1, "bytes": len(body)}


def test_without_a_queue_to_poison_into_a_malformed_message_raises_for_the_host(world):
    sweep = Sweep(world)
    with pytest.raises(BadRequest):
        SweepHandler(planner=sweep.planner, worker=sweep.worker).handle(b"[]")


# --- a batch: rewraps together, refreshes a few at a time --------------------------------------

def batch(tenant: str, users: list[str]) -> dict:
    return {"v": 1, "kind": "batch", "run": "r", "tenant_id": tenant, "users": users}


def test_a_batch_of_rewraps_is_one_read_and_one_transaction(world):
    world.keys.rotate(TENANTS[0])
    latest = world.keys.latest(TENANTS[0]).version
    world.records.reads.clear()
    world.records.writes.clear()
    users = [user(n) for n in range(1, 61)]

    summary = Sweep(world).worker.work(batch(TENANTS[0], users))

    assert summary.counts == {Outcome.REWRAPPED: 60}
    assert world.records.reads == {"get_many": 1}  # no point read per record
    assert world.records.writes == {"transaction": 1, "update": 60}
    assert all(world.records.rows[RecordKey(TENANTS[0], u)].key_version == latest for u in users)
    assert world.idp.calls["refresh"] == 0


def test_a_record_changed_or_deleted_after_the_batch_read_is_left_to_whoever_changed_it(world):
    world.keys.rotate(TENANTS[0])
    users = [user(n) for n in range(1, 11)]
    changed, deleted = RecordKey(TENANTS[0], users[2]), RecordKey(TENANTS[0], users[6])

    def someone_else_writes(records) -> None:
        world.records.put(world.records.rows[changed].evolve(last_error="theirs"))
        world.records.delete(deleted)

    world.records.before_update_many = someone_else_writes
    summary = Sweep(world).worker.work(batch(TENANTS[0], users))

    assert summary.counts == {Outcome.REWRAPPED: 8, Outcome.SKIPPED: 2}
    assert world.records.rows[changed].last_error == "theirs"
    assert world.records.rows[changed].key_version != world.keys.latest(TENANTS[0]).version
    assert deleted not in world.records.rows  # not re-created
    assert world.records.writes["refused_transaction"] == 2


def test_refreshes_run_a_few_at_a_time_never_more_than_the_concurrency_per_tenant(world):
    world.clock.advance(days=8)
    world.idp.latency = 0.02
    sweep = Sweep(world, concurrency=4)
    messages = [batch(TENANTS[0], [user(n) for n in range(start, start + 20)])
                for start in (1, 21, 41)]

    # Three messages of one tenant at once, as the host hands a process several.
    with ThreadPoolExecutor(max_workers=3) as pool:
        summaries = list(pool.map(sweep.worker.work, messages))

    assert sum(s.counts[Outcome.REFRESHED] for s in summaries) == 60
    assert world.idp.calls["refresh"] == 60
    assert world.idp.most_in_flight[TENANTS[0]] == 4  # bounded across the three messages


def test_a_throttled_refresh_starts_nothing_more_and_defers_the_rest_once(world):
    world.clock.advance(days=8)
    world.idp.latency = 0.02
    world.idp.fail_next = [throttled(retry_after=42)]
    sweep = Sweep(world, concurrency=4)
    users = [user(n) for n in range(1, 21)]

    summary = sweep.worker.work(batch(TENANTS[0], users))

    (deferred, delay), = sweep.queue.items  # one message for the whole rest
    refreshed = summary.counts[Outcome.REFRESHED]
    assert summary.counts[Outcome.FAILED] == 1 and delay == 42 and summary.retry_after == 42
    assert 3 <= refreshed < 19  # those in flight finished; nothing was started after the 429
    assert summary.deferred == len(deferred["users"]) == 20 - refreshed - 1
    assert world.idp.calls["refresh"] == refreshed + 1  # the deferred were never tried
    untouched = [u for u in users if world.records.rows[RecordKey(TENANTS[0], u)].refreshed_at
                 < world.clock.now() and world.records.rows[RecordKey(TENANTS[0], u)].last_error is None]
    assert sorted(deferred["users"]) == sorted(untouched)
    assert deferred == {**batch(TENANTS[0], users), "users": deferred["users"]}



def test_version_1_envelopes_are_read_and_every_write_reseals_them_as_version_2(world):
    """The sweep migrates: records sealed before version 2 open as they are, and each refresh
    (within TOKENVAULT_REFRESH_AFTER) or rewrap (after the next rotation) writes version 2."""
    def as_version_1(key: RecordKey) -> None:
        record = world.records.rows[key]
        token = Sensitive(world.stored_refresh_token(key))
        tenant_key = world.keys.get(record.tenant_id, record.key_version)
        binding = Binding(record.tenant_id, record.user_id, record.client_id, record.key_version)
        world.records.put(record.evolve(ciphertext=_seal_v1(tenant_key.material, token, binding,
                                                            os.urandom(12))))

    due, rewrapped, redeemed = (RecordKey(TENANTS[0], user(n)) for n in (1, 2, 3))
    for key in (due, rewrapped, redeemed):
        as_version_1(key)
    world.records.put(world.records.rows[due].evolve(
        refreshed_at=world.clock.now() - timedelta(days=8)))
    world.keys.rotate(TENANTS[0])
    before = world.stored_refresh_token(rewrapped)

    world.vault.redeem(redeemed, SCOPES)
    _, outcomes = Sweep(world).run()

    # The redeem wrote its user back under the newest key already: 60 - 1 - 1 rewraps.
    assert outcomes[Outcome.REFRESHED] == 1 and outcomes[Outcome.REWRAPPED] == 58
    assert {world.records.rows[k].ciphertext[0] for k in (due, rewrapped, redeemed)} == {2}
    assert world.stored_refresh_token(rewrapped) == before
