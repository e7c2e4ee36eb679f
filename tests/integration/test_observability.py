"""Traces and metrics as the app exports them, read with the OpenTelemetry SDK's in-memory span
exporter and metric reader (tests/support/telemetry.py): function_app's functions on the real
parts, composed with the OpenTelemetry observer, Azure SDK calls traced by azure-core.

The metric contract is docs/design.md "Metrics"; the leak check searches everything exported
here (and in every other test) for the secrets the fakes issued.
"""

from __future__ import annotations

from azure.functions.queue import QueueMessage

from tests.integration.test_sweep_e2e import drain, seed
from tests.support.stack_fixtures import FUNCTIONS, MORE_SCOPES, new_id
from tokenvault.observe import CORRELATION_ATTRIBUTE

REQUESTS = "tokenvault.requests"
REDEEMS = "tokenvault.redeems"
IDP = "tokenvault.identity_provider.duration"
KEY_VAULT = "tokenvault.key_vault.calls"
SWEEP = "tokenvault.sweep.records"


class Before:
    """Counters read now, to compare with later: ``moved(metric, **dims)``."""

    def __init__(self, telemetry) -> None:
        self.telemetry = telemetry
        self.seen: dict[tuple, float] = {}

    def __call__(self, metric: str, **dims: str) -> float:
        self.seen[(metric, tuple(sorted(dims.items())))] = self.telemetry.value(metric, **dims)
        return self.seen[(metric, tuple(sorted(dims.items())))]

    def moved(self, metric: str, **dims: str) -> float:
        return self.telemetry.value(metric, **dims) - self.seen[(metric, tuple(sorted(dims.items())))]


def descendants(spans, root) -> list:
    """The spans under ``root`` (any depth), in start order."""
    by_parent: dict[int, list] = {}
    for span in spans:
        if span.parent is not None:
            by_parent.setdefault(span.parent.span_id, []).append(span)
    found, todo = [], [root.context.span_id]
    while todo:
        children = by_parent.get(todo.pop(), [])
        found += children
        todo += [c.context.span_id for c in children]
    return sorted(found, key=lambda s: s.start_time)


def test_a_redeem_through_function_app_is_one_span_tree_under_its_correlation_id(
        stack, onboarded_tenant, telemetry):
    user = new_id()
    assert stack.store(onboarded_tenant, user).status_code == 201
    telemetry.reset()

    response = stack.redeem(onboarded_tenant, user)

    assert response.status_code == 200
    correlation_id = response.headers["X-Correlation-Id"]
    spans = telemetry.spans()
    (root,) = [s for s in spans if s.name == "http.redeem"]
    assert root.parent is None  # the function's own span (the host's, in Azure, is its parent)
    under = descendants(spans, root)
    assert {s.context.span_id for s in under} | {root.context.span_id} \
        == {s.context.span_id for s in spans}  # nothing outside the tree
    names = [s.name for s in under]
    # HTTP → Table read → identity provider → Table write, in that order (Key Vault reads and
    # each Azure call's HTTP span in between).
    read = names.index("TableClient.get_entity")
    refresh = names.index("identity_provider.refresh")
    write = names.index("TableClient.update_entity")
    assert read < refresh < write
    assert {under[i].parent.span_id for i in (read, refresh, write)} == {root.context.span_id}
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert {s.attributes.get(CORRELATION_ATTRIBUTE) for s in spans} == {correlation_id}
    assert root.attributes["tokenvault.route"] == "redeem"
    assert root.attributes["tokenvault.outcome"] == "ok" and root.attributes["tokenvault.status"] == 200
    # The logs of the invocation carry the same id.
    records = [r for r in telemetry.log_records() if r.attributes.get("correlation_id")]
    assert records and {r.attributes["correlation_id"] for r in records} == {correlation_id}
    assert {r.trace_id for r in records} == {root.context.trace_id}


def test_a_refused_request_is_a_failed_span_with_its_code_and_nothing_under_it(stack, telemetry):
    telemetry.reset()
    response = stack.call("redeem_token", body={"scopes": ["x"]}, token="not-a-jwt")

    assert response.status_code == 401
    (span,) = telemetry.spans()
    assert span.name == "http.redeem" and span.attributes["tokenvault.outcome"] == "invalid_token"
    assert span.status.status_code.name == "ERROR" and span.status.description == "invalid_token"
    assert span.events == ()  # no exception text is recorded


