"""Forged, malformed and misdirected bearer tokens against function_app's functions, with every
real part behind them. Each is refused with 401 or 403 and its code, and the refusal costs no
identity-provider grant, no Key Vault read and no storage request: storage requests are counted
by a request hook on the table and queue clients, the other two at their fakes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import select
import socket
import time

import pytest

from tests.support.stack_fixtures import (
    CALLER_APP,
    CALLER_TENANT,
    SCOPES,
    STRANGER_APP,
    StorageRequests,
    new_id,
)
from tokenvault.dev.entra_fake import SigningKey
from tokenvault.model import RecordKey


def body(response) -> dict:
    return json.loads(response.get_body())


class Scene:
    """A tenant with a stored victim, an attacker's signing key, and counters of everything a
    refused request must not cause."""

    def __init__(self, stack, storage: StorageRequests) -> None:
        self.stack, self.entra, self.storage = stack, stack.entra, storage
        self.tenant = stack.onboard()
        self.victim = new_id()
        assert stack.store(self.tenant, self.victim).status_code == 201
        self.etag = stack.records.get(RecordKey(self.tenant, self.victim)).etag
        self.attacker = SigningKey()
        self.kid = stack.entra.current_key.kid
        # From here on, anything that reached the vault would have to ask Key Vault again.
        stack.expire_key_cache()
        self.baseline()

    def baseline(self) -> None:
        self.storage.clear()
        self.grants = self._grants()
        self.key_vault = sum(self.stack.keyvault.requests.values())
        self.jwks = self.entra.counts["jwks"]

    def _grants(self) -> int:
        counts = self.entra.counts
        return counts["obo"] + counts["refresh"] + counts["client_credentials"]

    def good(self, **overrides) -> str:
        return self.entra.user_token(self.tenant, self.victim, **overrides)

    def call(self, route: str, token: str | None, *, headers: dict | None = None, **extra):
        """One request on a route that aims at the victim's record; ``extra`` goes into the
        body (POST) or the route (GET, DELETE)."""
        key = {"tenant_id": self.tenant, "user_id": self.victim}
        function, method, params, payload = {
            "store": ("store_token", "POST", {}, {"scopes": SCOPES}),
            "redeem": ("redeem_token", "POST", {}, {"scopes": SCOPES}),
            "redeem for a named user": ("redeem_token", "POST", {}, {"scopes": SCOPES, **key}),
            "describe": ("describe_token", "GET", key, None),
            "forget": ("forget_token", "DELETE", key, None),
        }[route]
        if payload is None:
            params, payload = {**params, **extra}, b""
        else:
            payload = {**payload, **extra}
        return self.stack.call(function, method=method, token=token, headers=headers,
                               route_params=params, body=payload)

    def assert_nothing_was_asked(self) -> None:
        assert self._grants() == self.grants, "an identity-provider grant was requested"
        assert sum(self.stack.keyvault.requests.values()) == self.key_vault, "Key Vault was read"
        assert self.storage.seen == [], f"storage was called: {self.storage.seen}"
        # Still there, untouched: read outside the watched app.
        assert self.stack.records.get(RecordKey(self.tenant, self.victim)).etag == self.etag


@pytest.fixture
def scene(stack, recompose) -> Scene:
    storage = StorageRequests()
    recompose(storage_options={"raw_request_hook": storage})
    return Scene(stack, storage)


ROUTES = ("store", "redeem", "redeem for a named user", "describe", "forget")


def _b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _resigned(token: str, header: dict, sign) -> str:
    """The token's claims under a new header, signed by ``sign(signing_input)``."""
    signing_input = f"{_b64(header)}.{token.split('.')[1]}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _hs256_with_public_pem(s: Scene) -> str:
    pem = s.entra.public_pem()
    return _resigned(s.good(), {"alg": "HS256", "typ": "JWT", "kid": s.kid},
                     lambda data: hmac.new(pem, data, hashlib.sha256).digest())


# Each row builds one bad bearer token for the victim's tenant; every route refuses it with 401.
FORGED = {
    "not a JWT": lambda s: "not-a-jwt",
    "bad base64": lambda s: "!!!.@@@.###",
    "claims not JSON": lambda s: s.good().split(".")[0] + "." + _b64(b"{oid:") + ".sig",
    "alg none": lambda s: _resigned(s.good(), {"alg": "none", "kid": s.kid}, lambda _: b""),
    "HS256 keyed with the public RSA key (PEM)": _hs256_with_public_pem,
    "unknown kid": lambda s: s.good(key=s.attacker),
    "known kid, attacker's key": lambda s: s.good(key=s.attacker, headers={"kid": s.kid}),
    "wrong audience": lambda s: s.good(aud=new_id()),
    "audience of another API": lambda s: s.good(aud="https://graph.microsoft.com"),
    "issuer of another tenant than tid": lambda s: s.good(claims={"iss": s.entra.issuer(new_id())}),
    "tid missing": lambda s: s.good(claims={"tid": None}),
    "oid missing": lambda s: s.good(claims={"oid": None}),
    "exp in the past": lambda s: s.good(now=time.time() - 3600 - 400),
    "nbf in the future": lambda s: s.good(now=time.time() + 400),
    "neither scp nor roles": lambda s: s.good(scp=None),
}


