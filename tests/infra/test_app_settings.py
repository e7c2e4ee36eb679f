"""The Function App's settings in the templates: every setting of docs/design.md is wired (or kept
out of Azure on purpose), the app's own settings code accepts them, and no template, parameter
file or pipeline holds a secret."""

import json
import re

import pytest

from tests.infra.templates import INFRA, ROOT, arm, arm_only, bicep_object, bicep_params, bicep_text
from tokenvault.settings import CredentialKind, Settings, telemetry_mode

APP_SETTINGS = "Microsoft.Web/sites/config"
UAMI_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "99999999-8888-7777-6666-555555555555"
# Settings of local.settings.sample.json (docs/design.md "Settings") that Azure must NOT get, and why.
NOT_IN_AZURE = {
    "TOKENVAULT_CLIENT_SECRET": "a stored secret: Azure uses the managed identity as federated credential",
    "TOKENVAULT_CLIENT_CERTIFICATE_PATH": "same: no certificate to store either",
    "TOKENVAULT_LOCAL_KEYRING": "local runs only; refused in Azure",
    "TOKENVAULT_STORAGE": "unset, so the records use the identity-based AzureWebJobsStorage",
    "TOKENVAULT_TELEMETRY": "unset: the Application Insights connection string chooses Azure Monitor",
}


def bicep_app_settings() -> dict[str, str]:
    wired = bicep_object(bicep_text(INFRA / "main.bicep"), "tokenVaultSettings:")
    return {**wired, **bicep_object(bicep_text(INFRA / "app" / "api.bicep"),
                                    "union(tokenVaultSettings,")}


def arm_app_settings() -> dict[str, str]:
    return arm_only(APP_SETTINGS)["properties"]


def design_settings() -> set[str]:
    """docs/design.md: local.settings.sample.json lists every setting."""
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return {name for name in sample if name.startswith("TOKENVAULT_")}


def test_bicep_and_arm_set_the_same_app_settings():
    assert bicep_app_settings().keys() == arm_app_settings().keys()


@pytest.mark.parametrize("settings", [bicep_app_settings, arm_app_settings], ids=["bicep", "arm"])
def test_every_design_setting_is_wired_except_those_azure_must_not_have(settings):
    names = settings().keys()
    assert design_settings() - NOT_IN_AZURE.keys() <= names
    assert not names & NOT_IN_AZURE.keys()


HOST_STORAGE_URIS = {f"AzureWebJobsStorage__{service}ServiceUri" for service in ("blob", "queue", "table")}


@pytest.mark.parametrize("settings", [bicep_app_settings, arm_app_settings], ids=["bicep", "arm"])
def test_host_storage_is_identity_based_with_the_clouds_own_endpoints(settings):
    values = settings()
    # A connection string would hold an account key.
    assert "AzureWebJobsStorage" not in values
    assert values["AzureWebJobsStorage__credential"].strip("'") == "managedidentity"
    assert "AzureWebJobsStorage__clientId" in values
    # Service URIs, not __accountName: the host would build *.core.windows.net from a name,
    # which is wrong in a sovereign cloud
    # (https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity).
    assert HOST_STORAGE_URIS <= values.keys()
    assert "AzureWebJobsStorage__accountName" not in values
    for name in HOST_STORAGE_URIS:
        service = name.removeprefix("AzureWebJobsStorage__").removesuffix("ServiceUri")
        arm_value = (f"[reference(resourceId('Microsoft.Storage/storageAccounts', "
                     f"variables('storageAccountName')), '2023-05-01').primaryEndpoints.{service}]")
        assert values[name] in (f"storageEndpoints.{service}", arm_value), name


