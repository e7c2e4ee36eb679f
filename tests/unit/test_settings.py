"""Settings: read once, validated whole; a bad value is one line naming the setting."""

from datetime import timedelta

import pytest

from tokenvault.clouds import CHINA, PUBLIC, US_GOVERNMENT
from tokenvault.errors import SettingError
from tokenvault.model import AppCaller
from tokenvault.settings import CredentialKind, Settings, parse_duration, running_in_azure

CLIENT = "11111111-2222-3333-4444-555555555555"
BASE = {
    "TOKENVAULT_CLIENT_ID": CLIENT,
    "TOKENVAULT_CLIENT_SECRET": "s3cr3t-value-never-shown",
    "TOKENVAULT_LOCAL_KEYRING": "keyring.json",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


def settings(**changes) -> Settings:
    env = {**BASE, **changes}
    return Settings.from_environ({k: v for k, v in env.items() if v is not None})


def test_defaults():
    s = settings()
    assert s.client_id == CLIENT and s.credential_kind is CredentialKind.SECRET
    assert s.authority_host == "https://login.microsoftonline.com"
    assert s.backend.key_cache_ttl == 300 and s.backend.table == "tokens"
    assert s.refresh_after == timedelta(days=7) and s.backend.refresh_queue == "tokenvault-refresh"
    assert s.backend.storage.connection_string.reveal() == "UseDevelopmentStorage=true"
    assert s.sweep_concurrency == 8
    assert settings(TOKENVAULT_SWEEP_CONCURRENCY="32").sweep_concurrency == 32


@pytest.mark.parametrize("changes, setting", [
    ({"TOKENVAULT_CLIENT_ID": None}, "TOKENVAULT_CLIENT_ID"),
    ({"TOKENVAULT_CLIENT_ID": "not-a-guid"}, "TOKENVAULT_CLIENT_ID"),
    ({"TOKENVAULT_CLIENT_SECRET": None}, "TOKENVAULT_CLIENT_SECRET"),
    ({"TOKENVAULT_CLIENT_ASSERTION": "managed_identity"}, "TOKENVAULT_CLIENT_ASSERTION"),
    ({"TOKENVAULT_CLIENT_SECRET": None, "TOKENVAULT_CLIENT_ASSERTION": "kerberos"},
     "TOKENVAULT_CLIENT_ASSERTION"),
    ({"TOKENVAULT_CLIENT_SECRET": None, "TOKENVAULT_CLIENT_ASSERTION": "managed_identity"},
     "AZURE_CLIENT_ID"),
    ({"TOKENVAULT_CLIENT_SECRET": None, "TOKENVAULT_CLIENT_CERTIFICATE_PATH": "/nope.pem"},
     "TOKENVAULT_CLIENT_CERTIFICATE_PATH"),
    ({"TOKENVAULT_AUTHORITY_HOST": "http://login.example"}, "TOKENVAULT_AUTHORITY_HOST"),
    ({"TOKENVAULT_ALLOWED_TENANTS": "contoso.com"}, "TOKENVAULT_ALLOWED_TENANTS"),
    ({"TOKENVAULT_REDEEM_CALLERS": f"{CLIENT}@{CLIENT},x"}, "TOKENVAULT_REDEEM_CALLERS"),
    ({"TOKENVAULT_REDEEM_CALLERS": f"{CLIENT}@contoso.com"}, "TOKENVAULT_REDEEM_CALLERS"),
    ({"TOKENVAULT_LOCAL_KEYRING": None}, "TOKENVAULT_KEY_VAULT_URL"),
    ({"TOKENVAULT_KEY_VAULT_URL": "http://vault"}, "TOKENVAULT_KEY_VAULT_URL"),
    ({"WEBSITE_SITE_NAME": "func-tokenvault-x"}, "TOKENVAULT_LOCAL_KEYRING"),
    ({"WEBSITE_INSTANCE_ID": "abc"}, "TOKENVAULT_LOCAL_KEYRING"),
    ({"TOKENVAULT_KEY_CACHE_TTL": "5m"}, "TOKENVAULT_KEY_CACHE_TTL"),
    ({"TOKENVAULT_KEY_CACHE_TTL": "-1"}, "TOKENVAULT_KEY_CACHE_TTL"),
    ({"AzureWebJobsStorage": None}, "AzureWebJobsStorage"),
    ({"TOKENVAULT_STORAGE": "hello"}, "TOKENVAULT_STORAGE"),
    ({"TOKENVAULT_TABLE": "to-kens"}, "TOKENVAULT_TABLE"),
    ({"TOKENVAULT_REFRESH_SCHEDULE": "0 * * * *"}, "TOKENVAULT_REFRESH_SCHEDULE"),
    ({"TOKENVAULT_REFRESH_AFTER": "7 days"}, "TOKENVAULT_REFRESH_AFTER"),
    ({"TOKENVAULT_REFRESH_AFTER": "PT0S"}, "TOKENVAULT_REFRESH_AFTER"),
    ({"TOKENVAULT_SWEEP_CONCURRENCY": "0"}, "TOKENVAULT_SWEEP_CONCURRENCY"),
    ({"TOKENVAULT_SWEEP_CONCURRENCY": "65"}, "TOKENVAULT_SWEEP_CONCURRENCY"),
    ({"TOKENVAULT_SWEEP_CONCURRENCY": "eight"}, "TOKENVAULT_SWEEP_CONCURRENCY"),
])
def test_a_bad_or_missing_setting_is_one_line_naming_it(changes, setting):
    with pytest.raises(SettingError) as caught:
        settings(**changes)
    message = str(caught.value)
    assert message.startswith(f"setting {setting}:") and "\n" not in message


def test_two_client_credentials_are_refused():
    with pytest.raises(SettingError, match="choose one"):
        settings(TOKENVAULT_CLIENT_ASSERTION="managed_identity")


def test_managed_identity_credential_names_the_user_assigned_identity():
    s = settings(TOKENVAULT_CLIENT_SECRET=None, TOKENVAULT_CLIENT_ASSERTION="managed_identity",
                 AZURE_CLIENT_ID="AAAAAAAA-0000-0000-0000-000000000001")
    assert s.credential_kind is CredentialKind.MANAGED_IDENTITY
    assert s.managed_identity_client_id == "aaaaaaaa-0000-0000-0000-000000000001"


def test_identity_based_storage_as_on_flex_consumption():
    s = settings(AzureWebJobsStorage=None, AzureWebJobsStorage__accountName="tvstore",
                 AzureWebJobsStorage__clientId="aaaaaaaa-0000-0000-0000-000000000001",
                 TOKENVAULT_KEY_VAULT_URL="https://tv.vault.azure.net/")
    assert s.backend.storage.connection_string is None
    assert s.backend.storage.table_endpoint == "https://tvstore.table.core.windows.net"
    assert s.backend.queue_storage.queue_endpoint == "https://tvstore.queue.core.windows.net"
    assert s.backend.storage.client_id == "aaaaaaaa-0000-0000-0000-000000000001"
    assert s.backend.key_vault_url == "https://tv.vault.azure.net" and s.backend.local_keyring is None


@pytest.mark.parametrize("environ, in_azure", [
    # Flex Consumption: the site name is set, an App Service instance id is not.
    ({"WEBSITE_SITE_NAME": "func-tokenvault-x", "CONTAINER_NAME": "x"}, True),
    ({"WEBSITE_INSTANCE_ID": "abc"}, True),  # App Service plans
    ({"WEBSITE_SITE_NAME": "  "}, False),
    ({"FUNCTIONS_CORETOOLS_ENVIRONMENT": "true"}, False),  # func start on a laptop
    ({}, False),
])
def test_azure_is_recognised_by_a_variable_every_plan_sets(environ, in_azure):
    assert running_in_azure(environ) is in_azure
    backend = settings(TOKENVAULT_LOCAL_KEYRING=None, TOKENVAULT_KEY_VAULT_URL="https://v.vault.azure.net",
                       **environ).backend
    assert backend.in_azure is in_azure


@pytest.mark.parametrize("authority_host, cloud, suffix, audience", [
    (None, PUBLIC, "core.windows.net", "api://AzureADTokenExchange"),
    ("https://login.microsoftonline.com/", PUBLIC, "core.windows.net", "api://AzureADTokenExchange"),
    ("https://login.microsoftonline.us", US_GOVERNMENT, "core.usgovcloudapi.net",
     "api://AzureADTokenExchangeUSGov"),
    ("https://login.partner.microsoftonline.cn", CHINA, "core.chinacloudapi.cn",
     "api://AzureADTokenExchangeChina"),
    ("https://login.chinacloudapi.cn/", CHINA, "core.chinacloudapi.cn",
     "api://AzureADTokenExchangeChina"),
    # a local identity provider: public-cloud values
    ("https://127.0.0.1:8443", PUBLIC, "core.windows.net", "api://AzureADTokenExchange"),
])
def test_the_cloud_follows_the_authority_host(authority_host, cloud, suffix, audience):
    s = settings(AzureWebJobsStorage=None, AzureWebJobsStorage__accountName="tvstore",
                 TOKENVAULT_AUTHORITY_HOST=authority_host)
    assert s.cloud is cloud and cloud.token_exchange_scope == f"{audience}/.default"
    assert s.backend.storage.table_endpoint == f"https://tvstore.table.{suffix}"
    assert s.backend.queue_storage.queue_endpoint == f"https://tvstore.queue.{suffix}"


def test_service_uris_win_over_the_account_name_in_any_cloud():
    s = settings(AzureWebJobsStorage=None, AzureWebJobsStorage__accountName="tvstore",
                 AzureWebJobsStorage__tableServiceUri="https://tvstore.table.core.usgovcloudapi.net/",
                 AzureWebJobsStorage__queueServiceUri="https://tvstore.queue.core.usgovcloudapi.net/")
    assert s.backend.storage.table_endpoint == "https://tvstore.table.core.usgovcloudapi.net"
    assert s.backend.queue_storage.queue_endpoint == "https://tvstore.queue.core.usgovcloudapi.net"


def test_tokenvault_storage_overrides_the_host_storage_for_records_only():
    own = "DefaultEndpointsProtocol=https;AccountName=records;AccountKey=a2V5;EndpointSuffix=x"
    s = settings(TOKENVAULT_STORAGE=own)
    assert s.backend.storage.connection_string.reveal() == own
    assert s.backend.queue_storage.connection_string.reveal() == "UseDevelopmentStorage=true"


def test_lists_are_normalised():
    other = "AAAAAAAA-0000-0000-0000-000000000002"
    s = settings(TOKENVAULT_ALLOWED_TENANTS=f" {other} , ",
                 TOKENVAULT_REDEEM_CALLERS=f" {CLIENT}@{other} ,")
    assert s.allowed_tenants == {other.lower()}
    assert s.redeem_callers == {AppCaller(CLIENT, other.lower())}


def test_a_bare_app_id_as_caller_is_refused_and_the_error_names_the_new_form():
    """Read as "from any tenant", a bare app id lets any customer tenant's admin act as that app."""
    with pytest.raises(SettingError) as caught:
        settings(TOKENVAULT_REDEEM_CALLERS=CLIENT)
    assert caught.value.name == "TOKENVAULT_REDEEM_CALLERS"
    assert "<app id>@<home tenant id>" in caught.value.message


@pytest.mark.parametrize("text, expected", [
    ("3600", timedelta(hours=1)), ("P7D", timedelta(days=7)), ("PT12H", timedelta(hours=12)),
    ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)), ("P2W", timedelta(weeks=2)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P", "PT", "P1M", "P1Y", "1h", "P1DT", "-5"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_no_secret_in_the_repr_or_in_errors():
    s = settings()
    assert "s3cr3t" not in repr(s) and "UseDevelopmentStorage" not in repr(s)
    with pytest.raises(SettingError) as caught:
        settings(TOKENVAULT_STORAGE="AccountKey-less garbage s3cr3t")
    assert "s3cr3t" not in str(caught.value)
