"""The sweep served by the dev host: function_app's timer fires on its NCRONTAB schedule and on
``POST /admin/functions/refresh_plan``, and the dev host's queue loop drains the real Storage
queue into ``refresh_work`` with the host's retry and poison semantics.

The queue trigger's binding names the queue ``tokenvault-refresh`` (function_app fixes it, as
the deployed host needs), so these tests compose the app on exactly that queue, on the
session's Azurite, emptied at the start of each test; nothing else in the suite uses that name.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError

import function_app
from tests.integration.test_sweep_e2e import queue_client, rows, seed, stored_tokens, summaries
from tests.integration.test_sweep_faults import wait_until
from tests.support.stack_fixtures import Stack
from tests.support.storage_fixtures import closed_port_connection_string
from tokenvault import bootstrap
from tokenvault.adapters.entra import EntraIdentityProvider
from tokenvault.adapters.storage_queue import POISON_SUFFIX, StorageQueue
from tokenvault.adapters.table_records import TableRecords
from tokenvault.dev.devhost import DevHost
from tokenvault.settings import REFRESH_QUEUE
from tokenvault.sweep import Planner, SweepHandler, Worker
from tokenvault.vault import Vault

ROOT = Path(__file__).resolve().parents[2]
EVERY_SECOND = "*/1 * * * * *"
NEVER_SOON = "0 0 0 1 1 *"  # midnight on New Year's Day


def host_config() -> dict:
    """The project's host.json, with retries made immediate and polling tight for a test."""
    config = json.loads((ROOT / "host.json").read_text())
    config["extensions"]["queues"].update(visibilityTimeout="00:00:00",
                                          maxPollingInterval="00:00:01")
    return config


@pytest.fixture
def fixed_queue_stack(stack, keyvault_credential, keyvault_options, entra_session) -> Stack:
    """The stack's parts, composed on the queue the binding names, installed as the app."""
    for name in (REFRESH_QUEUE, REFRESH_QUEUE + POISON_SUFFIX):
        with queue_client(stack, name) as queue:
            try:
                queue.create_queue()
            except ResourceExistsError:
                queue.clear_messages()
    settings = stack.settings.with_backend(refresh_queue=REFRESH_QUEUE)
    app = bootstrap.compose(settings, credential=keyvault_credential, session=entra_session,
                            key_vault_options={**keyvault_options, "monotonic": stack.monotonic},
                            clock=stack.clock)
    bootstrap.install(app)  # the stack fixture resets it at the end
    yield Stack(app, entra=stack.entra, keyvault=stack.keyvault, admin=stack.admin,
                clock=stack.clock, monotonic=stack.monotonic, azurite=stack.azurite)
    app.close()


@pytest.fixture
def serve(fixed_queue_stack, monkeypatch):
    """Start a DevHost over function_app with ``schedule`` for the sweep's timer; stopped (and
    its threads joined) at the end of the test."""
    running = []

    def start(schedule: str) -> DevHost:
        monkeypatch.setenv("TOKENVAULT_REFRESH_SCHEDULE", schedule)
        host = DevHost(function_app.app, host_config=host_config())
        running.append((host, host.start_background(fixed_queue_stack.azurite.connection_string)))
        return host

    yield start
    for host, threads in running:
        host.stop()
        for thread in threads:
            thread.join(timeout=15)
            assert not thread.is_alive()


def executed(caplog, name: str) -> int:
    return sum(1 for r in caplog.records
               if r.getMessage().startswith(f"Executed '{name}' (Succeeded"))


def all_on(stack: Stack, tenant: str, version: str) -> bool:
    return {r.key_version for r in rows(stack, tenant).values()} == {version}


def queue_length(stack: Stack, name: str = REFRESH_QUEUE) -> int:
    with queue_client(stack, name) as queue:
        return queue.get_queue_properties().approximate_message_count


def test_the_timer_fires_on_schedule_and_the_queue_loop_works_the_batches(
        fixed_queue_stack, serve, caplog):
    stack = fixed_queue_stack
    tenant = stack.onboard()
    seeded = seed(stack, tenant, 250, due=0)
    latest = stack.admin.rotate(tenant).version
    stack.expire_key_cache()
    caplog.set_level(logging.INFO)

    serve(EVERY_SECOND)
    wait_until(lambda: all_on(stack, tenant, latest), "the records to be rewrapped")
    # Runs after that find nothing left to do.
    wait_until(lambda: any(p["planned"] == 0 for p in summaries(caplog, "sweep.plan")),
               "a timer run that plans nothing")
    wait_until(lambda: queue_length(stack) == 0, "the queue to be drained")

    assert executed(caplog, "refresh_plan") >= 2
    assert executed(caplog, "refresh_work") >= 3  # 250 users: batches of 100, 100 and 50
    assert sum(b["rewrapped"] for b in summaries(caplog, "sweep.batch")) == 250
    tokens = stored_tokens(stack, tenant)
    assert {u for u in seeded.users if tokens[u] != seeded.tokens[u]} == set()
    assert stack.entra.counts["refresh"] == 0  # rewrapped only: the IdP was not asked


