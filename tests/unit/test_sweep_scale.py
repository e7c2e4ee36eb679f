"""The sweep at scale, against in-memory fakes: every message stays far below the queue's
64 KiB whatever the number of tenants, key versions or records; a tenant whose key cannot be
read is skipped and named while every other tenant is planned and worked."""

from __future__ import annotations

import base64
import itertools
import logging
from collections import Counter
from datetime import timedelta

import pytest

from tests.fakes import FakeRecords, FixedClock
from tests.unit.test_sweep import REFRESH_AFTER, TENANTS, Sweep, user
from tests.unit.world import SCOPES, World
from tokenvault.adapters.memory_queue import MemoryQueue
from tokenvault.adapters.storage_queue import wire_text
from tokenvault.errors import InternalError, TenantKeyInvalid, UpstreamUnavailable
from tokenvault.maintenance import Outcome
from tokenvault.model import RecordKey, Status, TenantKey, TokenRecord
from tokenvault.ports import Keys
from tokenvault.sensitive import Sensitive
from tokenvault.sweep import INVENTORY_LINE, Planner

#: The Storage queue's limit on a message, base64 included (docs/field-notes.md).
QUEUE_LIMIT = 64 * 1024
#: What "far below" means here: an eighth of the limit.
BOUND = QUEUE_LIMIT // 8


def queued_size(message: dict) -> int:
    """Bytes the message takes on the Storage queue: compact JSON, UTF-8, base64."""
    return len(base64.b64encode(wire_text(message).encode("utf-8")))


class VersionsOnly(Keys):
    """Every tenant's latest key is version "v9": all the plan asks of the key store."""

    def __init__(self) -> None:
        self.calls = Counter()

    def latest(self, tenant_id: str) -> TenantKey:
        self.calls[tenant_id] += 1
        return TenantKey(tenant_id, "v9", Sensitive(b""))

    def get(self, tenant_id: str, version: str) -> TenantKey:
        raise AssertionError("the plan never fetches a key version")


def test_ten_thousand_tenants_plan_in_messages_far_below_the_queue_limit(caplog):
    clock = FixedClock()
    records = FakeRecords()
    tenants = [f"{n:08x}-0000-4000-8000-{n:012x}" for n in range(10_000)]
    for n, tenant in enumerate(tenants):
        for k in range(3):  # three records on three old versions, some of them due
            records.rows[RecordKey(tenant, user(n * 3 + k))] = TokenRecord(
                tenant_id=tenant, user_id=user(n * 3 + k), client_id="c", key_version=f"v{k}",
                ciphertext=b"\x01", status=Status.ACTIVE, scopes=SCOPES,
                created_at=clock.now(), refreshed_at=clock.now() - timedelta(days=k * 4))
    keys, queue = VersionsOnly(), MemoryQueue()
    # Hand on after every page of 1,000 records: 30 parts, each sending a continuation.
    planner = Planner(records=records, keys=keys, queue=queue, clock=clock,
                      refresh_after=REFRESH_AFTER, time_budget=timedelta(0),
                      monotonic=itertools.count().__next__)

    with caplog.at_level(logging.INFO, logger="tokenvault.sweep"):
        parts, read = [planner.plan()], 0
        while read < len(queue.items):  # each continuation, as the queue function gets it
            message, _ = queue.items[read]
            read += 1
            if message["kind"] == "plan":
                parts.append(planner.plan(run=message["run"], continuation=message["continuation"]))

    sizes = Counter()
    for message, _ in queue.items:
        sizes[message["kind"]] = max(sizes[message["kind"]], queued_size(message))
    assert len(parts) == 30 and sum(p.scanned for p in parts) == 30_000
    assert sum(p.planned for p in parts) == 30_000 and sum(p.tenants for p in parts) >= 10_000
    assert max(sizes.values()) < BOUND, sizes
    assert sizes["plan"] < 512  # where the scan stopped, and nothing else
    # Once per tenant and part: a tenant split over two parts is looked up by each.
    assert set(keys.calls) == set(tenants) and sum(keys.calls.values()) < 10_000 + len(parts)
    # The inventory is in lines of its own, each bounded, summing to every record.
    lines = [r for r in caplog.records if getattr(r, "event", None) == "sweep.inventory"]
    assert all(len(r.sweep["counts"]) <= INVENTORY_LINE for r in lines)
    assert max(len(r.getMessage()) for r in lines) < 32 * 1024  # Application Insights' limit
    totals = Counter()
    for line in lines:
        for tenant, version, n in line.sweep["counts"]:
            totals[tenant, version] += n
    assert len(totals) == 30_000 and set(totals.values()) == {1}
    summary_lines = [r for r in caplog.records if getattr(r, "event", None) == "sweep.plan"]
    assert max(len(r.getMessage()) for r in summary_lines) < 4096


