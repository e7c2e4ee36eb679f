"""The samples through their frameworks' test clients, against the real parts: the served
TokenVault (``served_vault``), the Entra fake (it issues the users' tokens, the samples check
them against its published keys, the vault runs OBO and refresh at it, azure-identity gets the
background job's app token from it) and a Graph fake that checks every token it is shown.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl

import pytest
from fastapi.testclient import TestClient

from fastapi_webapi import background as fastapi_background
from fastapi_webapi.app import create_app as create_fastapi_app
from flask_webapi.app import create_app as create_flask_app
from flask_webapi.background import SIGN_IN_AGAIN, refresh_profiles
from tests.support.client_fixtures import async_client_credential
from tests.support.graph import FakeGraph
from tests.support.stack_fixtures import new_id
from tokenvault_client.aio import TokenVaultClient as AsyncTokenVaultClient

pytestmark = pytest.mark.integration

CLAIMS = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'


@pytest.fixture(scope="module")
def graph_service(ca, entra_server):
    with FakeGraph(ca, entra_server) as graph:
        yield graph


@pytest.fixture
def graph(graph_service):
    graph_service.reset()
    return graph_service


@pytest.fixture
def settings(served_vault, client_id, entra, graph, ca) -> dict:
    """The samples' settings for the local parts (the app credential is added per sample)."""
    return {"TOKENVAULT_ENDPOINT": served_vault.url, "TOKENVAULT_CLIENT_ID": client_id,
            "TOKENVAULT_FUNCTION_KEY": served_vault.function_key,
            "AUTHORITY_HOST": entra.authority_host, "GRAPH_URL": graph.url,
            "TLS_CONTEXT": ssl.create_default_context(cafile=str(ca.bundle)),
            "GRAPH_OPTIONS": {"connection_verify": str(ca.bundle)}}


@pytest.fixture
def flask_app(settings, app_credential):
    app = create_flask_app({**settings, "APP_CREDENTIAL": app_credential})
    yield app
    app.extensions["tokenvault"].client.close()


@pytest.fixture
def tenant(stack) -> str:
    return stack.onboard()


def expire_cached_access_tokens(stack) -> None:
    """The vault keeps a redeemed access token in memory until shortly before it expires, and
    learns that a grant died only at its next refresh: move the vault's clock an hour on."""
    stack.clock.advance(hours=1)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def challenged_claims(answer) -> str | None:
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    if 'claims="' not in challenge:
        return None
    assert 'error="insufficient_claims"' in challenge
    return base64.b64decode(challenge.split('claims="', 1)[1].split('"', 1)[0]).decode()


# --- Flask -----------------------------------------------------------------------------------

def test_flask_first_call_stores_then_redeems_and_graph_accepts_the_token(
        stack, flask_app, served_vault, graph, tenant):
    user = new_id()
    http = flask_app.test_client()
    for _ in range(3):
        answer = http.get("/me", headers=bearer(stack.user_token(tenant, user)))
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json() == {"id": user, "displayName": f"User {user[:8]}"}
    assert stack.entra.counts["obo"] == 1
    assert served_vault.count("POST", "/api/tokens") == 1
    assert served_vault.count("POST", "/api/tokens/redeem") == 3
    assert graph.served[(tenant, user)] == 3 and graph.refused == 0


def test_flask_refuses_a_token_it_should_not_accept_without_calling_the_vault(
        stack, flask_app, served_vault, tenant):
    http = flask_app.test_client()
    for headers in ({}, bearer(stack.user_token(tenant, new_id(), aud="api://another-api")),
                    bearer(stack.user_token(tenant, new_id(), lifetime=-3600)),
                    bearer(stack.app_token())):
        answer = http.get("/me", headers=headers)
        assert answer.status_code == 401 and challenged_claims(answer) is None
    assert served_vault.served == []


def test_flask_a_dead_grant_makes_the_user_sign_in_again_and_the_new_token_is_stored(
        stack, flask_app, served_vault, tenant):
    user = new_id()
    http = flask_app.test_client()
    assert http.get("/me", headers=bearer(stack.user_token(tenant, user))).status_code == 200
    stack.entra.kill_user(tenant, user)  # an admin reset the user's password
    expire_cached_access_tokens(stack)

    refused = http.get("/me", headers=bearer(stack.user_token(tenant, user)))
    assert refused.status_code == 401 and refused.get_json()["code"] == "reauth_required"
    assert challenged_claims(refused) is None
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]

    # The client app signed the user in again; the new token is stored, and redeems.
    again = http.get("/me", headers=bearer(stack.user_token(tenant, user)))
    assert again.status_code == 200 and again.get_json()["id"] == user
    assert stack.entra.counts["obo"] == 2


def test_flask_a_claims_challenge_reaches_the_client_app(stack, flask_app, tenant):
    user = new_id()
    http = flask_app.test_client()
    assert http.get("/me", headers=bearer(stack.user_token(tenant, user))).status_code == 200
    stack.entra.fault("interaction_required", grant="refresh", user=(tenant, user), claims=CLAIMS)
    expire_cached_access_tokens(stack)

    refused = http.get("/me", headers=bearer(stack.user_token(tenant, user)))
    assert refused.status_code == 401 and json.loads(challenged_claims(refused)) == json.loads(CLAIMS)