def test_the_admin_endpoint_runs_the_plan_now_and_the_queue_loop_refreshes(
        fixed_queue_stack, serve, caplog):
    stack = fixed_queue_stack
    tenant = stack.onboard()
    seeded = seed(stack, tenant, 30, due=30)
    caplog.set_level(logging.INFO)
    host = serve(NEVER_SOON)

    response = host.http("POST", "/admin/functions/refresh_plan",
                         {"Content-Type": "application/json"}, b"{}")

    assert response.status_code == 202
    wait_until(lambda: summaries(caplog, "sweep.plan"), "the plan to run")
    wait_until(lambda: sum(b["refreshed"] for b in summaries(caplog, "sweep.batch")) == 30,
               "the batches to be worked")
    wait_until(lambda: queue_length(stack) == 0, "the queue to be drained")
    (plan,) = summaries(caplog, "sweep.plan")
    assert plan["planned"] == 30 and plan["batches"] == 1
    tokens = stored_tokens(stack, tenant)
    assert all(tokens[u] != seeded.tokens[u] for u in seeded.users)
    assert all(stack.entra.refresh_token_valid(t) for t in tokens.values())
    assert stack.entra.counts["refresh"] == 30


def test_a_message_that_can_never_be_worked_is_poisoned_on_its_first_delivery(
        fixed_queue_stack, serve, caplog):
    stack = fixed_queue_stack
    caplog.set_level(logging.INFO)
    serve(NEVER_SOON)
    # Well-formed, but its continuation is no token this service issued: no retry can mend it.
    queue = StorageQueue.from_connection_string(stack.azurite.connection_string, REFRESH_QUEUE)
    queue.send({"v": 1, "kind": "plan", "run": "r1", "continuation": "not-a-token"})
    queue.close()

    wait_until(lambda: queue_length(stack, REFRESH_QUEUE + POISON_SUFFIX) == 1,
               "the message to be poisoned")

    assert queue_length(stack) == 0
    assert executed(caplog, "refresh_work") == 1
    assert [r for r in caplog.records if r.getMessage() == "Executed 'refresh_work' (Failed)"] == []
    assert [r.getMessage() for r in caplog.records if r.name == "tokenvault.sweep"] == \
        ["sweep.message_poisoned"]
    with queue_client(stack, REFRESH_QUEUE + POISON_SUFFIX) as poison:
        (moved,) = poison.peek_messages()
    assert json.loads(base64.b64decode(moved.content))["continuation"] == "not-a-token"
    assert stack.app.sweep.plan_run().poisoned == 1
    assert summaries(caplog, "sweep.plan")[-1]["poisoned"] == 1


def test_a_batch_that_keeps_failing_is_retried_then_poisoned_never_forever(
        fixed_queue_stack, serve, caplog, azurite, entra_session):
    """Storage of the records down for good: each delivery raises, the host retries the message
    ``maxDequeueCount`` times and then poisons it — it is not deferred again and again."""
    stack = fixed_queue_stack
    app = stack.app
    dead = TableRecords.from_connection_string(closed_port_connection_string(azurite),
                                               app.settings.backend.table)
    queue = StorageQueue.from_connection_string(azurite.connection_string, REFRESH_QUEUE)
    vault = Vault(client_id=app.settings.client_id, keys=app.keys, records=dead,
                  identity=EntraIdentityProvider.from_settings(app.settings, session=entra_session),
                  clock=stack.clock)
    after = app.settings.refresh_after
    bootstrap.install(dataclasses.replace(app, sweep=SweepHandler(
        planner=Planner(records=dead, keys=app.keys, queue=queue, clock=stack.clock,
                        refresh_after=after),
        worker=Worker(vault=vault, queue=queue, clock=stack.clock, refresh_after=after),
        queue=queue)))
    caplog.set_level(logging.INFO)
    host = serve(NEVER_SOON)
    queue.send({"v": 1, "kind": "batch", "run": "r2", "tenant_id": stack.onboard(),
                "users": [str(uuid.uuid4()) for _ in range(3)]})

    wait_until(lambda: queue_length(stack, REFRESH_QUEUE + POISON_SUFFIX) == 1,
               "the message to be poisoned")

    assert queue_length(stack) == 0
    failures = [r for r in caplog.records if r.getMessage() == "Executed 'refresh_work' (Failed)"]
    assert len(failures) == host.max_dequeue == 5
    (last,) = [r.sweep for r in caplog.records if r.getMessage() == "sweep.last_attempt"]
    assert last["attempt"] == 5 and last["run"] == "r2"
    bootstrap.install(app)
    queue.close()
    dead.close()


def test_a_message_that_is_not_base64_is_poisoned_at_once_and_the_loop_goes_on(
        fixed_queue_stack, serve, caplog):
    # The host cannot decode it, so the function never sees it: straight to the poison queue
    # (the real host does the same, docs/field-notes.md). The queue loop must survive it.
    stack = fixed_queue_stack
    tenant = stack.onboard()
    seed(stack, tenant, 5, due=0)
    latest = stack.admin.rotate(tenant).version
    stack.expire_key_cache()
    caplog.set_level(logging.INFO)
    with queue_client(stack, REFRESH_QUEUE) as raw:  # no encoding policy: the text as is
        raw.send_message("%%% not base64 at all %%%")
    host = serve(NEVER_SOON)

    wait_until(lambda: queue_length(stack, REFRESH_QUEUE + POISON_SUFFIX) == 1,
               "the message to be poisoned")
    assert executed(caplog, "refresh_work") == 0
    assert not [r for r in caplog.records if r.getMessage() == "Executed 'refresh_work' (Failed)"]
    with queue_client(stack, REFRESH_QUEUE + POISON_SUFFIX) as poison:
        [kept] = poison.peek_messages()
    assert kept.content == "%%% not base64 at all %%%"

    # ...and what comes after it is still worked.
    assert host.run_now("refresh_plan", b"{}").status_code == 202
    wait_until(lambda: all_on(stack, tenant, latest), "the records to be rewrapped")
    wait_until(lambda: queue_length(stack) == 0, "the queue to be drained")