def test_a_batch_deferred_by_throttling_is_no_bigger_than_the_batch(world_of_due):
    world, sweep = world_of_due
    world.idp.fail_next = [UpstreamUnavailable(retry_after=30, upstream="identity_provider")]
    message = {"v": 1, "kind": "batch", "run": "r" * 32, "tenant_id": TENANTS[0],
               "users": [user(n) for n in range(1, 101)]}

    sweep.worker.work(message)

    ((deferred, _),) = sweep.queue.items
    assert queued_size(deferred) <= queued_size(message) < BOUND


@pytest.fixture
def world_of_due():
    world = World()
    world.keys.onboard(TENANTS[0])
    for n in range(1, 101):
        world.vault.store(world.user(user(n), TENANTS[0]), SCOPES)
    world.clock.advance(days=8)
    return world, Sweep(world, concurrency=1)


# --- one tenant's key problem is that tenant's alone -------------------------------------------

@pytest.fixture
def three_tenants() -> World:
    world = World()
    for tenant in TENANTS:
        world.keys.onboard(tenant)
        for n in range(1, 41):
            world.vault.store(world.user(user(n), tenant), SCOPES)
        world.keys.rotate(tenant)
    return world


@pytest.mark.parametrize("error", [TenantKeyInvalid(), InternalError(),
                                   UpstreamUnavailable(retry_after=5, upstream="key_vault")],
                         ids=["malformed", "refused", "unreachable"])
def test_a_tenant_whose_key_cannot_be_read_is_skipped_and_the_others_are_worked(
        three_tenants, error, caplog):
    world, broken = three_tenants, TENANTS[1]
    world.keys.failing[broken] = error
    before = {k: r.etag for k, r in world.records.rows.items() if k.tenant_id == broken}

    with caplog.at_level(logging.INFO, logger="tokenvault.sweep"):
        plan, outcomes = Sweep(world).run()

    assert plan.tenants_failed == {broken: error.code} and plan.records_of_failed_tenants == 40
    assert plan.planned == 80 and outcomes == {Outcome.REWRAPPED: 80}
    for tenant in (TENANTS[0], TENANTS[2]):
        latest = world.keys.latest(tenant).version
        assert {r.key_version for k, r in world.records.rows.items() if k.tenant_id == tenant} \
            == {latest}
    assert {k: r.etag for k, r in world.records.rows.items() if k.tenant_id == broken} == before
    (logged,) = [r.sweep for r in caplog.records if getattr(r, "event", None) == "sweep.plan"]
    assert logged["tenants_failed"] == {broken: error.code}
    assert logged["tenants_failed_count"] == 1
    assert [r.tenant_id for r in caplog.records if r.getMessage() == "sweep.tenant_skipped"] \
        == [broken]


def test_a_plan_summary_names_a_bounded_number_of_failed_tenants(caplog):
    world = World()
    tenants = [f"bbbbbbbb-0000-4000-8000-{n:012x}" for n in range(120)]
    for tenant in tenants:
        world.keys.onboard(tenant)
        world.vault.store(world.user(user(1), tenant), SCOPES)
        world.keys.failing[tenant] = TenantKeyInvalid()

    with caplog.at_level(logging.INFO, logger="tokenvault.sweep"):
        plan = Sweep(world).planner.plan()

    logged = plan.as_log()
    assert plan.planned == 0 and len(plan.tenants_failed) == 120
    assert logged["tenants_failed_count"] == 120 and len(logged["tenants_failed"]) == 50


def test_a_malformed_key_met_by_the_worker_fails_only_that_tenants_records(three_tenants):
    world = three_tenants
    sweep = Sweep(world)
    sweep.planner.plan()  # planned while the key was fine
    world.keys.failing[TENANTS[0]] = TenantKeyInvalid()
    totals = Counter()
    for message, _ in sweep.queue.items:
        totals.update({(message["tenant_id"], o): n
                       for o, n in sweep.worker.work(message).counts.items()})

    assert totals == {(TENANTS[0], Outcome.FAILED): 40, (TENANTS[1], Outcome.REWRAPPED): 40,
                      (TENANTS[2], Outcome.REWRAPPED): 40}
