"""The observability port (tokenvault/observe.py), its OpenTelemetry adapter on providers of the
test's own, the key-version inventory, and which telemetry a process gets."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.fakes import T0, FakeIdentityProvider, FakeKeys, FixedClock
from tokenvault.adapters.telemetry import (
    CorrelationSpanProcessor,
    OpenTelemetryObserver,
    configure,
    metric_lines,
    span_line,
)
from tokenvault.errors import ReauthRequired, SettingError
from tokenvault.inventory import TenantInventory, classify
from tokenvault.model import RecordKey
from tokenvault.observe import (
    CORRELATION_ATTRIBUTE,
    IDP_DURATION,
    METRICS,
    REQUESTS,
    SWEEP_RECORDS,
    CorrelationFilter,
    NullObserver,
    ObservedIdentityProvider,
    check,
    correlated,
)
from tokenvault.sensitive import Sensitive
from tokenvault.settings import telemetry_mode

TENANT = "0a0a0a0a-0000-4000-8000-00000000000a"
USER = "0b0b0b0b-0000-4000-8000-00000000000b"

# --- the metric catalog: low cardinality by rule ------------------------------------------------

#: Dimensions whose values come from a closed set (routes, codes, outcomes, operations, states).
CLOSED = {"route", "code", "source", "operation", "outcome", "kind", "key_version"}


@pytest.mark.parametrize("metric", METRICS, ids=[m.name for m in METRICS])
def test_every_metric_has_only_closed_dimensions_and_tenant_id_as_its_only_id(metric):
    assert metric.dimensions <= CLOSED | {"tenant_id"}
    assert metric.name.startswith("tokenvault.") and metric.description
    assert metric.kind in ("counter", "histogram", "gauge")


def test_tenant_id_is_a_dimension_only_where_tenants_come_from_stored_records():
    # Sweep and inventory: every tenant there has records, so a key. A request's tenant may be
    # whatever an unauthenticated caller put in a token: never a dimension.
    assert {m.name for m in METRICS if "tenant_id" in m.dimensions} == {
        "tokenvault.sweep.records", "tokenvault.keys.records", "tokenvault.keys.oldest_in_use_age"}


def test_a_dimension_the_metric_does_not_declare_is_refused():
    with pytest.raises(ValueError, match="tenant_id"):
        check(REQUESTS, {"route": "redeem", "tenant_id": TENANT})
    with pytest.raises(ValueError):
        NullObserver().add(REQUESTS, route="redeem", user_id=USER)
    check(SWEEP_RECORDS, {"outcome": "planned"})  # a declared subset is fine


# --- the OpenTelemetry adapter ----------------------------------------------------------------

@pytest.fixture
def otel():
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(CorrelationSpanProcessor())
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    observer = OpenTelemetryObserver(tracer_provider, MeterProvider(metric_readers=[reader]))
    return observer, spans, reader


def points(reader, name):
    data = reader.get_metrics_data()
    if data is None:  # nothing measured yet
        return []
    return [(dict(p.attributes), getattr(p, "count", None) or getattr(p, "value", None))
            for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == name for p in m.data.data_points]


def test_a_span_carries_its_attributes_namespaced_and_the_correlation_id(otel):
    observer, spans, _ = otel
    with correlated("c-1"), observer.span("sweep.batch", tenant_id=TENANT) as note:
        note["rewrapped"] = 3
    (span,) = spans.get_finished_spans()
    assert dict(span.attributes) == {CORRELATION_ATTRIBUTE: "c-1", "tokenvault.tenant_id": TENANT,
                                     "tokenvault.rewrapped": 3}


def test_a_failing_block_marks_its_span_with_the_code_never_the_message(otel):
    observer, spans, _ = otel
    with pytest.raises(ReauthRequired), observer.span("identity_provider.refresh"):
        raise ReauthRequired("secret-looking message", reason="invalid_grant")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code.name == "ERROR" and span.status.description == "reauth_required"
    assert span.events == () and "secret-looking" not in str(dict(span.attributes))


def test_gauges_report_the_last_observation_set_only(otel):
    observer, _, reader = otel
    from tokenvault.observe import KEY_INVENTORY

    observer.observe(KEY_INVENTORY, [(5, {"tenant_id": "t1", "key_version": "latest"})])
    observer.observe(KEY_INVENTORY, [(2, {"tenant_id": "t2", "key_version": "superseded"})])
    assert points(reader, "tokenvault.keys.records") == [
        ({"tenant_id": "t2", "key_version": "superseded"}, 2)]


def test_the_identity_provider_observed_times_each_call_with_its_outcome(otel):
    observer, spans, reader = otel
    inner = FakeIdentityProvider(FixedClock())
    ticks = iter(range(100))
    identity = ObservedIdentityProvider(inner, observer, monotonic=lambda: next(ticks))
    token = inner.issue_refresh_token(RecordKey(TENANT, USER))
    grant = identity.refresh(TENANT, token, ["s"])
    assert grant.access_token.reveal().startswith("at-")  # passed through untouched
    with pytest.raises(ReauthRequired):
        identity.refresh(TENANT, Sensitive("rt-unknown-000000"), ["s"])
    assert sorted(points(reader, IDP_DURATION.name), key=str) == [
        ({"operation": "refresh", "outcome": "ok"}, 1),
        ({"operation": "refresh", "outcome": "reauth_required"}, 1)]
    assert [s.name for s in spans.get_finished_spans()] == ["identity_provider.refresh"] * 2


def test_console_lines_are_one_per_span_and_per_data_point(otel):
    observer, spans, reader = otel
    with correlated("c-2"), observer.span("http.redeem", route="redeem"):
        pass
    observer.add(REQUESTS, route="redeem", code="ok")
    line = span_line(spans.get_finished_spans()[0])
    assert re.fullmatch(r"span http\.redeem [\d.]+ms trace=[0-9a-f]{32} span=[0-9a-f]{16} "
                        r"parent=0{16} UNSET tokenvault\.correlation_id=c-2 "
                        r"tokenvault\.route=redeem\n", line)
    assert "metric tokenvault.requests code=ok route=redeem value=1\n" in metric_lines(
        reader.get_metrics_data())


def test_the_correlation_filter_names_the_invocation_on_every_record():
    record = logging.LogRecord("tokenvault.vault", logging.INFO, __file__, 1, "redeemed", (), None)
    CorrelationFilter().filter(record)
    assert not hasattr(record, "correlation_id")  # none outside an invocation
    with correlated("c-3"):
        CorrelationFilter().filter(record)
    assert record.correlation_id == "c-3"


# --- which telemetry ------------------------------------------------------------------------

@pytest.mark.parametrize("environ, mode", [
    ({}, "none"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}, "none"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}, "azure_monitor"),
    ({"TOKENVAULT_TELEMETRY": "console"}, "console"),
    ({"TOKENVAULT_TELEMETRY": "Console",
      "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}, "azure_monitor"),
    ({"TOKENVAULT_TELEMETRY": "none",
      "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}, "none"),
])
def test_the_telemetry_mode_follows_the_environment(environ, mode):
    assert telemetry_mode(environ) == mode


def test_an_unknown_telemetry_mode_is_a_setting_error_naming_it():
    with pytest.raises(SettingError, match="TOKENVAULT_TELEMETRY"):
        telemetry_mode({"TOKENVAULT_TELEMETRY": "otlp"})


def test_telemetry_off_is_a_null_observer_and_sets_nothing_up(monkeypatch):
    import tokenvault.adapters.telemetry as telemetry

    monkeypatch.setattr(telemetry, "_configured", None)
    assert type(configure("none")) is NullObserver


# --- the key-version inventory ----------------------------------------------------------------

def test_the_inventory_counts_latest_superseded_and_missing_versions_and_the_oldest_age():
    keys = FakeKeys()
    first = keys.onboard("t1")
    latest = keys.rotate("t1")
    keys.onboard("t2")
    now = T0 + timedelta(days=30)
    rows = classify({"t1": {first.version: 3, latest.version: 4, "f" * 32: 2},
                     "t2": {keys.latest("t2").version: 1},
                     "t3": {"a" * 32: 5}}, keys, now)
    assert rows == [TenantInventory("t1", latest=4, superseded=3, missing=2, oldest_age_days=30.0),
                    TenantInventory("t2", latest=1, oldest_age_days=30.0),
                    TenantInventory("t3", missing=5)]  # no key at all: revoked


def test_a_key_store_that_fails_while_the_inventory_is_read_does_not_fail_the_plan(otel, caplog):
    # The plan's work is on the queue by then: the inventory is skipped and the plan stands.
    from tests.fakes import FakeRecords
    from tokenvault.adapters.memory_queue import MemoryQueue
    from tokenvault.errors import InternalError
    from tokenvault.model import Status, TokenRecord
    from tokenvault.sweep import Planner

    class RefusingKeys(FakeKeys):
        def get(self, tenant_id, version):
            raise InternalError()

    observer, _, reader = otel
    keys, records, queue = RefusingKeys(), FakeRecords(), MemoryQueue()
    keys.onboard(TENANT)
    clock = FixedClock()
    for user in ("00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000a2"):
        # On a version the key store has never had: reading it for the inventory fails.
        records.put(TokenRecord(TENANT, user, "11111111-2222-3333-4444-555555555555", "a" * 32,
                                b"sealed", Status.ACTIVE, ("User.Read",), clock.now(), clock.now()))
    planner = Planner(records=records, keys=keys, queue=queue, clock=clock,
                      refresh_after=timedelta(days=7), observer=observer)
    summary = planner.plan()
    assert not summary.continued
    assert points(reader, "tokenvault.keys.records") == []
    assert any(r.getMessage() == "sweep.inventory not reported" for r in caplog.records)


def test_each_plan_part_reports_the_inventory_of_the_tenants_it_scanned_whole():
    """A continuation cuts a tenant in two: neither part's counts are its whole, so neither part
    reports that tenant's gauges (its inventory lines still count it)."""
    import itertools

    from tests.fakes import FakeRecords
    from tokenvault.adapters.memory_queue import MemoryQueue
    from tokenvault.model import Status, TokenRecord
    from tokenvault.sweep import Planner

    keys, records, queue, clock = FakeKeys(), FakeRecords(), MemoryQueue(), FixedClock()
    tenants = sorted(f"{n}0000000-0000-4000-8000-000000000000" for n in "abc")
    for tenant in tenants:
        version = keys.onboard(tenant).version
        for n in range(3):
            records.put(TokenRecord(tenant, f"00000000-0000-0000-0000-00000000000{n}",
                                    "11111111-2222-3333-4444-555555555555", version, b"sealed",
                                    Status.ACTIVE, ("User.Read",), clock.now(), clock.now()))
    planner = Planner(records=records, keys=keys, queue=queue, clock=clock,
                      refresh_after=timedelta(days=7), time_budget=timedelta(0),
                      page_size=5, monotonic=itertools.count().__next__)

    first = planner.plan()  # 5 records a page, out of time after each: a whole, b cut
    [(message, _)] = [m for m in queue.items if m[0]["kind"] == "plan"]
    second = planner.plan(run=first.run, continuation=message["continuation"])

    assert first.continued and list(first.whole_tenants) == [tenants[0]]
    assert not second.continued and list(second.whole_tenants) == [tenants[2]]  # b was cut
    assert first.scanned + second.scanned == 9


