"""The HTTP contract, route by route and outcome by outcome (docs/design.md "HTTP API" and its code
list), through function_app's declared functions as the worker calls them, with every real
part behind them: msal and PyJWT against the Entra fake, SecretClient against the Key Vault
fake, azure-data-tables against Azurite.

Every answer is checked the same way (``check``): status and ``code``; the media type
(``application/problem+json`` for errors); ``Cache-Control: no-store``; an
``X-Correlation-Id`` that equals the problem's ``correlation_id`` and is on a log record of
the request; ``WWW-Authenticate: Bearer`` on 401; ``Retry-After`` on 503; and no secret the
Entra fake ever issued in the body, except the redeemed access token itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from tests.support.stack_fixtures import CALLER_APP, SCOPES, STRANGER_APP, new_id
from tests.support.storage_fixtures import closed_port_connection_string
from tokenvault import bootstrap
from tokenvault.adapters.caller_tokens import CallerTokenValidator
from tokenvault.adapters.entra import EntraIdentityProvider
from tokenvault.adapters.table_records import TableRecords
from tokenvault.errors import InternalError
from tokenvault.http import MAX_BODY, MAX_SCOPES, Api
from tokenvault.model import RecordKey
from tokenvault.vault import Vault

REDEEM, ADMIN = ("TokenVault.Redeem",), ("TokenVault.Admin",)
CLAIMS = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'


# --- the one check every answer goes through ---------------------------------------------

def check(stack, caplog, response, status: int, code: str | None = None, *,
          field: str | None = None, own_token: str | None = None) -> dict:
    """Assert the contract of one answer; return its body (``{}`` when it has none)."""
    raw = response.get_body() or b""
    body = json.loads(raw) if raw else {}
    # Failure messages name status and code only: a body may hold a token.
    seen = (response.status_code, body.get("code"))
    assert seen == (status, code), f"expected {(status, code)}, got {seen}"
    assert response.headers.get("Cache-Control") == "no-store"
    correlation_id = response.headers.get("X-Correlation-Id")
    assert correlation_id, "no X-Correlation-Id"
    assert any(getattr(r, "correlation_id", None) == correlation_id for r in caplog.records), \
        "the correlation id is on no log record"
    if code is None:
        assert response.mimetype == "application/json" or (status == 204 and not raw)
    else:
        assert response.mimetype == "application/problem+json"
        assert body["status"] == status and body["type"].endswith(":" + code)
        assert body["title"] and body["detail"]
        assert body["correlation_id"] == correlation_id
        if field is not None:
            assert body.get("field") == field
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    if status == 503:
        assert int(response.headers["Retry-After"]) >= 1
    text = raw.decode()
    leaked = [s for s in stack.entra.issued_secrets() if s != own_token and s in text]
    assert not leaked, f"{len(leaked)} issued secret(s) in the body"
    return body


def record_params(tenant: str, user: str) -> dict:
    return {"tenant_id": tenant, "user_id": user}


@pytest.fixture
def alice(stack, onboarded_tenant) -> str:
    """A user of ``onboarded_tenant`` with a stored record."""
    user = new_id()
    assert stack.store(onboarded_tenant, user).status_code == 201
    return user


@pytest.fixture(autouse=True)
def _capture(caplog):
    caplog.set_level(logging.INFO, logger="tokenvault")


def store(stack, token, body=None, **options):
    return stack.call("store_token", body={"scopes": SCOPES} if body is None else body,
                      token=token, **options)


def redeem(stack, token, body=None, **options):
    return stack.call("redeem_token", body={"scopes": SCOPES} if body is None else body,
                      token=token, **options)


def describe(stack, token, tenant, user):
    return stack.call("describe_token", method="GET", token=token,
                      route_params=record_params(tenant, user))


def forget(stack, token, tenant, user):
    return stack.call("forget_token", method="DELETE", token=token,
                      route_params=record_params(tenant, user))


# --- invalid_token on every data route, and nothing is touched behind it -----------------

GARBAGE = {
    "missing": None,
    "empty bearer": "",
    "not a JWT": "definitely-not-a-jwt",
    "three garbage segments": "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl",
}


def _bad_token(stack, tenant, user, kind):
    if kind in GARBAGE:
        return GARBAGE[kind]
    if kind == "expired":
        return stack.user_token(tenant, user, lifetime=-3600)
    if kind == "other audience":
        return stack.user_token(tenant, user, aud="api://someone-else")
    raise AssertionError(kind)


@pytest.mark.parametrize("route", ["store_token", "redeem_token", "describe_token", "forget_token"])
@pytest.mark.parametrize("kind", [*GARBAGE, "expired", "other audience"])
def test_a_bad_bearer_token_is_invalid_token_and_nothing_is_decrypted_or_called(
        stack, caplog, onboarded_tenant, alice, route, kind):
    token = _bad_token(stack, onboarded_tenant, alice, kind)
    before_entra, before_vault = dict(stack.entra.counts), stack.keyvault.requests
    before_record = stack.records.get(RecordKey(onboarded_tenant, alice))

    method = {"describe_token": "GET", "forget_token": "DELETE"}.get(route, "POST")
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = stack.call(route, method=method, headers=headers,
                          body={"scopes": SCOPES, **record_params(onboarded_tenant, alice)}
                          if route == "redeem_token" else {"scopes": SCOPES},
                          route_params=record_params(onboarded_tenant, alice))

    check(stack, caplog, response, 401, "invalid_token")
    for grant in ("obo", "refresh", "client_credentials"):
        assert stack.entra.counts[grant] == before_entra.get(grant, 0)
    assert stack.keyvault.requests == before_vault
    # The record is exactly as it was: not refreshed, rewritten or deleted.
    assert stack.records.get(RecordKey(onboarded_tenant, alice)).etag == before_record.etag


# --- store ---------------------------------------------------------------------------------

def test_store_answers_201_with_the_metadata_and_its_location(stack, caplog, onboarded_tenant):
    user = new_id()
    response = store(stack, stack.user_token(onboarded_tenant, user))
    body = check(stack, caplog, response, 201)
    assert set(body) == {"tenant_id", "user_id", "client_id", "status", "key_version", "scopes",
                         "created_at", "refreshed_at"}
    assert (body["tenant_id"], body["user_id"], body["status"]) == (onboarded_tenant, user, "active")
    assert response.headers["Location"] == f"/api/tokens/{onboarded_tenant}/{user}"


def _scopes(n):
    return [f"api://downstream/scope{i}" for i in range(n)]


BAD_BODIES = [
    # (label, raw body or JSON value, Content-Type, field)
    ("text/plain", b'{"scopes": ["User.Read"]}', "text/plain", "Content-Type"),
    ("no content type", b'{"scopes": ["User.Read"]}', "", "Content-Type"),
    ("invalid JSON", b'{"scopes": [', "application/json", "body"),
    ("not UTF-8", b'\xff\xfe{"scopes"}', "application/json", "body"),
    ("a JSON list", [SCOPES], "application/json", "body"),
    ("empty body", b"", "application/json", "body"),
    ("unknown field", {"scopes": SCOPES, "extra": 1}, "application/json", "extra"),
    ("scopes missing", {}, "application/json", "scopes"),
    ("scopes a string", {"scopes": "User.Read"}, "application/json", "scopes"),
    ("scopes of numbers", {"scopes": [1, 2]}, "application/json", "scopes"),
    ("scopes empty", {"scopes": []}, "application/json", "scopes"),
    ("too many scopes", {"scopes": _scopes(MAX_SCOPES + 1)}, "application/json", "scopes"),
    ("a scope with a space", {"scopes": ["User Read"]}, "application/json", "scopes"),
    ("an over-long scope", {"scopes": ["s" * 513]}, "application/json", "scopes"),
    ("reserved offline_access", {"scopes": ["offline_access"]}, "application/json", "scopes"),
    ("reserved openid", {"scopes": ["User.Read", "OpenID"]}, "application/json", "scopes"),
]


@pytest.mark.parametrize("route", ["store_token", "redeem_token"])
@pytest.mark.parametrize("label, body, content_type, field", BAD_BODIES,
                         ids=[b[0] for b in BAD_BODIES])
def test_a_malformed_body_is_bad_request_naming_the_field(stack, caplog, onboarded_tenant, route, label,
                                                          body, content_type, field):
    before = dict(stack.entra.counts)
    response = stack.call(route, body=body, token=stack.user_token(onboarded_tenant, new_id()),
                          headers={"Content-Type": content_type})
    check(stack, caplog, response, 400, "bad_request", field=field)
    assert stack.entra.counts["obo"] == before.get("obo", 0)
    assert stack.entra.counts["refresh"] == before.get("refresh", 0)


@pytest.mark.parametrize("route", ["store_token", "redeem_token"])
def test_a_body_over_16_kib_is_payload_too_large(stack, caplog, onboarded_tenant, route):
    body = json.dumps({"scopes": SCOPES, "pad": "x" * MAX_BODY}).encode()
    response = stack.call(route, body=body, token=stack.user_token(onboarded_tenant, new_id()))
    check(stack, caplog, response, 413, "payload_too_large")


def test_store_with_an_app_token_is_insufficient_permissions(stack, caplog, onboarded_tenant):
    response = store(stack, stack.app_token(roles=REDEEM + ADMIN))
    check(stack, caplog, response, 403, "insufficient_permissions")
    assert stack.entra.counts["obo"] == 0


def test_store_without_a_refresh_token_is_offline_access_missing(stack, caplog, onboarded_tenant):
    stack.entra.fault("no_refresh_token", grant="obo")
    response = store(stack, stack.user_token(onboarded_tenant, new_id()))
    check(stack, caplog, response, 422, "offline_access_missing")
    assert not stack.records.tenant_has_records(onboarded_tenant)


def test_store_for_a_tenant_without_a_key_is_tenant_not_onboarded(stack, caplog):
    response = store(stack, stack.user_token(new_id(), new_id()))
    check(stack, caplog, response, 403, "tenant_not_onboarded")
    assert stack.entra.counts["obo"] == 0


def _revoke(stack, tenant):
    stack.keyvault.soft_delete(f"tenant-{tenant}")
    stack.expire_key_cache()


def test_store_for_a_revoked_tenant_is_tenant_revoked(stack, caplog, onboarded_tenant, alice):
    _revoke(stack, onboarded_tenant)
    calls = stack.entra.counts["obo"]
    response = store(stack, stack.user_token(onboarded_tenant, new_id()))
    check(stack, caplog, response, 403, "tenant_revoked")
    assert stack.entra.counts["obo"] == calls


@pytest.mark.parametrize("kind, claims", [("interaction_required", CLAIMS),
                                          ("consent_required", None)])
def test_store_when_the_obo_needs_the_user_is_reauth_required(stack, caplog, onboarded_tenant, kind,
                                                              claims):
    user = new_id()
    stack.entra.fault(kind, grant="obo", user=(onboarded_tenant, user), claims=claims)
    response = store(stack, stack.user_token(onboarded_tenant, user))
    body = check(stack, caplog, response, 409, "reauth_required")
    if claims:
        assert body["claims"] == claims
        assert 'error="insufficient_claims"' in response.headers["WWW-Authenticate"]
    else:
        assert "claims" not in body
    assert not stack.records.tenant_has_records(onboarded_tenant)


def test_store_when_the_identity_provider_throttles_is_upstream_unavailable(stack, caplog, onboarded_tenant):
    stack.entra.fault("throttled", grant="obo", retry_after=9)
    response = store(stack, stack.user_token(onboarded_tenant, new_id()))
    check(stack, caplog, response, 503, "upstream_unavailable")
    assert response.headers["Retry-After"] == "9"


def test_store_when_key_vault_throttles_passes_its_retry_after_on(stack, caplog, onboarded_tenant):
    stack.keyvault.fail_next(429, retry_after=30)
    response = store(stack, stack.user_token(onboarded_tenant, new_id()))
    check(stack, caplog, response, 503, "upstream_unavailable")
    assert response.headers["Retry-After"] == "30"
    assert stack.entra.counts["obo"] == 0


def test_store_when_key_vault_fails_is_upstream_unavailable(stack, caplog, onboarded_tenant):
    stack.keyvault.fail_next(500, times=5)  # more than the client's bounded retries
    response = store(stack, stack.user_token(onboarded_tenant, new_id()))
    check(stack, caplog, response, 503, "upstream_unavailable")


def test_a_malformed_tenant_key_is_internal_without_detail(stack, caplog):
    tenant = new_id()
    stack.keyvault.put_secret(f"tenant-{tenant}", "bm90IGEga2V5")  # base64, but not 32 bytes
    response = store(stack, stack.user_token(tenant, new_id()))
    body = check(stack, caplog, response, 500, "internal")
    assert body["detail"] == InternalError.default_message
    assert set(body) == {"type", "title", "status", "code", "detail", "correlation_id"}
    assert any("tenant_key_invalid" in r.getMessage() or getattr(r, "code", None) ==
               "tenant_key_invalid" for r in caplog.records)


@pytest.fixture
def storage_down(stack, entra_session):
    """The app as composed, but its records on a port nothing listens on."""
    records = TableRecords.from_connection_string(closed_port_connection_string(stack.azurite),
                                                  stack.settings.backend.table)
    vault = Vault(client_id=stack.settings.client_id, keys=stack.app.keys, records=records,
                  identity=EntraIdentityProvider.from_settings(stack.settings, session=entra_session),
                  clock=stack.clock)
    api = Api(vault=vault, redeem_callers=stack.settings.redeem_callers, clock=stack.clock,
              authenticate=CallerTokenValidator.from_settings(stack.settings, session=entra_session))
    bootstrap.install(dataclasses.replace(stack.app, vault=vault, api=api, records=records))
    yield
    records.close()


@pytest.mark.parametrize("route", ["store_token", "redeem_token"])
def test_storage_down_is_upstream_unavailable(stack, caplog, onboarded_tenant, storage_down, route):
    response = stack.call(route, body={"scopes": SCOPES}, token=stack.user_token(onboarded_tenant, new_id()))
    check(stack, caplog, response, 503, "upstream_unavailable")


# --- redeem --------------------------------------------------------------------------------

def test_a_user_redeems_their_own_record(stack, caplog, onboarded_tenant, alice):
    response = redeem(stack, stack.user_token(onboarded_tenant, alice))
    grant = json.loads(response.get_body())
    body = check(stack, caplog, response, 200, own_token=grant.get("access_token"))
    assert set(body) == {"access_token", "token_type", "expires_in", "expires_on", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0


@pytest.mark.parametrize("roles", [REDEEM, REDEEM + ADMIN])
def test_a_listed_app_with_the_redeem_role_redeems_for_a_user(stack, caplog, onboarded_tenant, alice, roles):
    response = redeem(stack, stack.app_token(roles=roles),
                      {"scopes": SCOPES, **record_params(onboarded_tenant, alice)})
    grant = json.loads(response.get_body())
    check(stack, caplog, response, 200, own_token=grant.get("access_token"))


@pytest.mark.parametrize("app_id, roles", [(STRANGER_APP, REDEEM), (CALLER_APP, ADMIN),
                                           (CALLER_APP, ())])
def test_an_app_not_listed_or_without_the_role_may_not_redeem(stack, caplog, onboarded_tenant, alice,
                                                              app_id, roles):
    response = redeem(stack, stack.app_token(roles=roles, app_id=app_id),
                      {"scopes": SCOPES, **record_params(onboarded_tenant, alice)})
    check(stack, caplog, response, 403, "insufficient_permissions")
    assert stack.entra.counts["refresh"] == 0


@pytest.mark.parametrize("body, field", [
    ({"scopes": SCOPES, "user_id": "00000000-0000-4000-8000-000000000001"}, "tenant_id"),
    ({"scopes": SCOPES, "tenant_id": "00000000-0000-4000-8000-000000000001"}, "user_id"),
    ({"scopes": SCOPES, "tenant_id": "not-a-guid", "user_id": "00000000-0000-4000-8000-000000000001"},
     "tenant_id"),
    ({"scopes": SCOPES, "tenant_id": "00000000-0000-4000-8000-000000000001",
      "user_id": "00000000-0000-4000-8000-00000000000A"}, "user_id"),
    ({"scopes": SCOPES, "tenant_id": 7, "user_id": "00000000-0000-4000-8000-000000000001"},
     "tenant_id"),
])
def test_an_app_must_name_the_user_with_guids(stack, caplog, body, field):
    response = redeem(stack, stack.app_token(), body)
    check(stack, caplog, response, 400, "bad_request", field=field)


def test_a_user_naming_another_user_may_not_redeem(stack, caplog, onboarded_tenant, alice):
    response = redeem(stack, stack.user_token(onboarded_tenant, new_id()),
                      {"scopes": SCOPES, **record_params(onboarded_tenant, alice)})
    check(stack, caplog, response, 403, "insufficient_permissions")
    assert stack.entra.counts["refresh"] == 0


def test_a_user_naming_themself_redeems(stack, caplog, onboarded_tenant, alice):
    response = redeem(stack, stack.user_token(onboarded_tenant, alice),
                      {"scopes": SCOPES, **record_params(onboarded_tenant, alice)})
    check(stack, caplog, response, 200, own_token=json.loads(response.get_body())["access_token"])


@pytest.mark.parametrize("as_app", [False, True])
def test_redeem_with_nothing_stored_is_not_found(stack, caplog, onboarded_tenant, as_app):
    user = new_id()
    if as_app:
        response = redeem(stack, stack.app_token(),
                          {"scopes": SCOPES, **record_params(onboarded_tenant, user)})
    else:
        response = redeem(stack, stack.user_token(onboarded_tenant, user))
    check(stack, caplog, response, 404, "not_found")


def test_redeem_of_a_dead_refresh_token_is_reauth_required(stack, caplog, onboarded_tenant, alice):
    stack.entra.kill_user(onboarded_tenant, alice, code=70008)
    response = redeem(stack, stack.user_token(onboarded_tenant, alice))
    body = check(stack, caplog, response, 409, "reauth_required")
    assert "claims" not in body
    # Asked again, the record itself now says so, without the identity provider.
    calls = stack.entra.counts["refresh"]
    check(stack, caplog, redeem(stack, stack.user_token(onboarded_tenant, alice)), 409, "reauth_required")
    assert stack.entra.counts["refresh"] == calls


def test_redeem_with_a_claims_challenge_passes_the_claims_on(stack, caplog, onboarded_tenant, alice):
    stack.entra.fault("interaction_required", grant="refresh", user=(onboarded_tenant, alice), claims=CLAIMS)
    response = redeem(stack, stack.user_token(onboarded_tenant, alice))
    body = check(stack, caplog, response, 409, "reauth_required")
    assert body["claims"] == CLAIMS
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="insufficient_claims"' in challenge


def test_redeem_for_a_revoked_tenant_is_tenant_revoked(stack, caplog, onboarded_tenant, alice):
    _revoke(stack, onboarded_tenant)
    response = redeem(stack, stack.user_token(onboarded_tenant, alice))
    check(stack, caplog, response, 403, "tenant_revoked")
    assert stack.entra.counts["refresh"] == 0


def test_redeem_when_the_identity_provider_throttles_says_when_to_retry(stack, caplog, onboarded_tenant,
                                                                        alice):
    stack.entra.fault("throttled", grant="refresh", retry_after=11)
    response = redeem(stack, stack.user_token(onboarded_tenant, alice))
    check(stack, caplog, response, 503, "upstream_unavailable")
    assert response.headers["Retry-After"] == "11"


def test_redeem_when_key_vault_throttles_says_when_to_retry(stack, caplog, onboarded_tenant, alice):
    stack.expire_key_cache()
    stack.keyvault.fail_next(429, retry_after=20)
    response = redeem(stack, stack.user_token(onboarded_tenant, alice))
    check(stack, caplog, response, 503, "upstream_unavailable")
    assert response.headers["Retry-After"] == "20"


# --- describe ------------------------------------------------------------------------------

def test_a_user_describes_their_own_record(stack, caplog, onboarded_tenant, alice):
    token = stack.user_token(onboarded_tenant, alice)
    body = check(stack, caplog, describe(stack, token, onboarded_tenant, alice), 200)
    assert (body["tenant_id"], body["user_id"], body["status"]) == (onboarded_tenant, alice, "active")
    assert "ciphertext" not in json.dumps(body).lower()


@pytest.mark.parametrize("roles", [REDEEM, ADMIN])
def test_a_listed_app_with_either_role_describes_a_record(stack, caplog, onboarded_tenant, alice, roles):
    response = describe(stack, stack.app_token(roles=roles), onboarded_tenant, alice)
    assert check(stack, caplog, response, 200)["user_id"] == alice


@pytest.mark.parametrize("who", ["another user", "unlisted app", "app without a role"])
def test_others_may_not_describe_a_record(stack, caplog, onboarded_tenant, alice, who):
    token = {"another user": lambda: stack.user_token(onboarded_tenant, new_id()),
             "unlisted app": lambda: stack.app_token(roles=ADMIN, app_id=STRANGER_APP),
             "app without a role": lambda: stack.app_token(roles=())}[who]()
    check(stack, caplog, describe(stack, token, onboarded_tenant, alice), 403, "insufficient_permissions")


def test_describe_with_nothing_stored_is_not_found(stack, caplog, onboarded_tenant):
    user = new_id()
    check(stack, caplog, describe(stack, stack.user_token(onboarded_tenant, user), onboarded_tenant, user),
          404, "not_found")


@pytest.mark.parametrize("route", ["describe_token", "forget_token"])
@pytest.mark.parametrize("tenant_id, user_id, field", [
    ("not-a-guid", "00000000-0000-4000-8000-000000000001", "tenant_id"),
    ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-00000000000A", "user_id"),
    ("00000000-0000-4000-8000-000000000001", "x' or PartitionKey ne '", "user_id"),
])
def test_non_guid_route_ids_are_bad_request(stack, caplog, route, tenant_id, user_id, field):
    method = "GET" if route == "describe_token" else "DELETE"
    response = stack.call(route, method=method, token=stack.app_token(roles=REDEEM + ADMIN),
                          route_params=record_params(tenant_id, user_id))
    check(stack, caplog, response, 400, "bad_request", field=field)


# --- forget --------------------------------------------------------------------------------

def test_a_user_forgets_their_own_record(stack, caplog, onboarded_tenant, alice):
    token = stack.user_token(onboarded_tenant, alice)
    check(stack, caplog, forget(stack, token, onboarded_tenant, alice), 204)
    check(stack, caplog, describe(stack, token, onboarded_tenant, alice), 404, "not_found")


def test_a_listed_admin_app_forgets_a_record(stack, caplog, onboarded_tenant, alice):
    check(stack, caplog, forget(stack, stack.app_token(roles=ADMIN), onboarded_tenant, alice), 204)
    assert not stack.records.tenant_has_records(onboarded_tenant)


@pytest.mark.parametrize("who", ["redeem-only app", "unlisted admin app", "another user"])
def test_others_may_not_forget_a_record(stack, caplog, onboarded_tenant, alice, who):
    token = {"redeem-only app": lambda: stack.app_token(roles=REDEEM),
             "unlisted admin app": lambda: stack.app_token(roles=ADMIN, app_id=STRANGER_APP),
             "another user": lambda: stack.user_token(onboarded_tenant, new_id())}[who]()
    check(stack, caplog, forget(stack, token, onboarded_tenant, alice), 403, "insufficient_permissions")
    assert stack.records.tenant_has_records(onboarded_tenant)


def test_forget_with_nothing_stored_is_not_found(stack, caplog, onboarded_tenant):
    user = new_id()
    check(stack, caplog, forget(stack, stack.user_token(onboarded_tenant, user), onboarded_tenant, user),
          404, "not_found")


# --- anonymous routes ----------------------------------------------------------------------

def test_health_answers_ok_without_a_token(stack):
    response = stack.call("health", method="GET")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.get_body())
    assert body["status"] == "ok" and body["version"]


def test_the_openapi_document_is_served_without_a_token(stack):
    response = stack.call("openapi", method="GET")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    document = json.loads(response.get_body())
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {"/tokens", "/tokens/redeem", "/tokens/{tenant_id}/{user_id}",
                                      "/health", "/openapi.json"}
