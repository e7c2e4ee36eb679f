"""The dev host as a developer runs it: ``python -m tokenvault.dev.devhost`` in a process of its
own, reading ``local.settings.json``, spoken to over real HTTP. Behind it: the session's
Azurite, the Entra fake (trusted through ``REQUESTS_CA_BUNDLE``, as a local run does) and a
local keyring file. Also the demo identity provider of ``scripts/run``."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import requests

from scripts.demo_idp import MINT_PATH, DemoIdentityProvider
from tests.support.devhost_process import local_devhost, onboarded_devhost
from tests.support.stack_fixtures import CALLER_APP, CALLER_TENANT, CALLERS, SCOPES, new_id

JSON = "application/json; charset=utf-8"
PROBLEM = "application/problem+json; charset=utf-8"
#: The tenant onboarded in the dev host's keyring.
TENANT = new_id()


@pytest.fixture(scope="module")
def served(tmp_path_factory, azurite, entra_server, ca, client_id, client_secret):
    with onboarded_devhost(tmp_path_factory.mktemp("devhost"), TENANT, azurite=azurite,
                           entra=entra_server, ca=ca, client_id=client_id,
                           client_secret=client_secret, redeem_callers=CALLERS) as host:
        yield host


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False  # no proxy or CA bundle from the environment for 127.0.0.1
    yield session
    session.close()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_common(response, media_type: str | None) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Correlation-Id"]
    if media_type:
        assert response.headers["Content-Type"] == media_type
    assert int(response.headers["Content-Length"]) == len(response.content)


def test_store_redeem_describe_forget_over_http(served, http, entra_server):
    tenant, user = TENANT, new_id()
    token = entra_server.user_token(tenant, user)
    record_url = f"{served.api}/tokens/{tenant}/{user}"

    stored = http.post(f"{served.api}/tokens", json={"scopes": SCOPES}, headers=bearer(token))
    assert stored.status_code == 201, stored.json().get("code")
    assert_common(stored, JSON)
    assert stored.headers["Location"] == f"/api/tokens/{tenant}/{user}"
    assert stored.json()["status"] == "active"

    redeemed = http.post(f"{served.api}/tokens/redeem", json={"scopes": SCOPES}, headers=bearer(token))
    assert redeemed.status_code == 200
    assert_common(redeemed, JSON)
    grant = redeemed.json()
    claims = jwt.decode(grant["access_token"], options={"verify_signature": False})
    assert (claims["tid"], claims["oid"], claims["aud"]) == (tenant, user, "https://graph.microsoft.com")
    assert grant["token_type"] == "Bearer" and grant["expires_in"] > 0

    described = http.get(record_url, headers=bearer(token))
    assert described.status_code == 200
    assert_common(described, JSON)
    assert (described.json()["user_id"], described.json()["status"]) == (user, "active")

    forgotten = http.delete(record_url, headers=bearer(token))
    assert forgotten.status_code == 204 and forgotten.content == b""
    assert_common(forgotten, None)

    gone = http.post(f"{served.api}/tokens/redeem", json={"scopes": SCOPES}, headers=bearer(token))
    assert gone.status_code == 404
    assert_common(gone, PROBLEM)
    assert gone.json()["code"] == "not_found"


def test_an_app_redeems_over_http(served, http, entra_server):
    tenant, user = TENANT, new_id()
    user_token = entra_server.user_token(tenant, user)
    assert http.post(f"{served.api}/tokens", json={"scopes": SCOPES},
                     headers=bearer(user_token)).status_code == 201
    app_token = entra_server.app_token(CALLER_TENANT, CALLER_APP, roles=["TokenVault.Redeem"])
    redeemed = http.post(f"{served.api}/tokens/redeem", headers=bearer(app_token),
                         json={"scopes": SCOPES, "tenant_id": tenant, "user_id": user})
    assert redeemed.status_code == 200 and redeemed.json()["access_token"]


@pytest.mark.parametrize("request_kwargs, status, code, field", [
    ({}, 401, "invalid_token", None),
    ({"headers": {"Authorization": "Bearer nope"}}, 401, "invalid_token", None),
    ({"user": True, "data": b"scopes=User.Read",
      "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400, "bad_request",
     "Content-Type"),
    ({"user": True, "json": {"scopes": SCOPES, "x": 1}}, 400, "bad_request", "x"),
    ({"user": True, "data": b"{" + b" " * (16 * 1024) + b"}",
      "headers": {"Content-Type": "application/json"}}, 413, "payload_too_large", None),
])
def test_problems_over_the_wire(served, http, entra_server, request_kwargs, status, code, field):
    kwargs = dict(request_kwargs)
    headers = dict(kwargs.pop("headers", {}))
    if kwargs.pop("user", False):
        headers.update(bearer(entra_server.user_token(TENANT, new_id())))
    response = http.post(f"{served.api}/tokens", headers=headers, **kwargs)
    assert response.status_code == status
    assert_common(response, PROBLEM)
    problem = response.json()
    assert problem["code"] == code and problem["status"] == status
    assert problem["correlation_id"] == response.headers["X-Correlation-Id"]
    assert problem.get("field") == field
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_a_tenant_without_a_key_is_not_onboarded_over_http(served, http, entra_server):
    token = entra_server.user_token(new_id(), new_id())
    response = http.post(f"{served.api}/tokens", json={"scopes": SCOPES}, headers=bearer(token))
    assert response.status_code == 403 and response.json()["code"] == "tenant_not_onboarded"


def test_health_and_the_openapi_document_over_http(served, http):
    health = http.get(f"{served.api}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.headers["Content-Type"] == JSON
    document = http.get(f"{served.api}/openapi.json")
    assert document.status_code == 200 and document.json()["openapi"].startswith("3.1")


def test_unknown_routes_and_methods(served, http):
    assert http.get(f"{served.api}/nothing-here").status_code == 404
    assert http.put(f"{served.api}/tokens").status_code == 404  # as the Functions host answers
    assert http.get(f"{served.url}/elsewhere").status_code == 404
    assert http.get(f"{served.api}/HEALTH").status_code == 200  # routes ignore case, as there


def test_a_burst_of_concurrent_clients_gets_answers_not_resets(served):
    # Python's default listen backlog (5) reset connections under ~20 concurrent clients.
    # Each client opens its own connection at once; every one must get its answer.
    clients = 48
    barrier = threading.Barrier(clients)

    def one(_: int) -> int:
        with requests.Session() as session:
            session.trust_env = False
            barrier.wait(timeout=30)
            return session.get(f"{served.api}/health", timeout=30).status_code

    with ThreadPoolExecutor(max_workers=clients) as pool:
        statuses = list(pool.map(one, range(clients)))
    assert statuses == [200] * clients


def test_the_dev_host_logs_requests_but_no_secret(served, http, entra_server):
    # Runs after the tests above have sent tokens through it (pytest keeps file order).
    http.get(f"{served.api}/health")
    output = served.output()
    assert "GET /api/health" in output and "devhost: serving" in output
    # It prints the audit trail and, on the console exporter, one line per span.
    audits = [json.loads(line.split(" audit ", 1)[1]) for line in output.splitlines()
              if " tokenvault.audit audit {" in line]
    assert {"store", "redeem", "describe", "forget"} <= {a["action"] for a in audits}
    assert re.search(r"^span http\.redeem [\d.]+ms trace=[0-9a-f]{32} .*"
                     r"tokenvault\.correlation_id=\S+ .*tokenvault\.outcome=ok", output, re.M)
    assert re.search(r"^span TableClient\.get_entity ", output, re.M)
    keys = [v["value"] for versions in json.loads(served.keyring.read_text())["secrets"].values()
            for v in versions]
    secrets = set(entra_server.issued_secrets()) | set(keys)
    assert not [s for s in secrets if s in output], "a secret is in the dev host's output"


def test_the_dev_host_stops_on_sigterm(tmp_path, azurite, ca, client_id, client_secret):
    host = local_devhost(tmp_path, storage=azurite.connection_string,
                         authority_host="https://127.0.0.1:9", ca_bundle=ca.bundle,
                         client_id=client_id, client_secret=client_secret)
    assert host.start().stop(grace=10) == 0


# --- the demo identity provider of scripts/run -----------------------------------------------

def test_the_demo_identity_provider_mints_user_tokens_that_verify_at_its_issuer(
        tmp_path, client_id, client_secret):
    tenant = new_id()
    with DemoIdentityProvider(tmp_path, client_id=client_id, client_secret=client_secret) as demo:
        tls = requests.Session()
        tls.trust_env, tls.verify = False, str(demo.ca_bundle)
        try:
            minted = tls.post(demo.url + MINT_PATH, data={"tid": tenant, "oid": new_id()})
            assert minted.status_code == 200
            assert minted.headers["Content-Type"].startswith("text/plain")
            token = minted.text
            assert token.count(".") == 2 and "\n" not in token
            assert jwt.get_unverified_header(token)["alg"] == "RS256"
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["aud"] == client_id and claims["tid"] == tenant
            assert claims["iss"] == f"{demo.url}/{tenant}/v2.0"
            # The token verifies against the JWKS the demo publishes at its issuer.
            keys = tls.get(f"{demo.url}/{tenant}/discovery/v2.0/keys").json()["keys"]
            key = jwt.PyJWK(next(k for k in keys if k["kid"] == jwt.get_unverified_header(token)["kid"]))
            jwt.decode(token, key.key, algorithms=["RS256"], audience=client_id,
                       issuer=claims["iss"])
            bad = tls.post(demo.url + MINT_PATH, data={"tid": "not-a-guid", "oid": new_id()})
            assert bad.status_code == 400
            assert tls.get(demo.url + MINT_PATH).status_code == 405
        finally:
            tls.close()
