"""What reaches Application Insights: the app's own Azure Monitor set-up, in a process of its
own (tests/support/export_probe.py), exporting through the real Azure Monitor OpenTelemetry
distro and exporter to a local stand-in for the ingestion endpoint (tests/support/ingestion.py).

This is the evidence behind docs/design.md "Observability": a log record's extra fields arrive
as properties of its trace (``customDimensions``), so the text workaround is gone; nothing is
sampled (40 spans in well under a second, where the distro's default keeps 5 a second); the
correlation id is on every span and log record, and a log record carries its span's trace id
(``operation_Id``). What the service does after ingestion is not shown here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import leaks
from tests.support.export_probe import SPANS, TENANT, USER
from tests.support.ingestion import Ingestion

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUIET = {  # the SDK's own reporting to Microsoft, off: the probe talks to the stand-in only
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
}


def probe(mode: str, environ: dict) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_", "TOKENVAULT_", "AZURE_"))}
    done = subprocess.run([sys.executable, "-m", "tests.support.export_probe", mode], cwd=ROOT,
                          env={**env, **QUIET, **environ}, capture_output=True, text=True,
                          timeout=120)
    leaks.note_all([("export probe output", done.stdout + done.stderr)])
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def exported():
    ingestion = Ingestion().start()
    try:
        assert "emitted" in probe("emit", {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string})
        leaks.note_all([("ingested telemetry", json.dumps(ingestion.envelopes))])
        yield ingestion
    finally:
        ingestion.stop()


def messages(ingestion: Ingestion, prefix: str) -> list[dict]:
    return [m for m in ingestion.of_type("MessageData") if m["message"].startswith(prefix)]


def test_log_fields_arrive_as_custom_dimensions_of_their_trace(exported):
    (redeemed,) = messages(exported, "redeemed")
    assert redeemed["message"] == "redeemed"  # the text is the text: no JSON appended
    props = redeemed["properties"]
    assert (props["tenant_id"], props["user_id"], props["rotated"]) == (TENANT, USER, "True")
    assert props["correlation_id"] == "probe-correlation-id"


def test_an_audit_record_arrives_with_each_field_a_custom_dimension(exported):
    (audit,) = messages(exported, "audit ")
    fields = json.loads(audit["message"][len("audit "):])
    props = audit["properties"]
    assert fields["action"] == "redeem" and fields["outcome"] == "ok"
    for name in ("action", "outcome", "caller", "tenant_id", "user_id", "correlation_id"):
        assert props[name] == fields[name], name
    assert props["scopes"] == "https://graph.microsoft.com/User.Read"
    assert props["cached"] == "False" and audit["severityLevel"] in ("Information", 1)


def test_nothing_is_sampled_every_span_and_every_sweep_summary_arrives(exported):
    spans = [d for d in exported.of_type("RemoteDependencyData") if d["name"] == "sweep.batch"]
    summaries = messages(exported, "sweep.batch ")
    assert len(spans) == SPANS and len(summaries) == SPANS
    assert sorted(json.loads(m["message"].split(" ", 1)[1])["rewrapped"] for m in summaries) \
        == list(range(SPANS))


def test_the_correlation_id_is_on_every_span_and_logs_share_their_spans_operation(exported):
    spans = exported.of_type("RemoteDependencyData")
    assert spans and {s["properties"]["tokenvault.correlation_id"] for s in spans} \
        == {"probe-correlation-id"}
    (redeem,) = [s for s in spans if s["name"] == "http.redeem"]
    (audit,) = messages(exported, "audit ")
    assert audit["_tags"]["ai.operation.id"] == redeem["_tags"]["ai.operation.id"]


def test_metrics_arrive_with_their_dimensions(exported):
    points = [m for m in exported.of_type("MetricData")
              if m["metrics"][0]["name"] == "tokenvault.requests"]
    assert points and points[0]["properties"] == {"route": "redeem", "code": "ok"}
    assert points[0]["metrics"][0]["value"] == 1


def test_the_exporter_authenticates_with_the_managed_identity_named_in_the_setting():
    # As infra/app/api.bicep sets it; the exporter reads it itself when no credential is given.
    name = probe("credential", {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-4000-8000-0000000000a1",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING":
            "ClientId=00000000-0000-4000-8000-0000000000c1;Authorization=AAD"})
    assert name.strip() == "ManagedIdentityCredential"
