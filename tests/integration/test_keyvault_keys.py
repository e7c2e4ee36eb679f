"""KeyVaultKeys against the unmodified SecretClient and the HTTPS fake of Key Vault.

The fake counts the requests it serves, so these tests state how many Key Vault calls a
scenario costs; the cache's clock is injected and moved by hand, never slept on.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections import Counter

import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)

from tests.support.keyvault import ManualMonotonic
from tokenvault.adapters.keyvault_errors import OFFICER_ROLE
from tokenvault.adapters.keyvault_errors import translate as _translate
from tokenvault.adapters.keyvault_keys import KeyVaultKeys
from tokenvault.dev.azurite import free_port
from tokenvault.errors import (
    InternalError,
    KeyDeleted,
    TenantKeyInvalid,
    TenantNotOnboarded,
    TenantRevoked,
    UpstreamUnavailable,
)

TTL = 300


@pytest.fixture
def clock() -> ManualMonotonic:
    return ManualMonotonic()


@pytest.fixture
def keys(keyvault, keyvault_credential, keyvault_options, clock) -> KeyVaultKeys:
    store = KeyVaultKeys(keyvault.url, keyvault_credential, ttl=TTL, monotonic=clock, **keyvault_options)
    yield store
    store.close()


def onboard(keyvault, tenant: str) -> tuple[str, bytes]:
    material = os.urandom(32)
    return keyvault.put_secret(f"tenant-{tenant}", base64.b64encode(material).decode()), material


def test_lookups_within_the_ttl_cost_one_get_and_a_deleted_secret_is_noticed_after_it(
        keys, keyvault, secret_client, clock, tenant):
    version, material = onboard(keyvault, tenant)

    for _ in range(500):
        assert keys.latest(tenant).version == version
        assert keys.get(tenant, version).material.reveal() == material
    assert keyvault.requests == Counter({"get": 1})

    secret_client.begin_delete_secret(f"tenant-{tenant}").wait()  # ops revoke the tenant
    clock.advance(TTL - 1)
    assert keys.get(tenant, version).version == version  # still inside the bound

    clock.advance(1)
    with pytest.raises(TenantRevoked):
        keys.get(tenant, version)
    with pytest.raises(TenantNotOnboarded):
        keys.latest(tenant)
    with pytest.raises(TenantRevoked):  # the absence is cached too
        keys.get(tenant, version)
    assert keyvault.requests["get"] == 2 and keyvault.requests["get_version"] == 1


def test_a_recovered_secret_is_noticed_after_the_ttl(keys, keyvault, secret_client, clock, tenant):
    version, _ = onboard(keyvault, tenant)
    keyvault.soft_delete(f"tenant-{tenant}")
    with pytest.raises(TenantRevoked):
        keys.get(tenant, version)

    secret_client.begin_recover_deleted_secret(f"tenant-{tenant}").wait()
    clock.advance(TTL)
    assert keys.get(tenant, version).version == version


def test_twenty_threads_missing_the_same_key_make_one_get(keys, keyvault, tenant):
    version, material = onboard(keyvault, tenant)
    keyvault.latency = 0.2
    start = threading.Barrier(20)
    results, errors = [], []

    def lookup() -> None:
        start.wait()
        try:
            results.append(keys.get(tenant, version).material.reveal())
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=lookup) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert errors == [] and results == [material] * 20
    assert keyvault.requests == Counter({"get_version": 1})


def test_a_rotation_is_noticed_after_the_ttl_and_versions_order_by_creation(
        keys, keyvault, secret_client, clock, tenant):
    first, _ = onboard(keyvault, tenant)
    assert keys.latest(tenant).version == first

    second = secret_client.set_secret(f"tenant-{tenant}",
                                      base64.b64encode(os.urandom(32)).decode()).properties.version
    assert keys.latest(tenant).version == first  # cached until the TTL runs out
    clock.advance(TTL)
    newest = keys.latest(tenant)

    assert newest.version == second
    old = keys.get(tenant, first)
    assert newest.newer_than(old) and not old.newer_than(newest)
    assert newest.created.tzinfo is not None


@pytest.mark.parametrize("value", ["not base64 at all!", base64.b64encode(b"short").decode(),
                                   base64.b64encode(os.urandom(33)).decode()],
                         ids=["not-base64", "too-short", "too-long"])
def test_a_malformed_secret_is_tenant_key_invalid_and_logged_without_its_value(
        keys, keyvault, tenant, caplog, value):
    version = keyvault.put_secret(f"tenant-{tenant}", value)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TenantKeyInvalid) as raised:
        keys.latest(tenant)
    with pytest.raises(TenantKeyInvalid):
        keys.get(tenant, version)

    assert "tenant_key_invalid" in caplog.text and tenant in caplog.text
    assert value not in caplog.text and value not in str(raised.value)
    assert raised.value.public is False


def test_throttling_is_upstream_unavailable_with_key_vaults_retry_after(keys, keyvault, tenant):
    version, _ = onboard(keyvault, tenant)
    keyvault.fail_next(429, retry_after=7)

    with pytest.raises(UpstreamUnavailable) as raised:
        keys.get(tenant, version)

    assert raised.value.retry_after == 7 and raised.value.upstream == "key_vault"
    assert keyvault.requests["get_version"] == 1  # a long Retry-After is handed back, not slept on
    assert keys.get(tenant, version).version == version  # and the failure is not cached


def test_a_server_error_is_retried_once_then_upstream_unavailable(keys, keyvault, tenant):
    version, _ = onboard(keyvault, tenant)
    keyvault.fail_next(500)
    assert keys.latest(tenant).version == version  # a blip is absorbed by the SDK's retry

    keyvault.reset()
    onboard(keyvault, tenant)
    keyvault.fail_next(500, times=3)
    with pytest.raises(UpstreamUnavailable) as raised:
        keys.get(tenant, "0" * 32)
    assert raised.value.upstream == "key_vault"
    assert keyvault.requests["get_version"] == 3


def test_forbidden_is_an_internal_error_whose_log_names_the_missing_role(keys, keyvault, tenant, caplog):
    onboard(keyvault, tenant)
    keyvault.fail_next(403)

    with pytest.raises(InternalError) as raised:
        keys.latest(tenant)

    assert str(raised.value) == InternalError.default_message  # the detail is for the log only
    assert "Key Vault Secrets User" in caplog.text


def test_an_unreachable_vault_is_upstream_unavailable(keyvault_credential, keyvault_options, tenant):
    keys = KeyVaultKeys(f"https://127.0.0.1:{free_port()}", keyvault_credential, retry_total=0,
                        **keyvault_options)
    with pytest.raises(UpstreamUnavailable) as raised:
        keys.latest(tenant)
    assert raised.value.upstream == "key_vault"


def test_a_version_that_cannot_exist_is_revoked_without_asking(keys, keyvault, tenant):
    with pytest.raises(TenantRevoked):
        keys.get(tenant, "../../secrets/other")
    assert keyvault.requests == Counter()


def test_nothing_here_shows_the_key(keys, keyvault, clock, tenant, caplog):
    caplog.set_level(logging.DEBUG)
    version, material = onboard(keyvault, tenant)
    key = keys.latest(tenant)
    clock.advance(TTL)
    keyvault.fail_next(429, retry_after=9)
    with pytest.raises(UpstreamUnavailable) as raised:
        keys.get(tenant, version)

    shown = " ".join([repr(key), str(key), repr(keys), repr(raised.value), str(raised.value),
                      repr(key.material), f"{key.material}", caplog.text])
    assert version in shown  # the check looks where the key would show
    for form in (material.hex(), base64.b64encode(material).decode(), repr(material)[2:-1]):
        assert form not in shown


# -- translation: every mapping of an Azure SDK error, from real responses where there are any --

def _response_error(status: int, **fault):
    def make(keyvault, client):
        keyvault.put_secret("tenant-x", "=")
        keyvault.fail_next(status, **fault)
        return _raised(lambda: client.get_secret("tenant-x"))
    return make


def _raised(call) -> AzureError:
    try:
        call()
    except AzureError as error:
        return error
    raise AssertionError("no error")


def _missing(keyvault, client):
    return _raised(lambda: client.get_secret("tenant-nobody"))


def _disabled(keyvault, client):
    keyvault.put_secret("tenant-x", "=", enabled=False)
    return _raised(lambda: client.get_secret("tenant-x"))


def _soft_deleted_set(keyvault, client):
    keyvault.put_secret("tenant-x", "=")
    keyvault.soft_delete("tenant-x")
    return _raised(lambda: client.set_secret("tenant-x", "="))


def _given(error: AzureError):
    return lambda keyvault, client: error


def translate_admin(exc, *, missing):
    return _translate(exc, missing=missing, role=OFFICER_ROLE)


TABLE = [
    # (case, how the error arises, translator, missing, expected type, expected retry_after)
    ("404 on latest", _missing, _translate, TenantNotOnboarded, TenantNotOnboarded, None),
    ("404 on a version", _missing, _translate, TenantRevoked, TenantRevoked, None),
    ("403 disabled secret", _disabled, _translate, TenantRevoked, TenantRevoked, None),
    ("429 with Retry-After", _response_error(429, retry_after=7), _translate, TenantRevoked,
     UpstreamUnavailable, 7),
    ("429 without Retry-After", _response_error(429), _translate, TenantRevoked, UpstreamUnavailable, 5),
    ("500", _response_error(500), _translate, TenantRevoked, UpstreamUnavailable, 5),
    ("503 with Retry-After", _response_error(503, retry_after=12), _translate, TenantRevoked,
     UpstreamUnavailable, 12),
    ("403 forbidden", _response_error(403), _translate, TenantRevoked, InternalError, None),
    ("400 bad parameter", _response_error(400, code="BadParameter"), _translate, TenantRevoked,
     InternalError, None),
    ("credential failed", _given(ClientAuthenticationError("no token")), _translate, TenantRevoked,
     InternalError, None),
    ("connection refused", _given(ServiceRequestError("refused")), _translate, TenantRevoked,
     UpstreamUnavailable, 5),
    ("connection reset", _given(ServiceResponseError("reset")), _translate, TenantRevoked,
     UpstreamUnavailable, 5),
    ("anything else", _given(AzureError("odd")), _translate, TenantRevoked, InternalError, None),
    ("admin: set on a soft-deleted name", _soft_deleted_set, translate_admin, TenantNotOnboarded,
     KeyDeleted, None),
    ("admin: 404", _missing, translate_admin, TenantNotOnboarded, TenantNotOnboarded, None),
    ("admin: 403", _response_error(403), translate_admin, TenantNotOnboarded, InternalError, None),
    ("admin: 429", _response_error(429, retry_after=3), translate_admin, TenantNotOnboarded,
     UpstreamUnavailable, 3),
]


@pytest.mark.parametrize("case, make, translate, missing, expected, retry_after", TABLE,
                         ids=[row[0] for row in TABLE])
def test_translation(keyvault, secret_client, caplog, case, make, translate, missing, expected,
                     retry_after):
    error = translate(make(keyvault, secret_client), missing=missing)

    assert type(error) is expected
    if retry_after is not None:
        assert error.retry_after == retry_after and error.upstream == "key_vault"
    if expected is InternalError and "403" in case:
        role = "Key Vault Secrets Officer" if case.startswith("admin") else "Key Vault Secrets User"
        assert role in caplog.text