def test_the_request_redeem_identity_provider_and_key_vault_counters_move_as_the_contract_says(
        stack, onboarded_tenant, telemetry):
    user = new_id()
    before = Before(telemetry)
    before(REQUESTS, route="store", code="ok")
    before(IDP, operation="on_behalf_of", outcome="ok")
    assert stack.store(onboarded_tenant, user).status_code == 201
    assert before.moved(REQUESTS, route="store", code="ok") == 1
    assert before.moved(IDP, operation="on_behalf_of", outcome="ok") == 1

    stack.expire_key_cache()
    for dims in ({"source": "identity_provider"}, {"source": "cache"}):
        before(REDEEMS, **dims)
    before(REQUESTS, route="redeem", code="ok")
    before(IDP, operation="refresh", outcome="ok")
    before(KEY_VAULT, operation="get_secret", outcome="ok")
    before(KEY_VAULT, operation="get_latest_secret", outcome="ok")
    before("tokenvault.request.duration", route="redeem", code="ok")

    assert stack.redeem(onboarded_tenant, user).status_code == 200  # refreshed at Entra
    assert stack.redeem(onboarded_tenant, user).status_code == 200  # from the cache

    assert before.moved(REQUESTS, route="redeem", code="ok") == 2
    assert before.moved("tokenvault.request.duration", route="redeem", code="ok") == 2
    assert before.moved(REDEEMS, source="identity_provider") == 1
    assert before.moved(REDEEMS, source="cache") == 1
    assert before.moved(IDP, operation="refresh", outcome="ok") == 1
    # A cold cache: the record's key version and the latest (to seal the rotated token) were
    # read once each; the second redeem read nothing from Key Vault.
    assert before.moved(KEY_VAULT, operation="get_secret", outcome="ok") == 1
    assert before.moved(KEY_VAULT, operation="get_latest_secret", outcome="ok") == 1


def test_refusals_are_counted_under_their_codes_and_a_dead_grant_as_an_identity_provider_outcome(
        stack, onboarded_tenant, telemetry):
    user = new_id()
    assert stack.store(onboarded_tenant, user).status_code == 201
    stack.entra.kill_user(onboarded_tenant, user)
    before = Before(telemetry)
    before(REQUESTS, route="redeem", code="reauth_required")
    before(REQUESTS, route="redeem", code="invalid_token")
    before(IDP, operation="refresh", outcome="reauth_required")
    before(REDEEMS)

    refused = stack.redeem(onboarded_tenant, user, scopes=MORE_SCOPES[:1])
    unauthenticated = stack.call("redeem_token", body={"scopes": ["x"]})

    assert (refused.status_code, unauthenticated.status_code) == (409, 401)
    assert before.moved(REQUESTS, route="redeem", code="reauth_required") == 1
    assert before.moved(REQUESTS, route="redeem", code="invalid_token") == 1
    assert before.moved(IDP, operation="refresh", outcome="reauth_required") == 1
    assert before.moved(REDEEMS) == 0


def test_a_sweep_reports_planned_and_worked_records_per_tenant_and_the_key_inventory(
        stack, telemetry):
    tenant = stack.onboard()
    seed(stack, tenant, 7)
    stack.admin.rotate(tenant)
    stack.expire_key_cache()
    before = Before(telemetry)
    before(SWEEP, outcome="planned")
    before(SWEEP, outcome="rewrapped", tenant_id=tenant)
    telemetry.reset()

    stack.app.sweep.plan_run()
    # Planned: all seven are on a superseded version, so the inventory says so.
    inventory = {d["key_version"]: v for d, v in telemetry.points("tokenvault.keys.records")
                 if d["tenant_id"] == tenant}
    assert inventory == {"latest": 0, "superseded": 7, "missing": 0}
    ages = [v for d, v in telemetry.points("tokenvault.keys.oldest_in_use_age")
            if d == {"tenant_id": tenant}]
    assert len(ages) == 1 and -1 < ages[0] < 1  # both versions were made just now
    assert telemetry.value("tokenvault.sweep.poison_queue") == 0
    drain(stack)

    assert before.moved(SWEEP, outcome="planned") == 7
    assert before.moved(SWEEP, outcome="rewrapped", tenant_id=tenant) == 7
    spans = telemetry.spans()
    (plan,) = [s for s in spans if s.name == "sweep.plan"]
    batches = [s for s in spans if s.name == "sweep.batch"]
    assert plan.attributes["tokenvault.planned"] == 7
    assert [b.attributes["tokenvault.tenant_id"] for b in batches] == [tenant]
    assert batches[0].attributes["tokenvault.rewrapped"] == 7
    # Each invocation has its own correlation id, on its spans (the Azure SDK's included).
    for root in [plan, *batches]:
        ids = {s.attributes.get(CORRELATION_ATTRIBUTE) for s in [root, *descendants(spans, root)]}
        assert len(ids) == 1 and None not in ids

    stack.app.sweep.plan_run()  # the next run sees them all on the latest version
    inventory = {d["key_version"]: v for d, v in telemetry.points("tokenvault.keys.records")
                 if d["tenant_id"] == tenant}
    assert inventory == {"latest": 7, "superseded": 0, "missing": 0}


def test_a_message_that_can_never_be_worked_is_counted_as_poisoned_at_once(stack, telemetry):
    """Malformed: poisoned on its first delivery (it is not retried), and counted then."""
    work = FUNCTIONS["refresh_work"].get_user_function()
    before = Before(telemetry)
    before("tokenvault.sweep.poisoned", kind="malformed")

    work(QueueMessage(id=new_id(), body=b"not json", dequeue_count=1))

    assert before.moved("tokenvault.sweep.poisoned", kind="malformed") == 1
