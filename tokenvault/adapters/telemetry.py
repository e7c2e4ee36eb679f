"""The ``Observer`` port on OpenTelemetry, and the process's telemetry set-up.

``configure`` is called once per process, on first use (``bootstrap.current``), never at
import: the Azure Monitor distro alone takes a third of a second to import. What it sets up
follows the environment (``tokenvault.settings.telemetry_mode``):

- ``azure_monitor`` (``APPLICATIONINSIGHTS_CONNECTION_STRING`` set): the Azure Monitor
  OpenTelemetry distro (``configure_azure_monitor``) exports traces, metrics and logs. Its
  credential comes from ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
  (``Authorization=AAD;ClientId=<managed identity>``), which the exporter reads itself when no
  ``credential`` is passed (azure-monitor-opentelemetry-exporter, ``export/_base.py``
  ``_get_authentication_credential``; the setting:
  https://learn.microsoft.com/azure/azure-functions/functions-app-settings#applicationinsights_authentication_string).
  Sampling is fixed at 100% (``sampling_ratio=1.0``; the distro's default since 1.8 is a rate
  limit of 5 traces/s) and logs are never sampled by trace (``enable_trace_based_sampling_for
  _logs=False``, the default, said explicitly): the sweep's summary lines and the audit
  records all arrive.
- ``console`` (the dev host): spans, one line each, and metrics every minute on stdout.
- ``none``: nothing; the app reports to a ``NullObserver``.

In every mode but ``none`` the Azure SDK clients trace through azure-core's native
OpenTelemetry support (``settings.tracing_enabled``, azure-core >= 1.31): each Table, Queue
and Key Vault call is a span under the current one. The distro's own ``azure_sdk``
instrumentation (the older azure-core-tracing-opentelemetry plugin) is turned off so both
modes trace the same way.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Status, StatusCode

from .. import __version__
from ..observe import (
    CORRELATION_ATTRIBUTE,
    METRICS,
    CorrelationFilter,
    Metric,
    NullObserver,
    Observer,
    check,
    current_correlation_id,
    outcome_of,
)

__all__ = ["OpenTelemetryObserver", "CorrelationSpanProcessor", "configure",
           "enable_azure_sdk_tracing", "correlate_logs", "SECONDS_BUCKETS"]

log = logging.getLogger(__name__)

#: Histogram buckets for durations in seconds (the SDK's defaults are sized for milliseconds).
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OpenTelemetryObserver(Observer):
    """Spans and instruments of the catalog (``tokenvault.observe.METRICS``) on the given
    providers (default: the process's global ones)."""

    enabled = True

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        meter_provider = meter_provider or metrics.get_meter_provider()
        self._tracer = tracer_provider.get_tracer("tokenvault", __version__)
        meter = meter_provider.get_meter("tokenvault", __version__)
        self._lock = threading.Lock()
        self._gauges: dict[str, list[Observation]] = {}
        self._instruments: dict[str, Any] = {}
        for metric in METRICS:
            if metric.kind == "counter":
                self._instruments[metric.name] = meter.create_counter(
                    metric.name, unit=metric.unit, description=metric.description)
            elif metric.kind == "histogram":
                self._instruments[metric.name] = meter.create_histogram(
                    metric.name, unit=metric.unit, description=metric.description,
                    explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
            else:
                self._gauges[metric.name] = []
                meter.create_observable_gauge(metric.name, callbacks=[self._gauge(metric.name)],
                                              unit=metric.unit, description=metric.description)

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[dict[str, Any]]:
        note = dict(attributes)
        # Exceptions are not recorded as span events: their text is not ours to vouch for.
        with self._tracer.start_as_current_span(name, record_exception=False,
                                                set_status_on_exception=False) as span:
            try:
                yield note
            except BaseException as error:
                note.setdefault("outcome", outcome_of(error))
                raise
            finally:
                span.set_attributes({_attribute(k): v for k, v in note.items() if v is not None})
                outcome = note.get("outcome")
                if outcome is not None and outcome != "ok":
                    span.set_status(Status(StatusCode.ERROR, str(outcome)))

    def add(self, metric: Metric, value: int = 1, **dimensions: str) -> None:
        check(metric, dimensions)
        self._instruments[metric.name].add(value, dimensions)

    def record(self, metric: Metric, value: float, **dimensions: str) -> None:
        check(metric, dimensions)
        self._instruments[metric.name].record(value, dimensions)

    def observe(self, metric: Metric, values: Sequence[tuple[float, Mapping[str, str]]]) -> None:
        for _, dims in values:
            check(metric, dims)
        with self._lock:
            self._gauges[metric.name] = [Observation(v, dict(d)) for v, d in values]

    def _gauge(self, name: str) -> Any:
        def callback(options: CallbackOptions) -> list[Observation]:
            with self._lock:
                return list(self._gauges[name])
        return callback


def _attribute(key: str) -> str:
    """Our own span attributes are namespaced; semantic-convention ones (dotted) are kept."""
    return key if "." in key else f"tokenvault.{key}"


class CorrelationSpanProcessor(SpanProcessor):
    """Puts the invocation's correlation id on every span started under it — ours, the Azure
    SDK's and the HTTP instrumentations' alike."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        correlation_id = current_correlation_id()
        if correlation_id is not None:
            span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)

    def on_end(self, span: ReadableSpan) -> None:
        pass


def enable_azure_sdk_tracing() -> None:
    """Every Azure SDK client traces its calls to the global tracer provider (azure-core's
    native OpenTelemetry support; AZURE_TRACING_ENABLED is the same switch)."""
    from azure.core.settings import settings

    settings.tracing_enabled = True


# --- the process's set-up -------------------------------------------------------------------

_configured: Observer | None = None
_configure_lock = threading.Lock()


def configure(mode: str, *, environ: Mapping[str, str] = os.environ,
              out: IO[str] | None = None) -> Observer:
    """Set up telemetry for this process (once; later calls return the same observer).

    ``mode`` is ``azure_monitor``, ``console`` or ``none`` (``settings.telemetry_mode``).
    """
    global _configured
    with _configure_lock:
        if _configured is None:
            _configured = _configure(mode, environ, out or sys.stdout)
        return _configured


def _configure(mode: str, environ: Mapping[str, str], out: IO[str]) -> Observer:
    if mode == "none":
        return NullObserver()
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        # Someone set up the SDK before us: the worker does when PYTHON_APPLICATIONINSIGHTS_
        # ENABLE_TELEMETRY is true (https://github.com/Azure/azure-functions-python-worker/pull/1621).
        # A second set-up would export twice; report to what is there.
        log.warning("telemetry: an OpenTelemetry SDK is already set up in this process; "
                    "reporting to it (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY should be unset)")
    elif mode == "azure_monitor":
        _azure_monitor(environ)
    else:
        _console(out)
    enable_azure_sdk_tracing()
    correlate_logs()
    return OpenTelemetryObserver()


def _azure_monitor(environ: Mapping[str, str]) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import Resource

    # As the Functions worker does for its own set-up (azure_functions_worker, otel.py): the
    # resource names the function app, so our telemetry and the host's share a role name.
    os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")
    configure_azure_monitor(
        connection_string=environ["APPLICATIONINSIGHTS_CONNECTION_STRING"],
        sampling_ratio=1.0,
        enable_trace_based_sampling_for_logs=False,
        span_processors=[CorrelationSpanProcessor()],
        instrumentation_options={"azure_sdk": {"enabled": False}},
        resource=Resource.create({"service.version": __version__}),
    )


def _console(out: IO[str]) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    resource = Resource.create({"service.name": "tokenvault", "service.version": __version__})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(CorrelationSpanProcessor())
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
        out=out, formatter=span_line)))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=out, formatter=metric_lines),
                                           export_interval_millis=60_000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader], resource=resource))


def correlate_logs() -> None:
    """The correlation id on every record the root logger's handlers (the exporters') see
    (the distro's log exporter handler among them)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, CorrelationFilter) for f in handler.filters):
            handler.addFilter(CorrelationFilter())


def span_line(span: ReadableSpan) -> str:
    """One console line per span: name, duration, ids, status and attributes."""
    context = span.get_span_context()
    trace_id, span_id = (context.trace_id, context.span_id) if context else (0, 0)
    parent = span.parent.span_id if span.parent else 0
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    attributes = " ".join(f"{k}={v!s}" for k, v in sorted((span.attributes or {}).items()))
    status = span.status.status_code.name if span.status else "UNSET"
    return (f"span {span.name} {duration:.1f}ms trace={trace_id:032x} span={span_id:016x} "
            f"parent={parent:016x} {status} {attributes}\n")


def metric_lines(data: Any) -> str:
    """One console line per data point: name, attributes, value (or count and sum)."""
    lines = []
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attributes = " ".join(f"{k}={v}" for k, v in sorted(point.attributes.items()))
                    value = (f"count={point.count} sum={point.sum:.3f}" if hasattr(point, "count")
                             else f"value={point.value}")
                    lines.append(f"metric {metric.name} {attributes} {value}".replace("  ", " "))
    return "".join(line + "\n" for line in lines)
