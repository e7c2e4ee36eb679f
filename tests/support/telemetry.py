"""OpenTelemetry in the test session: the SDK with its in-memory exporters as the process's
providers, as ``tokenvault.adapters.telemetry`` sets up Azure Monitor or the console in a real
process.

From the session's start, every span (ours and the Azure SDK clients', through azure-core's
native tracing), every measurement and every log record goes to the SDK's
``InMemorySpanExporter``, ``InMemoryMetricReader`` and ``InMemoryLogRecordExporter``. The
stack fixture composes the app with ``OBSERVER`` (one for the session: an instrument is made
once per process), so the whole integration suite runs with telemetry on.

The leak check (``tests/support/leaks.py``) drains the exported spans and log records after
every test phase, and reads every metric data point at the end, searching them for secrets as
it searches log records and test output. The ``telemetry`` fixture hands a test what was
exported during it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tokenvault.adapters.telemetry import (
    CorrelationSpanProcessor,
    OpenTelemetryObserver,
    correlate_logs,
    enable_azure_sdk_tracing,
)

SPANS = InMemorySpanExporter()
LOGS = InMemoryLogRecordExporter()
READER = InMemoryMetricReader()
_installed: dict = {}


def install() -> None:
    """Make the in-memory SDK the process's telemetry (once)."""
    if _installed:
        return
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(CorrelationSpanProcessor())
    tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(LOGS))
    logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))
    correlate_logs()
    enable_azure_sdk_tracing()
    _installed["observer"] = OpenTelemetryObserver()


def observer() -> OpenTelemetryObserver:
    install()
    return _installed["observer"]


def pytest_configure(config) -> None:
    install()


# --- what was exported, as text for the leak check ---------------------------------------------

def span_text(span: ReadableSpan) -> str:
    parts = [span.name, str(span.status.description or "")]
    parts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        parts += [event.name, *(f"{k}={v}" for k, v in (event.attributes or {}).items())]
    return " ".join(parts)


def drain(spans_exporter: InMemorySpanExporter = SPANS,
          logs_exporter: InMemoryLogRecordExporter = LOGS) -> list[tuple[str, str]]:
    """Every span and log record exported since the last drain, as (where, text); cleared."""
    spans, logs = spans_exporter.get_finished_spans(), logs_exporter.get_finished_logs()
    spans_exporter.clear()
    logs_exporter.clear()
    texts = [(f"span {s.name}", span_text(s)) for s in spans]
    for readable in logs:
        record = readable.log_record
        attributes = " ".join(f"{k}={v}" for k, v in (record.attributes or {}).items())
        texts.append(("exported log record", f"{record.body} {attributes}"))
    return texts


def metric_texts(reader: InMemoryMetricReader = READER) -> list[tuple[str, str]]:
    """Every data point's attributes, as (where, text)."""
    data = reader.get_metrics_data()
    texts = []
    for name, point in _points(data):
        texts.append((f"metric {name}", " ".join(f"{k}={v}" for k, v in point.attributes.items())))
    return texts


def _points(data) -> Iterable:
    if data is None:
        return
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    yield metric.name, point


# --- for tests --------------------------------------------------------------------------------

class Telemetry:
    """What the code under test exported: spans and log records finished since ``reset``
    (or the test's start), and the session's metrics as they stand (counters are cumulative:
    compare before and after)."""

    def reset(self) -> None:
        """Set aside (for the leak check) everything exported so far."""
        from tests.support import leaks

        leaks.note_all(drain())

    def spans(self) -> list[ReadableSpan]:
        return list(SPANS.get_finished_spans())

    def log_records(self) -> list:
        return [readable.log_record for readable in LOGS.get_finished_logs()]

    def value(self, metric: str, **attributes: str) -> float:
        """The sum of ``metric``'s data points whose attributes include ``attributes``: a
        counter's total, a histogram's count, a gauge's value."""
        total = 0.0
        for name, point in _points(READER.get_metrics_data()):
            if name == metric and all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += point.count if hasattr(point, "count") else point.value
        return total

    def points(self, metric: str) -> list[tuple[dict, float]]:
        """(attributes, value) of each of ``metric``'s data points."""
        return [(dict(p.attributes), p.count if hasattr(p, "count") else p.value)
                for name, p in _points(READER.get_metrics_data()) if name == metric]


@pytest.fixture
def telemetry() -> Telemetry:
    handle = Telemetry()
    handle.reset()  # what came before this test is searched, then set aside
    return handle
