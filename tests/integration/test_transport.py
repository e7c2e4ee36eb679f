"""The adapters' requests against the real parts: no per-request scan of the environment for
proxy settings when none is configured, and ``REQUESTS_CA_BUNDLE`` still honoured (a local run
trusting the fakes' CA) without one."""

from __future__ import annotations

import os
import uuid

import pytest
import requests.sessions

from tests.support.stack_fixtures import SCOPES
from tokenvault import bootstrap
from tokenvault.adapters.key_admin import KeyVaultKeyAdmin
from tokenvault.adapters.table_records import TableRecords
from tokenvault.model import Caller, CallerKind
from tokenvault.sensitive import Sensitive
from tokenvault.settings import Settings


@pytest.fixture
def clean_environment(monkeypatch):
    """No proxy and no CA bundle configured, as in Azure."""
    for name in list(os.environ):
        if name.upper().endswith("_PROXY") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def scans(monkeypatch) -> list[str]:
    """Every time requests looks up proxies in the environment for a request (a wrapper
    around the library's own function: it still runs)."""
    seen: list[str] = []
    original = requests.sessions.get_environ_proxies

    def counted(url, no_proxy=None):
        seen.append(url)
        return original(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    return seen


def test_storage_requests_scan_the_environment_only_when_it_configures_something(
        azurite, table_name, table_client, clean_environment, scans):
    quiet = TableRecords.from_connection_string(azurite.connection_string, table_name, pool=48)
    quiet.get_many(str(uuid.uuid4()), [str(uuid.uuid4())])
    quiet.close()
    assert scans == []

    clean_environment.setenv("NO_PROXY", "127.0.0.1,localhost")  # something to read: read it
    told = TableRecords.from_connection_string(azurite.connection_string, table_name)
    told.get_many(str(uuid.uuid4()), [str(uuid.uuid4())])
    told.close()
    assert len(scans) == 1


def test_a_local_run_trusting_the_fakes_ca_through_requests_ca_bundle_still_works(
        azurite, entra, keyvault, keyvault_credential, ca, client_id, client_secret, table_name,
        clean_environment, scans):
    clean_environment.setenv("REQUESTS_CA_BUNDLE", str(ca.bundle))
    settings = Settings.from_environ({
        "TOKENVAULT_CLIENT_ID": client_id, "TOKENVAULT_CLIENT_SECRET": client_secret,
        "TOKENVAULT_AUTHORITY_HOST": entra.authority_host,
        "TOKENVAULT_KEY_VAULT_URL": keyvault.url, "TOKENVAULT_TABLE": table_name,
        "AzureWebJobsStorage": azurite.connection_string,
    }).with_backend(refresh_queue="q" + uuid.uuid4().hex[:20])
    # No session and no connection_verify given: only the environment says which CA to trust.
    app = bootstrap.compose(settings, credential=keyvault_credential,
                            key_vault_options={"verify_challenge_resource": False})
    admin = KeyVaultKeyAdmin(keyvault.url, keyvault_credential, verify_challenge_resource=False)
    try:
        tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
        admin.create(tenant)
        caller = Caller(CallerKind.USER, tenant, object_id=user,
                        assertion=Sensitive(entra.user_token(tenant, user)))
        stored = app.vault.store(caller, SCOPES)  # OBO at the fake, key from the Key Vault fake
    finally:
        app.close()
        admin.close()
    assert stored.key_version and entra.counts["obo"] == 1
    assert scans == []  # the bundle was read once, not looked for on every request
