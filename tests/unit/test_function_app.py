"""function_app as the Functions worker indexes it: what it declares, how it fails when the
settings are wrong, and that its OpenAPI document matches what it declares."""

import json
import logging
from pathlib import Path

import azure.functions as func
import pytest

import function_app
from tokenvault import bootstrap
from tokenvault.dev.devhost import index_functions
from tokenvault.errors import SettingError
from tokenvault.openapi import document

ROOT = Path(__file__).resolve().parents[2]
CLIENT = "3b9f0c1e-5d7a-4e2b-9c8d-0a1b2c3d4e5f"
FUNCTIONS = {f.get_function_name(): f for f in index_functions(function_app.app)}


def binding(name: str) -> dict:
    return json.loads(FUNCTIONS[name].get_function_json())["bindings"][0]


def http_routes() -> set[tuple[str, str]]:
    routes = set()
    for name in FUNCTIONS:
        b = binding(name)
        if b["type"] == "httpTrigger":
            routes |= {(m.lower(), "/" + b["route"]) for m in b["methods"]}
    return routes


def call(name: str, *, method="GET", body=b"", route_params=None, headers=None):
    request = func.HttpRequest(method=method, url=f"/api/{name}", body=body,
                               route_params=route_params or {}, headers=headers or {})
    return FUNCTIONS[name].get_user_function()(request)


def test_data_routes_require_a_function_key_and_only_health_and_openapi_are_anonymous():
    levels = {name: binding(name).get("authLevel") for name in FUNCTIONS
              if binding(name)["type"] == "httpTrigger"}
    assert {n for n, level in levels.items() if level == "ANONYMOUS"} == {"health", "openapi"}
    assert all(level == "FUNCTION" for n, level in levels.items() if n not in ("health", "openapi"))


def test_the_sweep_is_declared_on_the_settings_schedule_and_the_refresh_queue():
    assert binding("refresh_plan")["schedule"] == "%TOKENVAULT_REFRESH_SCHEDULE%"
    assert binding("refresh_work")["queueName"] == "tokenvault-refresh"


def test_every_declared_route_is_in_the_openapi_document_and_vice_versa():
    doc = document("test")
    documented = {(method, path) for path, item in doc["paths"].items()
                  for method in item if method != "parameters"}
    assert documented == http_routes()


@pytest.fixture
def unconfigured(monkeypatch):
    for name in ("TOKENVAULT_CLIENT_ID", "TOKENVAULT_CLIENT_SECRET", "TOKENVAULT_KEY_VAULT_URL",
                 "TOKENVAULT_LOCAL_KEYRING", "AzureWebJobsStorage"):
        monkeypatch.delenv(name, raising=False)
    bootstrap.reset()
    yield
    bootstrap.reset()


def test_a_missing_setting_is_one_log_line_and_an_internal_problem(unconfigured, caplog):
    caplog.set_level(logging.INFO)
    response = call("store_token", method="POST", body=b'{"scopes": ["x"]}',
                    headers={"Content-Type": "application/json"})

    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    problem = json.loads(response.get_body())
    assert problem["code"] == "internal" and "TOKENVAULT" not in problem["detail"]
    config_lines = [r.getMessage() for r in caplog.records if "configuration error" in r.getMessage()]
    assert config_lines == ["configuration error: setting TOKENVAULT_CLIENT_ID: missing"]


def test_health_and_openapi_answer_without_composing_the_app(unconfigured):
    health = call("health")
    assert health.status_code == 200
    assert json.loads(health.get_body())["status"] == "ok"
    spec = call("openapi")
    assert spec.status_code == 200 and json.loads(spec.get_body())["openapi"] == "3.1.0"