def test_the_client_authenticates_with_the_user_assigned_identity_in_both_templates():
    bicep, template = bicep_app_settings(), arm_app_settings()
    assert bicep["TOKENVAULT_CLIENT_ASSERTION"] == "'managed_identity'"
    assert template["TOKENVAULT_CLIENT_ASSERTION"] == "managed_identity"
    assert bicep["AZURE_CLIENT_ID"] == "identity.properties.clientId"
    assert re.fullmatch(r"\[reference\(resourceId\('Microsoft\.ManagedIdentity/userAssignedIdentities',"
                        r" variables\('identityName'\)\), '[\d-]+'\)\.clientId\]",
                        template["AZURE_CLIENT_ID"])
    assert "Authorization=AAD" in template["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def resolve(expression: str) -> str:
    """What Azure would put in an ARM app setting, for a fixed example deployment."""
    if not expression.startswith("["):
        return expression
    params = arm()["parameters"]
    given = {"tokenVaultClientId": CLIENT_ID}

    def param(name: str) -> str:
        value = given.get(name, params[name].get("defaultValue"))
        return ("https://login.microsoftonline.com/"
                if value == "[environment().authentication.loginEndpoint]" else str(value))

    known = [
        (r"\[parameters\('(\w+)'\)\]", lambda m: param(m.group(1))),
        (r"\[string\(parameters\('(\w+)'\)\)\]", lambda m: param(m.group(1))),
        (r"\[reference\(.*storageAccounts.*\)\.primaryEndpoints\.(\w+)\]",
         lambda m: f"https://sttvexample.{m.group(1)}.core.windows.net/"),
        (r"\[reference\(.*userAssignedIdentities.*\)\.clientId\]", lambda m: UAMI_CLIENT_ID),
        (r"\[reference\(.*KeyVault/vaults.*\)\.vaultUri\]",
         lambda m: "https://kv-tv-example.vault.azure.net/"),
        (r"\[reference\(.*Insights/components.*\)\.ConnectionString\]",
         lambda m: "InstrumentationKey=00000000-0000-0000-0000-000000000000"),
        (r"\[format\('ClientId=\{0\};Authorization=AAD', .*clientId\)\]",
         lambda m: f"ClientId={UAMI_CLIENT_ID};Authorization=AAD"),
    ]
    for pattern, value in known:
        match = re.fullmatch(pattern, expression)
        if match:
            return value(match)
    raise AssertionError(f"teach resolve() what Azure makes of {expression}")


@pytest.mark.parametrize("settings", [bicep_app_settings, arm_app_settings], ids=["bicep", "arm"])
def test_the_worker_lets_the_app_export_its_own_telemetry_and_does_not_set_it_up_twice(settings):
    # PYTHON_ENABLE_OPENTELEMETRY: the worker propagates the host's trace context and tells the
    # host the worker exports its own logs. PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY would make
    # the worker call configure_azure_monitor as well: two pipelines, everything sent twice
    # (https://github.com/Azure/azure-functions-python-worker/pull/1621).
    values = settings()
    assert values["PYTHON_ENABLE_OPENTELEMETRY"].strip("'") == "true"
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in values
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in values
    assert "OTEL_TRACES_SAMPLER" not in values  # nothing samples the app's telemetry


def test_the_app_accepts_the_settings_the_arm_template_deploys():
    environ = {name: resolve(value) for name, value in arm_app_settings().items()}
    environ["WEBSITE_SITE_NAME"] = "func-tokenvault-example"  # what Azure adds: the app is in Azure
    settings = Settings.from_environ(environ)
    assert settings.in_azure
    assert settings.client_id == CLIENT_ID
    assert settings.credential_kind is CredentialKind.MANAGED_IDENTITY
    assert settings.managed_identity_client_id == UAMI_CLIENT_ID
    assert settings.backend.key_vault_url == "https://kv-tv-example.vault.azure.net"
    assert settings.backend.storage.connection_string is None
    assert settings.backend.storage.table_endpoint == "https://sttvexample.table.core.windows.net"
    assert settings.backend.queue_storage.queue_endpoint == "https://sttvexample.queue.core.windows.net"
    assert settings.backend.storage.client_id == UAMI_CLIENT_ID
    assert settings.authority_host == "https://login.microsoftonline.com"
    assert (settings.backend.table, settings.backend.key_cache_ttl) == ("tokens", 300)
    assert telemetry_mode(environ) == "azure_monitor"


# --- no secret anywhere -------------------------------------------------------------------

DEPLOYABLE = sorted([*INFRA.rglob("*.bicep"), *INFRA.rglob("*.json"), *INFRA.rglob("*.yml"),
                     *INFRA.rglob("*.sh"), *(ROOT / ".github" / "workflows").glob("*.yml"),
                     *ROOT.glob("azure.yaml")])
SECRET_SHAPES = [
    r"AccountKey=", r"SharedAccessSignature=", r"[?&]sig=", r"-----BEGIN",
    r"InstrumentationKey=[0-9a-f-]{36}",
    r"\blist(Keys|Secrets|AccountSas|ServiceSas|Credentials?)\(",  # ARM functions that read secrets
    r"TOKENVAULT_CLIENT_SECRET", r"client_secret", r"\$\{\{\s*secrets\.",
]


@pytest.mark.parametrize("path", DEPLOYABLE, ids=[str(p.relative_to(ROOT)) for p in DEPLOYABLE])
def test_no_secret_value_or_secret_reading_function_in(path):
    text = path.read_text(encoding="utf-8")
    for shape in SECRET_SHAPES:
        assert not re.search(shape, text, re.I), f"{shape} in {path.name}"


SECRETISH_NAME = re.compile(r"secret|password|pwd|connection|sas|accountkey|apikey", re.I)


def test_no_parameter_is_a_secret_or_defaults_to_one():
    template = arm()["parameters"]
    for name in bicep_params().keys() | template.keys():
        assert not SECRETISH_NAME.search(name), name
    for name, param in template.items():
        assert param["type"] not in ("securestring", "secureObject"), name
        default = param.get("defaultValue")
        assert not (isinstance(default, str)
                    and re.fullmatch(r"[A-Za-z0-9+/=_-]{20,}", default)), name


def test_the_parameter_file_only_names_environment_variables():
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert values.keys() <= bicep_params().keys() & arm()["parameters"].keys()
    for name, entry in values.items():
        assert re.fullmatch(r"\$\{[A-Z_]+(=[^}]*)?\}", entry["value"]), name
        assert not SECRETISH_NAME.search(entry["value"]), name
