"""A stand-in for Entra ID, TokenVault and Graph in one local HTTP server, for the samples' unit
tests: with it they run where only the client and a web framework are installed (no server
code). The same samples run against the real vault, identity provider fake and Graph fake in
the repository's integration tests (``tests/integration/test_client_samples.py``).

It serves
- ``GET /{tenant}/discovery/v2.0/keys``: the key its user tokens are signed with (``mint``);
- the vault's four routes: store keeps the scopes, redeem hands out a random access token,
  describe and forget; a user token reaches only its own record, an app token (``mint_app``)
  any; ``fail_next(route, status, code, ...)`` scripts the next answer of a route;
- ``GET /v1.0/me``: the profile of whoever a token it redeemed belongs to.

Every request is counted by route in ``calls``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["StandIn", "CLIENT_ID"]

CLIENT_ID = "0a0b0c0d-0000-4000-8000-00000000c11e"
_RECORD = re.compile(r"/api/tokens/([^/]+)/([^/]+)\Z")


class StandIn:
    def __init__(self, client_id: str = CLIENT_ID) -> None:
        self.client_id = client_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_hex(8)
        self._lock = threading.Lock()
        self.records: Dict[Tuple[str, str], List[str]] = {}
        self.calls: Counter = Counter()
        self._failures: Dict[str, List[tuple]] = {}
        self._issued: Dict[str, Tuple[str, str]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "StandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- tokens ----------------------------------------------------------------------------

    def mint(self, tenant: str, oid: str, *, aud: Optional[str] = None, lifetime: int = 3600,
             scp: Optional[str] = "access_as_user") -> str:
        """A user token for the web API, as Entra issues it."""
        now = int(time.time())
        claims = {"aud": aud or self.client_id, "iss": f"{self.url}/{tenant}/v2.0", "iat": now,
                  "nbf": now, "exp": now + lifetime, "tid": tenant, "oid": oid, "ver": "2.0"}
        if scp:
            claims["scp"] = scp
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})

    def mint_app(self, tenant: str, app_id: str) -> str:
        now = int(time.time())
        claims = {"aud": f"api://{self.client_id}", "iss": f"{self.url}/{tenant}/v2.0",
                  "iat": now, "nbf": now, "exp": now + 3600, "tid": tenant, "azp": app_id,
                  "idtyp": "app", "roles": ["TokenVault.Redeem"], "ver": "2.0"}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})

    def fail_next(self, route: str, status: int, code: str, *, claims: Optional[str] = None,
                  retry_after: Optional[int] = None, times: int = 1) -> None:
        """The next ``times`` calls of ``route`` (store, redeem, describe, forget) answer this."""
        with self._lock:
            self._failures.setdefault(route, []).extend([(status, code, claims, retry_after)] * times)

    # --- answers ---------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict, body: bytes) -> tuple:
        if method == "GET" and path.endswith("/discovery/v2.0/keys"):
            return 200, {"keys": [self._jwk()]}, {}
        if path == "/v1.0/me":
            return self._graph(headers)
        route, key = self._route(method, path)
        if route is None:
            return 404, {"code": "not_found"}, {}
        with self._lock:
            self.calls[route] += 1
            failure = self._failures.get(route, []) and self._failures[route].pop(0)
        caller = self._caller(headers)
        if caller is None:
            return _problem(401, "invalid_token")
        if failure:
            status, code, claims, retry_after = failure
            return _problem(status, code, claims=claims, retry_after=retry_after)
        request = json.loads(body) if body else {}
        if route in ("store", "redeem"):
            key = (request.get("tenant_id", caller[0]), request.get("user_id", caller[1]))
        if caller[1] is not None and key != caller:
            return _problem(403, "insufficient_permissions")
        with self._lock:
            if route == "store":
                self.records[key] = list(request["scopes"])
                return 201, self._record(key), {}
            if key not in self.records:
                return _problem(404, "not_found")
            if route == "redeem":
                token = "at-" + secrets.token_urlsafe(24)
                self._issued[token] = key
                return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3599,
                             "expires_on": int(time.time()) + 3599,
                             "scope": " ".join(request["scopes"])}, {}
            if route == "describe":
                return 200, self._record(key), {}
            del self.records[key]
            return 204, None, {}

    def _route(self, method: str, path: str) -> tuple:
        if (method, path) == ("POST", "/api/tokens"):
            return "store", None
        if (method, path) == ("POST", "/api/tokens/redeem"):
            return "redeem", None
        found = _RECORD.match(path)
        if found and method in ("GET", "DELETE"):
            return {"GET": "describe", "DELETE": "forget"}[method], found.groups()
        return None, None

    def _caller(self, headers: dict) -> Optional[Tuple[str, Optional[str]]]:
        """(tenant, oid) of a user token, (tenant, None) of an app token, None if invalid."""
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        try:
            claims = jwt.decode(token, self._key.public_key(), algorithms=["RS256"],
                                audience=[self.client_id, f"api://{self.client_id}"])
        except jwt.PyJWTError:
            return None
        return (claims["tid"], None) if claims.get("idtyp") == "app" else (claims["tid"], claims["oid"])

    def _record(self, key: Tuple[str, str]) -> dict:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {"tenant_id": key[0], "user_id": key[1], "client_id": self.client_id,
                "status": "active", "key_version": "v1", "scopes": self.records[key],
                "created_at": stamp, "refreshed_at": stamp}

    def _graph(self, headers: dict) -> tuple:
        token = (headers.get("authorization") or "").partition(" ")[2]
        with self._lock:
            self.calls["graph"] += 1
            owner = self._issued.get(token)
        if owner is None:
            return 401, {"error": {"code": "InvalidAuthenticationToken"}}, \
                {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return 200, {"id": owner[1], "displayName": f"User {owner[1][:8]}"}, {}

    def _jwk(self) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return {**jwk, "kid": self._kid, "use": "sig", "alg": "RS256"}


def _problem(status: int, code: str, *, claims: Optional[str] = None,
             retry_after: Optional[int] = None) -> tuple:
    body = {"type": f"urn:tokenvault:problem:{code}", "title": code, "status": status,
            "code": code, "detail": code.replace("_", " "), "correlation_id": str(uuid.uuid4())}
    headers = {"Content-Type": "application/problem+json"}
    if claims:
        body["claims"] = claims
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return status, body, headers


def _handler(stand_in: StandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, extra = stand_in.answer(self.command, self.path.split("?")[0],
                                                     headers, body)
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            extra = dict(extra)
            if data:
                self.send_header("Content-Type", extra.pop("Content-Type", "application/json"))
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
            pass

    return Handler