@pytest.mark.parametrize("name", list(FORGED))
def test_a_forged_token_is_refused_on_every_route_and_nothing_is_asked(scene, name):
    token = FORGED[name](scene)
    scene.baseline()

    for route in ROUTES:
        response = scene.call(route, token)
        assert (response.status_code, body(response)["code"]) == (401, "invalid_token"), route
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert body(response)["detail"] == "The bearer token is missing or invalid."

    scene.assert_nothing_was_asked()
    # A token naming a new kid may make the tenant's keys be fetched once; never per request.
    assert scene.entra.counts["jwks"] - scene.jwks <= 1


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNzd29yZA==", "Bearer",
                                    "Bearer a.b.c.d", "Bearer " + "a" * 20_000 + ".b.c"])
def test_a_missing_or_malformed_authorization_header_is_refused(scene, header):
    for route in ROUTES:
        response = scene.call(route, None,
                              headers={} if header is None else {"Authorization": header})
        assert (response.status_code, body(response)["code"]) == (401, "invalid_token"), route

    scene.assert_nothing_was_asked()
    assert scene.entra.counts["jwks"] == scene.jwks


# Each row: a genuine token in the wrong hands, the route it is tried on (aimed at the victim's
# record), and what goes into the body or route besides.
MISDIRECTED = {
    "app token on store (user only)": (
        lambda s: s.stack.app_token(roles=("TokenVault.Redeem", "TokenVault.Admin")), "store",
        lambda s: {}),
    "user token naming another user in redeem": (
        lambda s: s.entra.user_token(s.tenant, new_id()), "redeem for a named user", lambda s: {}),
    "user token naming another user id only": (
        lambda s: s.entra.user_token(s.tenant, new_id()), "redeem",
        lambda s: {"user_id": s.victim}),
    "user token naming another tenant id only": (
        lambda s: s.entra.user_token(new_id(), s.victim), "redeem",
        lambda s: {"tenant_id": s.tenant}),
    "same oid in another tenant, naming the victim": (
        lambda s: s.entra.user_token(new_id(), s.victim), "redeem for a named user", lambda s: {}),
    "user A on user B's describe": (
        lambda s: s.entra.user_token(s.tenant, new_id()), "describe", lambda s: {}),
    "user A on user B's forget": (
        lambda s: s.entra.user_token(s.tenant, new_id()), "forget", lambda s: {}),
    "same oid in another tenant on describe": (
        lambda s: s.entra.user_token(new_id(), s.victim), "describe", lambda s: {}),
    "app not listed in TOKENVAULT_REDEEM_CALLERS redeems": (
        lambda s: s.stack.app_token(app_id=STRANGER_APP), "redeem for a named user", lambda s: {}),
    "app not listed forgets, although Admin": (
        lambda s: s.stack.app_token(roles=("TokenVault.Admin",), app_id=STRANGER_APP), "forget",
        lambda s: {}),
    "listed app without a role redeems": (
        lambda s: s.entra.app_token(CALLER_TENANT, CALLER_APP), "redeem for a named user",
        lambda s: {}),
    "listed app with Redeem forgets": (lambda s: s.stack.app_token(), "forget", lambda s: {}),
    "listed app with Admin only redeems": (
        lambda s: s.stack.app_token(roles=("TokenVault.Admin",)), "redeem for a named user",
        lambda s: {}),
    "listed app with an unknown role describes": (
        lambda s: s.stack.app_token(roles=("TokenVault.Everything",)), "describe", lambda s: {}),
}


@pytest.mark.parametrize("name", list(MISDIRECTED))
def test_a_genuine_token_on_a_route_it_may_not_use_is_forbidden(scene, name):
    build, route, extra = MISDIRECTED[name]
    token = build(scene)
    scene.baseline()

    response = scene.call(route, token, **extra(scene))

    assert (response.status_code, body(response)["code"]) == (403, "insufficient_permissions")
    assert "access_token" not in body(response)
    scene.assert_nothing_was_asked()


