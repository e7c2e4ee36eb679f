"""The Flask sample's unit tests, through Flask's test client, against the stand-in of Entra ID,
TokenVault and Graph (``stand_in``): they need only the client, Flask and PyJWT, and run in a
fresh virtual environment where no server code exists (a test of the repository builds one).
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from azure.core.credentials import AccessToken

from flask_webapi.app import create_app
from flask_webapi.background import SIGN_IN_AGAIN, refresh_profiles
from stand_in import StandIn

CLAIMS = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'


class AppCredential:
    """The web API's own app credential, as the stand-in's identity provider would issue it."""

    def __init__(self, stand_in: StandIn) -> None:
        self.stand_in, self.asked = stand_in, []

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.asked.append(scopes)
        return AccessToken(self.stand_in.mint_app(str(uuid.uuid4()), "web-api"), int(time.time()) + 3600)


@pytest.fixture
def stand_in():
    with StandIn() as server:
        yield server


@pytest.fixture
def app(stand_in):
    app = create_app({"TOKENVAULT_ENDPOINT": stand_in.url, "TOKENVAULT_CLIENT_ID": stand_in.client_id,
                      "AUTHORITY_HOST": stand_in.url, "GRAPH_URL": stand_in.url,
                      "APP_CREDENTIAL": AppCredential(stand_in),
                      # A 503 is answered at once here, not retried.
                      "CLIENT_OPTIONS": {"retry_total": 0}})
    yield app
    app.extensions["tokenvault"].client.close()


@pytest.fixture
def user(stand_in):
    tenant, oid = str(uuid.uuid4()), str(uuid.uuid4())
    return tenant, oid, {"Authorization": f"Bearer {stand_in.mint(tenant, oid)}"}


def challenge_claims(header: str) -> str:
    encoded = header.split('claims="', 1)[1].split('"', 1)[0]
    return base64.b64decode(encoded).decode()


def test_a_call_without_a_valid_bearer_token_is_401_and_never_reaches_the_vault(app, stand_in):
    http = app.test_client()
    tenant, oid = str(uuid.uuid4()), str(uuid.uuid4())
    for authorization in (None, "Bearer not-a-jwt",
                          f"Bearer {stand_in.mint(tenant, oid, aud='api://someone-else')}",
                          f"Bearer {stand_in.mint(tenant, oid, lifetime=-600)}",
                          f"Bearer {stand_in.mint_app(tenant, 'an-app')}"):
        answer = http.get("/me", headers={"Authorization": authorization} if authorization else {})
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer ")
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    assert sum(stand_in.calls.values()) == 0


def test_the_first_call_stores_the_users_token_and_later_calls_redeem(app, stand_in, user):
    tenant, oid, headers = user
    http = app.test_client()
    first = http.get("/me", headers=headers)
    assert first.status_code == 200 and first.get_json()["id"] == oid
    assert (stand_in.calls["store"], stand_in.calls["redeem"]) == (1, 1)
    assert stand_in.records[(tenant, oid)] == ["https://graph.microsoft.com/User.Read"]
    for _ in range(2):
        assert http.get("/me", headers=headers).get_json()["id"] == oid
    assert (stand_in.calls["store"], stand_in.calls["redeem"], stand_in.calls["graph"]) == (1, 3, 3)


@pytest.mark.parametrize("code, status", [("reauth_required", 409), ("not_found", 404)])
def test_a_user_who_must_sign_in_again_gets_a_challenge_and_is_stored_again_after(
        app, stand_in, user, code, status):
    tenant, oid, headers = user
    http = app.test_client()
    assert http.get("/me", headers=headers).status_code == 200
    stand_in.fail_next("redeem", status, code)
    refused = http.get("/me", headers=headers)
    assert refused.status_code == 401 and refused.get_json()["code"] == code
    assert refused.headers["WWW-Authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    # The user signed in again: their next call stores the new token.
    again = {"Authorization": f"Bearer {stand_in.mint(tenant, oid)}"}
    assert http.get("/me", headers=again).status_code == 200
    assert stand_in.calls["store"] == 2


def test_a_claims_challenge_reaches_the_client_app(app, stand_in, user):
    tenant, oid, headers = user
    http = app.test_client()
    stand_in.fail_next("store", 409, "reauth_required", claims=CLAIMS)
    refused = http.get("/me", headers=headers)
    assert refused.status_code == 401
    challenge = refused.headers["WWW-Authenticate"]
    assert 'error="insufficient_claims"' in challenge
    assert json.loads(challenge_claims(challenge)) == json.loads(CLAIMS)
    assert stand_in.calls["redeem"] == 0


def test_scopes_not_stored_are_stored_again_while_the_user_is_here(app, stand_in, user):
    tenant, oid, headers = user
    http = app.test_client()
    assert http.get("/me", headers=headers).status_code == 200
    stand_in.fail_next("redeem", 403, "scope_not_stored")
    assert http.get("/me", headers=headers).status_code == 200
    assert (stand_in.calls["store"], stand_in.calls["redeem"]) == (2, 3)


def test_the_vault_unavailable_is_503_with_its_retry_after(app, stand_in, user):
    tenant, oid, headers = user
    stand_in.fail_next("store", 503, "upstream_unavailable", retry_after=17)
    answer = app.test_client().get("/me", headers=headers)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "17"


def test_the_background_job_acts_for_users_who_are_gone(app, stand_in, user):
    tenant, oid, headers = user
    http = app.test_client()
    assert http.get("/me", headers=headers).status_code == 200
    gone_tenant, gone = str(uuid.uuid4()), str(uuid.uuid4())
    forgotten = {"Authorization": f"Bearer {stand_in.mint(gone_tenant, gone)}"}
    assert http.get("/me", headers=forgotten).status_code == 200
    del stand_in.records[(gone_tenant, gone)]
    redeems = stand_in.calls["redeem"]

    report = refresh_profiles(app, [(tenant, oid), (gone_tenant, gone)])

    assert report == {f"{tenant}/{oid}": f"User {oid[:8]}", f"{gone_tenant}/{gone}": SIGN_IN_AGAIN}
    assert stand_in.calls["redeem"] == redeems + 2
    credential = app.config["APP_CREDENTIAL"]
    assert set(credential.asked) == {(f"api://{stand_in.client_id}/.default",)}