def test_in_azure_log_fields_stay_attributes_no_text_workaround_is_installed(unconfigured,
                                                                          monkeypatch):
    # The app exports its own logs (OpenTelemetry): each attribute is a custom dimension in
    # Application Insights (tests/integration/test_telemetry_export.py shows it), so nothing
    # rewrites the message text any more.
    from tokenvault.dev.logfields import FieldsInMessage

    azure = {"WEBSITE_SITE_NAME": "func-tokenvault-x", "TOKENVAULT_CLIENT_ID": CLIENT,
             "TOKENVAULT_CLIENT_ASSERTION": "managed_identity", "AZURE_CLIENT_ID": CLIENT,
             "TOKENVAULT_KEY_VAULT_URL": "https://tv.vault.azure.net",
             "AzureWebJobsStorage__accountName": "tvstore"}
    for name, value in azure.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    root = logging.getLogger()
    bootstrap.current()  # composes without a network call: clients connect on first use
    assert not any(isinstance(f, FieldsInMessage) for h in root.handlers for f in h.filters)


def test_with_a_connection_string_the_app_reports_to_opentelemetry_and_never_sets_it_up_twice(
        unconfigured, monkeypatch, caplog):
    # The test session has an OpenTelemetry SDK set up already (as a worker with
    # PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY would): the app reports to it, and says so,
    # instead of calling configure_azure_monitor a second time.
    import tokenvault.adapters.telemetry as telemetry
    from tokenvault.adapters.telemetry import OpenTelemetryObserver

    monkeypatch.setattr(telemetry, "_configured", None)
    for name, value in {"WEBSITE_SITE_NAME": "func-tokenvault-x", "TOKENVAULT_CLIENT_ID": CLIENT,
                        "TOKENVAULT_CLIENT_ASSERTION": "managed_identity", "AZURE_CLIENT_ID": CLIENT,
                        "TOKENVAULT_KEY_VAULT_URL": "https://tv.vault.azure.net",
                        "AzureWebJobsStorage__accountName": "tvstore",
                        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.WARNING, logger="tokenvault.adapters.telemetry")
    app = bootstrap.current()
    assert isinstance(app.observer, OpenTelemetryObserver)
    assert any("already set up" in r.getMessage() for r in caplog.records)


# --- logging in Azure: the app sets the libraries' levels, sampling keeps the sweep lines ----

NOISY = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "msal",
         "urllib3.connectionpool")


@pytest.fixture
def library_levels_unset():
    """The libraries' loggers as a fresh worker process has them (NOTSET: root's level)."""
    saved = {name: logging.getLogger(name).level
             for name in (*bootstrap.LIBRARY_LOG_LEVELS, *NOISY, "urllib3")}
    root_level = logging.getLogger().level
    for name in saved:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.getLogger().setLevel(logging.INFO)  # the worker forwards Information
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().setLevel(root_level)


def test_the_app_itself_keeps_sdk_request_logs_out_of_information(unconfigured,
                                                                   library_levels_unset):
    # host.json cannot do this: the host files all worker logs under Function.<name>.User.
    assert all(logging.getLogger(name).isEnabledFor(logging.INFO) for name in NOISY)
    with pytest.raises(SettingError):
        bootstrap.current()  # levels are set first, even when the settings are wrong
    for name in NOISY:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    assert logging.getLogger("tokenvault.sweep").isEnabledFor(logging.INFO)


def test_the_host_exports_opentelemetry_and_nothing_in_host_json_samples_the_app_s_records():
    # "telemetryMode": "OpenTelemetry": the host exports in OpenTelemetry form and the app's
    # worker exports its own traces, metrics and logs (the Azure Monitor distro, configured by
    # tokenvault.adapters.telemetry with sampling off — shown in
    # tests/integration/test_telemetry_export.py). host.json's logging.applicationInsights
    # (samplingSettings among it) does not apply in that mode, so it is not there to mislead:
    # https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto (Considerations).
    host = json.loads((ROOT / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    assert "applicationInsights" not in host["logging"]
    # and the app's records are at a level the host keeps
    assert host["logging"]["logLevel"]["Function"] in ("Information", "Debug", "Trace")
