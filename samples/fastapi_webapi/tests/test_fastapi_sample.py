"""The FastAPI sample's unit tests, through FastAPI's test client, against the stand-in of Entra
ID, TokenVault and Graph (``stand_in``): the async twin of the Flask sample's tests."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import pytest
from azure.core.credentials import AccessToken
from fastapi.testclient import TestClient

from fastapi_webapi.app import create_app
from fastapi_webapi.background import SIGN_IN_AGAIN, refresh_profiles
from stand_in import StandIn
from tokenvault_client.aio import TokenVaultClient

CLAIMS = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'


class AsyncAppCredential:
    def __init__(self, stand_in: StandIn) -> None:
        self.stand_in, self.asked = stand_in, []

    async def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.asked.append(scopes)
        return AccessToken(self.stand_in.mint_app(str(uuid.uuid4()), "web-api"), int(time.time()) + 3600)

    async def close(self) -> None:
        pass


@pytest.fixture
def stand_in():
    with StandIn() as server:
        yield server


@pytest.fixture
def http(stand_in):
    app = create_app({"TOKENVAULT_ENDPOINT": stand_in.url, "TOKENVAULT_CLIENT_ID": stand_in.client_id,
                      "AUTHORITY_HOST": stand_in.url, "GRAPH_URL": stand_in.url,
                      "CLIENT_OPTIONS": {"retry_total": 0}})
    with TestClient(app) as client:
        yield client


@pytest.fixture
def user(stand_in):
    tenant, oid = str(uuid.uuid4()), str(uuid.uuid4())
    return tenant, oid, {"Authorization": f"Bearer {stand_in.mint(tenant, oid)}"}


def test_a_call_without_a_valid_bearer_token_is_401(http, stand_in):
    tenant, oid = str(uuid.uuid4()), str(uuid.uuid4())
    for authorization in (None, "Bearer not-a-jwt", f"Bearer {stand_in.mint(tenant, oid, aud='x')}"):
        answer = http.get("/me", headers={"Authorization": authorization} if authorization else {})
        assert answer.status_code == 401
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
        assert answer.headers["Content-Type"] == "application/problem+json"
    assert sum(stand_in.calls.values()) == 0


def test_the_first_call_stores_and_later_calls_redeem(http, stand_in, user):
    tenant, oid, headers = user
    for _ in range(3):
        answer = http.get("/me", headers=headers)
        assert answer.status_code == 200 and answer.json()["id"] == oid
    assert (stand_in.calls["store"], stand_in.calls["redeem"], stand_in.calls["graph"]) == (1, 3, 3)


def test_reauth_required_with_claims_is_a_claims_challenge_and_the_next_sign_in_stores(
        http, stand_in, user):
    tenant, oid, headers = user
    assert http.get("/me", headers=headers).status_code == 200
    stand_in.fail_next("redeem", 409, "reauth_required", claims=CLAIMS)
    refused = http.get("/me", headers=headers)
    assert refused.status_code == 401 and refused.json()["code"] == "reauth_required"
    challenge = refused.headers["WWW-Authenticate"]
    encoded = challenge.split('claims="', 1)[1].split('"', 1)[0]
    assert json.loads(base64.b64decode(encoded)) == json.loads(CLAIMS)
    assert http.get("/me", headers={"Authorization": f"Bearer {stand_in.mint(tenant, oid)}"}
                    ).status_code == 200
    assert stand_in.calls["store"] == 2


def test_not_found_is_a_sign_in_challenge(http, stand_in, user):
    tenant, oid, headers = user
    assert http.get("/me", headers=headers).status_code == 200
    stand_in.fail_next("redeem", 404, "not_found")
    refused = http.get("/me", headers=headers)
    assert refused.status_code == 401 and refused.json()["code"] == "not_found"
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_the_vault_unavailable_is_503_with_its_retry_after(http, stand_in, user):
    stand_in.fail_next("store", 503, "upstream_unavailable", retry_after=13)
    answer = http.get("/me", headers=user[2])
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "13"


def test_the_background_job_acts_for_users_who_are_gone(http, stand_in, user):
    tenant, oid, headers = user
    assert http.get("/me", headers=headers).status_code == 200
    gone = (str(uuid.uuid4()), str(uuid.uuid4()))
    credential = AsyncAppCredential(stand_in)

    async def job():
        async with TokenVaultClient(stand_in.url, client_id=stand_in.client_id,
                                    credential=credential) as client:
            return await refresh_profiles(client, [(tenant, oid), gone], graph_url=stand_in.url)

    report = asyncio.run(job())
    assert report == {f"{tenant}/{oid}": f"User {oid[:8]}", f"{gone[0]}/{gone[1]}": SIGN_IN_AGAIN}
    assert set(credential.asked) == {(f"api://{stand_in.client_id}/.default",)}