def test_flask_a_forgotten_user_is_asked_to_sign_in_and_stored_again(
        stack, flask_app, vault_client, tenant):
    user = new_id()
    http = flask_app.test_client()
    assert http.get("/me", headers=bearer(stack.user_token(tenant, user))).status_code == 200
    vault_client.forget(tenant, user)  # an admin removed the record

    refused = http.get("/me", headers=bearer(stack.user_token(tenant, user)))
    assert refused.status_code == 401 and refused.get_json()["code"] == "not_found"
    assert http.get("/me", headers=bearer(stack.user_token(tenant, user))).status_code == 200
    assert vault_client.describe(tenant, user).status == "active"


def test_flask_background_job_reads_graph_for_users_who_are_gone(
        stack, flask_app, served_vault, graph, tenant):
    present, gone = new_id(), new_id()
    http = flask_app.test_client()
    for user in (present, gone):
        assert http.get("/me", headers=bearer(stack.user_token(tenant, user))).status_code == 200
    stack.entra.kill_user(tenant, gone)
    expire_cached_access_tokens(stack)
    redeems = served_vault.count("POST", "/api/tokens/redeem")

    report = refresh_profiles(flask_app, [(tenant, present), (tenant, gone)])

    assert report == {f"{tenant}/{present}": f"User {present[:8]}", f"{tenant}/{gone}": SIGN_IN_AGAIN}
    assert graph.served[(tenant, present)] == 2 and graph.served[(tenant, gone)] == 1
    # One redeem per user, as the app (the users are not there to send their tokens).
    assert served_vault.count("POST", "/api/tokens/redeem") == redeems + 2


# --- FastAPI ---------------------------------------------------------------------------------

@pytest.fixture
def fastapi_http(settings, async_app_credential_kwargs):
    # The async app credential is made in the app's event loop (the TestClient's), on first use.
    class LazyCredential:
        credential = None

        async def get_token(self, *scopes, **kwargs):
            self.credential = self.credential or async_client_credential(async_app_credential_kwargs)
            return await self.credential.get_token(*scopes, **kwargs)

        async def close(self):
            if self.credential:
                await self.credential.close()

    with TestClient(create_fastapi_app({**settings, "APP_CREDENTIAL": LazyCredential()})) as http:
        yield http


def test_fastapi_first_call_stores_then_redeems(stack, fastapi_http, served_vault, graph, tenant):
    user = new_id()
    for _ in range(2):
        answer = fastapi_http.get("/me", headers=bearer(stack.user_token(tenant, user)))
        assert answer.status_code == 200 and answer.json()["id"] == user
    assert stack.entra.counts["obo"] == 1 and graph.served[(tenant, user)] == 2
    assert served_vault.count("POST", "/api/tokens/redeem") == 2


def test_fastapi_re_sign_in_with_and_without_claims(stack, fastapi_http, tenant):
    user = new_id()
    assert fastapi_http.get("/me", headers=bearer(stack.user_token(tenant, user))).status_code == 200
    stack.entra.fault("interaction_required", grant="refresh", user=(tenant, user), claims=CLAIMS)
    expire_cached_access_tokens(stack)
    with_claims = fastapi_http.get("/me", headers=bearer(stack.user_token(tenant, user)))
    assert with_claims.status_code == 401 and json.loads(challenged_claims(with_claims)) == json.loads(CLAIMS)

    # Signed in again with the claims: the new token is stored and redeems.
    assert fastapi_http.get("/me", headers=bearer(stack.user_token(tenant, user))).status_code == 200
    assert stack.entra.counts["obo"] == 2

    stack.entra.kill_user(tenant, user)
    expire_cached_access_tokens(stack)
    dead = fastapi_http.get("/me", headers=bearer(stack.user_token(tenant, user)))
    assert dead.status_code == 401 and dead.json()["code"] == "reauth_required"
    assert challenged_claims(dead) is None
    assert fastapi_http.get("/me", headers=bearer(stack.user_token(tenant, user))).status_code == 200
    assert stack.entra.counts["obo"] == 3


def test_fastapi_background_job_reads_graph_for_users_who_are_gone(
        stack, settings, vault_client, graph, served_vault, client_id, tenant,
        async_app_credential_kwargs):
    present, gone = new_id(), new_id()
    for user in (present, gone):
        vault_client.store(["https://graph.microsoft.com/User.Read"],
                           user_token=stack.user_token(tenant, user))
    stack.entra.kill_user(tenant, gone)

    async def job():
        async with async_client_credential(async_app_credential_kwargs) as credential, \
                AsyncTokenVaultClient(served_vault.url, client_id=client_id, credential=credential,
                                      function_key=served_vault.function_key) as client:
            return await fastapi_background.refresh_profiles(
                client, [(tenant, present), (tenant, gone)], graph_url=graph.url,
                graph_options=settings["GRAPH_OPTIONS"])

    report = asyncio.run(job())
    assert report == {f"{tenant}/{present}": f"User {present[:8]}",
                      f"{tenant}/{gone}": fastapi_background.SIGN_IN_AGAIN}
    assert graph.served[(tenant, present)] == 1