def test_the_same_routes_with_the_right_tokens_work_and_are_counted(scene):
    """The control: the counters above do see what a permitted request causes."""
    victim = scene.good()
    assert scene.call("redeem", victim).status_code == 200
    assert scene.call("redeem for a named user", scene.stack.app_token()).status_code == 200
    assert scene.call("describe", victim).status_code == 200

    assert scene.storage.seen and scene.entra.counts["refresh"] > 0
    assert sum(scene.stack.keyvault.requests.values()) > scene.key_vault
    scene.baseline()
    admin = scene.stack.app_token(roles=("TokenVault.Admin",))
    assert scene.call("forget", admin).status_code == 204
    assert [method for method, _ in scene.storage.seen] == ["DELETE"]


def test_forged_tokens_with_unknown_kids_cost_at_most_one_jwks_refetch(scene):
    for _ in range(25):
        forged = scene.good(key=scene.attacker, headers={"kid": _b64(new_id().encode())})
        assert scene.call("redeem", forged).status_code == 401

    assert scene.entra.jwks_fetches["common"] <= 2  # the store's fetch and one refetch
    scene.assert_nothing_was_asked()


@pytest.fixture
def listener():
    """A TCP listener nobody should ever connect to; ``connected()`` tells whether anyone
    did (a completed handshake waits in the accept queue and makes the socket readable)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)

    class Listener:
        url = f"https://127.0.0.1:{server.getsockname()[1]}"

        @staticmethod
        def connected() -> bool:
            return bool(select.select([server], [], [], 0)[0])

    yield Listener
    server.close()


def test_jku_x5u_and_jwk_headers_point_nowhere_we_go(scene, listener):
    headers = {"jku": f"{listener.url}/keys", "x5u": f"{listener.url}/cert.pem",
               "jwk": dict(scene.attacker.jwk)}
    forged = scene.good(key=scene.attacker, headers=headers)
    genuine = scene.good(headers={"jku": f"{listener.url}/keys", "x5u": f"{listener.url}/c.pem"})
    scene.baseline()

    for route in ROUTES:
        assert scene.call(route, forged).status_code == 401
    scene.assert_nothing_was_asked()
    # Signed by the tenant's real key, the headers are ignored, not obeyed.
    assert scene.call("redeem", genuine).status_code == 200
    assert not listener.connected()


@pytest.fixture
def allowed_only(stack, recompose):
    """The app again with TOKENVAULT_ALLOWED_TENANTS set to one tenant, and an onboarded
    tenant with a stored user outside that list."""
    allowed, outside, user = stack.onboard(), stack.onboard(), new_id()
    assert stack.store(outside, user).status_code == 201
    storage = StorageRequests()
    recompose(dataclasses.replace(stack.settings, allowed_tenants=frozenset({allowed})),
              storage_options={"raw_request_hook": storage})
    stack.expire_key_cache()
    return allowed, outside, user, storage


def test_a_tenant_outside_allowed_tenants_is_refused_before_anything(stack, allowed_only):
    allowed, outside, user, storage = allowed_only
    storage.clear()
    counts, kv, jwks = dict(stack.entra.counts), sum(stack.keyvault.requests.values()), \
        stack.entra.jwks_fetches[outside]
    key = {"tenant_id": outside, "user_id": user}
    token = stack.user_token(outside, user)

    answers = [stack.call("store_token", body={"scopes": SCOPES}, token=token),
               stack.call("redeem_token", body={"scopes": SCOPES}, token=token),
               stack.call("describe_token", method="GET", token=token, route_params=key),
               stack.call("forget_token", method="DELETE", token=token, route_params=key),
               # An app of the outside tenant, even listed, is refused the same way.
               stack.call("redeem_token", body={"scopes": SCOPES, **key},
                          token=stack.entra.app_token(outside, CALLER_APP,
                                                      roles=["TokenVault.Redeem"]))]

    assert [(a.status_code, body(a)["code"]) for a in answers] == [(401, "invalid_token")] * 5
    assert storage.seen == []
    assert (stack.entra.counts["obo"], stack.entra.counts["refresh"]) == (counts.get("obo", 0),
                                                                          counts.get("refresh", 0))
    assert sum(stack.keyvault.requests.values()) == kv
    assert stack.entra.jwks_fetches[outside] == jwks  # refused before the keys were fetched
    assert stack.records.get(RecordKey(outside, user)).ciphertext  # still stored, untouched


def test_the_allowed_tenant_still_works_beside_the_refused_one(stack, allowed_only):
    allowed = allowed_only[0]
    user = new_id()
    assert stack.store(allowed, user).status_code == 201
    assert stack.redeem(allowed, user).status_code == 200
