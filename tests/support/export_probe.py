"""Run as a process of its own (``python -m tests.support.export_probe``) by
tests/integration/test_telemetry_export.py: the app's Azure Monitor set-up
(``tokenvault.adapters.telemetry.configure``) exporting to the connection string in the
environment, and what the app emits — spans above the distro's default rate limit, sweep
summary lines, an audit record, a log line with extra fields, a counter — then flushed.

``credential`` mode only builds an exporter and prints the class of the credential it took
from ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` (nothing is sent).
"""

from __future__ import annotations

import logging
import sys

TENANT = "0a0a0a0a-0000-4000-8000-00000000000a"
USER = "0b0b0b0b-0000-4000-8000-00000000000b"
SPANS = 40  # in well under a second: the distro's default sampler keeps 5 per second


def emit() -> None:
    from opentelemetry import _logs, metrics, trace

    from tokenvault import bootstrap
    from tokenvault.adapters.telemetry import configure
    from tokenvault.audit import Audit
    from tokenvault.observe import REQUESTS, correlated
    from tokenvault.sweep_messages import log_summary as _summary

    bootstrap.log_levels()
    observer = configure("azure_monitor")
    with correlated("probe-correlation-id"):
        for index in range(SPANS):
            with observer.span("sweep.batch", tenant_id=TENANT):
                _summary("sweep.batch", {"run": "r1", "tenant_id": TENANT, "rewrapped": index})
        with observer.span("http.redeem", route="redeem"):
            logging.getLogger("tokenvault.vault").info(
                "redeemed", extra={"tenant_id": TENANT, "user_id": USER, "rotated": True})
            audit = Audit("redeem", "probe-correlation-id", caller=f"user:{USER}@{TENANT}",
                          tenant_id=TENANT, user_id=USER, scopes=("https://graph.microsoft.com/User.Read",))
            audit.write("ok")
        observer.add(REQUESTS, route="redeem", code="ok")
    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(),
                     metrics.get_meter_provider()):
        provider.force_flush()  # type: ignore[attr-defined]
    print("emitted", flush=True)


def credential() -> None:
    from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter

    exporter = AzureMonitorLogExporter(disable_offline_storage=True)
    print(type(exporter._credential).__name__, flush=True)  # noqa: SLF001 - what it took


if __name__ == "__main__":
    {"emit": emit, "credential": credential}[sys.argv[1]]()