def test_a_batch_failing_its_last_attempt_is_counted_as_poisoned_and_earlier_ones_are_not(otel):
    """The host moves a message that failed ``maxDequeueCount`` times to the poison queue: the
    count moves with that last failure only."""
    from tests.fakes import FakeIdentityProvider, FakeRecords
    from tests.unit.world import CLIENT
    from tokenvault.adapters.memory_queue import MemoryQueue
    from tokenvault.errors import UpstreamUnavailable
    from tokenvault.sweep import Planner, SweepHandler, Worker
    from tokenvault.vault import Vault

    class UnreadableRecords(FakeRecords):
        def get_many(self, tenant_id, user_ids):
            raise UpstreamUnavailable(upstream="storage")

    observer, _, reader = otel
    keys, records, queue, clock = FakeKeys(), UnreadableRecords(), MemoryQueue(), FixedClock()
    vault = Vault(client_id=CLIENT, keys=keys, records=records,
                  identity=FakeIdentityProvider(clock), clock=clock)
    after = timedelta(days=7)
    handler = SweepHandler(planner=Planner(records=records, keys=keys, queue=queue, clock=clock,
                                           refresh_after=after),
                           worker=Worker(vault=vault, queue=queue, clock=clock, refresh_after=after),
                           queue=queue, observer=observer)
    body = json.dumps({"v": 1, "kind": "batch", "run": "r", "tenant_id": TENANT,
                       "users": ["00000000-0000-0000-0000-0000000000a1"]})

    for attempt in range(1, 6):
        with pytest.raises(UpstreamUnavailable):
            handler.handle(body, dequeue_count=attempt)
        counted = [v for dims, v in points(reader, "tokenvault.sweep.poisoned")
                   if dims == {"kind": "failed"}]
        assert counted == ([1] if attempt == 5 else [])
