"""The sync client end to end: ``TokenVaultClient`` over real HTTP against the served app
(``served_vault``: function_app behind the dev host's server, the composed app with Azurite, the
Key Vault fake and the Entra fake behind it). User calls carry the user's token as received;
app calls carry an app token azure-identity got from the Entra fake for the listed app.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError

from tests.support.stack_fixtures import SCOPES, new_id
from tokenvault_client import (
    ERRORS_BY_CODE,
    BadRequest,
    InsufficientPermissions,
    InternalError,
    InvalidToken,
    NotFound,
    OfflineAccessMissing,
    PayloadTooLarge,
    ReauthRequired,
    ScopeNotStored,
    StoredRecord,
    TenantNotOnboarded,
    TenantRevoked,
    TokenVaultClient,
    TokenVaultError,
    UpstreamUnavailable,
)

pytestmark = pytest.mark.integration

CLAIMS = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'
REDEEM = "/api/tokens/redeem"


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def tenant(stack) -> str:
    return stack.onboard()


def test_a_user_stores_redeems_describes_and_forgets(stack, vault_client, served_vault, tenant):
    user = new_id()
    token = stack.user_token(tenant, user)
    before = datetime.now(timezone.utc) - timedelta(seconds=5)

    record = vault_client.store(SCOPES, user_token=token)
    assert isinstance(record, StoredRecord)
    assert (record.tenant_id, record.user_id, record.status) == (tenant, user, "active")
    assert record.scopes == tuple(SCOPES) and record.key_version
    assert record.created_at.tzinfo is not None and record.created_at >= before

    access = vault_client.redeem(SCOPES, user_token=token)
    claims = claims_of(access.token)
    assert (claims["tid"], claims["oid"], claims["aud"]) == (tenant, user, "https://graph.microsoft.com")
    assert access.token in stack.entra.issued_secrets()
    assert 3000 < access.expires_on - datetime.now(timezone.utc).timestamp() <= 3600

    assert vault_client.describe(tenant, user, user_token=token) == record
    assert vault_client.forget(tenant, user, user_token=token) is None
    with pytest.raises(NotFound):
        vault_client.describe(tenant, user, user_token=token)
    # Every request carried the function key (else the host answers 401 with no problem).
    assert [s.status for s in served_vault.served] == [201, 200, 200, 204, 404]


def test_an_app_redeems_describes_and_forgets_for_a_user_who_is_gone(stack, vault_client, tenant):
    user = new_id()
    vault_client.store(SCOPES, user_token=stack.user_token(tenant, user))

    access = vault_client.redeem(SCOPES, tenant_id=tenant, user_id=user)
    assert (claims_of(access.token)["oid"], claims_of(access.token)["tid"]) == (user, tenant)
    assert vault_client.describe(tenant, user).user_id == user
    vault_client.forget(tenant, user)
    with pytest.raises(NotFound):
        vault_client.redeem(SCOPES, tenant_id=tenant, user_id=user)


def test_the_expiry_is_counted_on_the_callers_clock(stack, served_vault, client_id, tenant):
    user = new_id()
    token = stack.user_token(tenant, user)
    with TokenVaultClient(served_vault.url, client_id=client_id, function_key=served_vault.function_key,
                          clock=lambda: 1_000_000.0) as client:
        client.store(SCOPES, user_token=token)
        access = client.redeem(SCOPES, user_token=token)
    # expires_in (about an hour) from the pinned clock, not the server's absolute expires_on.
    assert 1_000_000 + 3000 < access.expires_on <= 1_000_000 + 3600


# --- every problem code as its class ---------------------------------------------------------

def _store(stack, client, tenant):
    return client.store(SCOPES, user_token=stack.user_token(tenant, new_id()))


def _stored_user(stack, client, tenant) -> tuple[str, str]:
    user = new_id()
    token = stack.user_token(tenant, user)
    client.store(SCOPES, user_token=token)
    return user, token


def provoke_invalid_token(stack, client, tenant):
    client.store(SCOPES, user_token="not-a-jwt")


def provoke_insufficient_permissions(stack, client, tenant):
    someone, _ = _stored_user(stack, client, tenant)
    client.describe(tenant, someone, user_token=stack.user_token(tenant, new_id()))


def provoke_bad_request(stack, client, tenant):
    client.describe("not-a-guid", new_id(), user_token=stack.user_token(tenant, new_id()))


def provoke_payload_too_large(stack, client, tenant):
    client.store([f"api://downstream/{'s' * 480}{i}" for i in range(40)],
                 user_token=stack.user_token(tenant, new_id()))


def provoke_not_found(stack, client, tenant):
    client.redeem(SCOPES, user_token=stack.user_token(tenant, new_id()))


def provoke_reauth_required(stack, client, tenant):
    stack.entra.fault("interaction_required", grant="obo", claims=CLAIMS)
    _store(stack, client, tenant)


def provoke_offline_access_missing(stack, client, tenant):
    stack.entra.fault("no_refresh_token", grant="obo")
    _store(stack, client, tenant)


def provoke_tenant_not_onboarded(stack, client, tenant):
    _store(stack, client, new_id())


def provoke_tenant_revoked(stack, client, tenant):
    user, token = _stored_user(stack, client, tenant)
    stack.keyvault.soft_delete(f"tenant-{tenant}")
    stack.expire_key_cache()
    client.redeem(SCOPES, user_token=token)


def provoke_scope_not_stored(stack, client, tenant):
    user, token = _stored_user(stack, client, tenant)
    client.redeem(["https://graph.microsoft.com/Mail.Read"], user_token=token)


def provoke_upstream_unavailable(stack, client, tenant):
    # Longer than the client waits (retry_after_max, 30 s): raised at once, not waited out.
    stack.entra.fault("throttled", grant="obo", retry_after=120)
    _store(stack, client, tenant)


def provoke_internal(stack, client, tenant):
    broken = new_id()
    stack.keyvault.put_secret(f"tenant-{broken}", "bm90IGEga2V5")  # base64, but not 32 bytes
    _store(stack, client, broken)


PROVOKE = {name[len("provoke_"):]: f for name, f in globals().items() if name.startswith("provoke_")}
EXPECTED = {
    "invalid_token": (InvalidToken, 401), "insufficient_permissions": (InsufficientPermissions, 403),
    "bad_request": (BadRequest, 400), "payload_too_large": (PayloadTooLarge, 413),
    "not_found": (NotFound, 404), "reauth_required": (ReauthRequired, 409),
    "offline_access_missing": (OfflineAccessMissing, 422),
    "tenant_not_onboarded": (TenantNotOnboarded, 403), "tenant_revoked": (TenantRevoked, 403),
    "scope_not_stored": (ScopeNotStored, 403), "upstream_unavailable": (UpstreamUnavailable, 503),
    "internal": (InternalError, 500),
}


@pytest.fixture
def documented_codes(served_vault) -> set[str]:
    """The problem codes the served OpenAPI document lists."""
    with urllib.request.urlopen(f"{served_vault.url}/api/openapi.json", timeout=10) as answer:
        document = json.load(answer)
    return set(document["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])


def test_every_code_the_server_documents_is_provoked_here(documented_codes):
    assert documented_codes <= set(PROVOKE) == set(EXPECTED)


@pytest.mark.parametrize("code", sorted(PROVOKE))
def test_every_problem_code_is_raised_as_its_class(stack, vault_client, served_vault, tenant,
                                                   documented_codes, code):
    if code not in documented_codes:
        pytest.skip(f"the server does not answer {code} yet (issue 12 adds scope_not_stored)")
    cls, status = EXPECTED[code]
    with pytest.raises(TokenVaultError) as raised:
        PROVOKE[code](stack, vault_client, tenant)
    error = raised.value
    assert type(error) is cls and ERRORS_BY_CODE[code] is cls
    assert (error.code, error.status, error.status_code) == (code, status, status)
    assert error.correlation_id and error.correlation_id in str(error)
    assert error.response is not None
    if code == "bad_request":
        assert error.field == "tenant_id"
    if code == "reauth_required":
        assert error.claims == CLAIMS
    if code == "upstream_unavailable":
        assert error.retry_after == 120
        assert served_vault.count("POST", "/api/tokens") == 1, "a 2-minute Retry-After was waited for"
    if code == "internal":
        assert served_vault.count("POST", "/api/tokens") == 1, "a 500 was retried"
    if code == "not_found":
        assert isinstance(error, ResourceNotFoundError)
    # The answers that mean "no token for this user" stop another SDK's retries.
    assert isinstance(error, ClientAuthenticationError) == (
        code not in ("bad_request", "payload_too_large", "upstream_unavailable", "internal"))


def test_an_answer_that_is_not_a_problem_is_a_token_vault_error_without_a_code(
        stack, served_vault, client_id, tenant):
    # Without the function key the Functions host answers 401 itself, with an empty body.
    with TokenVaultClient(served_vault.url, client_id=client_id) as client:
        with pytest.raises(TokenVaultError) as raised:
            client.store(SCOPES, user_token=stack.user_token(tenant, new_id()))
    assert type(raised.value) is TokenVaultError
    assert (raised.value.code, raised.value.status) == (None, 401)


# --- retries ---------------------------------------------------------------------------------

def test_a_503_with_retry_after_is_retried_after_that_delay(stack, vault_client, served_vault, tenant):
    user, token = _stored_user(stack, vault_client, tenant)
    # The identity provider throttles the next refresh: the vault answers 503, Retry-After: 1.
    stack.entra.fault("throttled", grant="refresh", retry_after=1)

    access = vault_client.redeem(SCOPES, user_token=token)

    assert claims_of(access.token)["oid"] == user
    first, second = [s for s in served_vault.served if s.path == REDEEM]
    assert (first.status, second.status) == (503, 200)
    assert second.at - first.at >= 1.0, "the retry did not wait for Retry-After"
    assert stack.entra.counts["refresh"] == 2


def test_retries_stop_after_retry_total(stack, vault_client, served_vault, client_id, tenant):
    user, token = _stored_user(stack, vault_client, tenant)
    stack.entra.fault("throttled", grant="refresh", retry_after=1, times=None)
    with TokenVaultClient(served_vault.url, client_id=client_id, retry_total=1,
                          function_key=served_vault.function_key) as client:
        with pytest.raises(UpstreamUnavailable) as raised:
            client.redeem(SCOPES, user_token=token)
    assert raised.value.retry_after == 1
    assert [s.status for s in served_vault.served if s.path == REDEEM] == [503, 503]


# --- what goes over the wire, and what is logged ---------------------------------------------

def test_app_calls_need_a_credential(stack, served_vault, client_id, tenant):
    with TokenVaultClient(served_vault.url, client_id=client_id,
                          function_key=served_vault.function_key) as client:
        with pytest.raises(ValueError, match="credential"):
            client.redeem(SCOPES, tenant_id=tenant, user_id=new_id())
    assert served_vault.served == []


def test_a_bearer_token_is_never_sent_over_plain_http_to_another_host(client_id):
    with TokenVaultClient("http://tokenvault.example", client_id=client_id) as client:
        with pytest.raises(Exception, match="only over https"):
            client.redeem(SCOPES, user_token="eyJ.eyJ.sig")


def test_the_user_agent_names_the_client(stack, vault_client, served_vault, tenant):
    _stored_user(stack, vault_client, tenant)
    (agent,) = served_vault.user_agents
    assert agent.startswith("azsdk-python-tokenvault-client/0.1.0 Python/")


def test_the_http_log_redacts_tokens_and_the_function_key(stack, served_vault, client_id,
                                                          app_credential, tenant, caplog):
    caplog.set_level(logging.DEBUG)
    user = new_id()
    token = stack.user_token(tenant, user)
    with TokenVaultClient(served_vault.url, client_id=client_id, credential=app_credential,
                          function_key=served_vault.function_key, logging_enable=True) as client:
        client.store(SCOPES, user_token=token)
        access = client.redeem(SCOPES, user_token=token)
        client.redeem(SCOPES, tenant_id=tenant, user_id=user)

    records = [r for r in caplog.records if r.name.startswith("tokenvault_client")]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert len(records) >= 6  # a request and a response line per call
    assert "'Authorization': 'REDACTED'" in text and "'x-functions-key': 'REDACTED'" in text
    assert "X-Correlation-Id" in text
    for secret in (token, access.token, served_vault.function_key, *stack.entra.issued_secrets()):
        assert secret not in text, "a secret is in the client's log"
