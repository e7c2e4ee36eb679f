"""An HTTPS fake of Microsoft Graph's ``GET /v1.0/me`` for the samples' integration tests.

It checks each bearer token as Graph would: signed by the Entra fake (a published key), for
the audience ``https://graph.microsoft.com``, not expired, delegated with ``User.Read``; it
answers the profile of the token's user, or 401 with Graph's ``WWW-Authenticate``. It counts
the tokens it accepted per user (``served``).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler

import jwt

from tokenvault.dev.tls import HTTPSServer, TestCA

__all__ = ["FakeGraph", "GRAPH_AUDIENCE"]

GRAPH_AUDIENCE = "https://graph.microsoft.com"
_CHALLENGE = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
              'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"')


class FakeGraph:
    def __init__(self, ca: TestCA, entra) -> None:
        self.entra = entra
        self._lock = threading.Lock()
        self.served: Counter[tuple[str, str]] = Counter()
        self.refused = 0
        self._server = HTTPSServer(_Handler, ca, self)
        self.url = self._server.url

    def __enter__(self) -> "FakeGraph":
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()

    def reset(self) -> None:
        with self._lock:
            self.served.clear()
            self.refused = 0

    def answer(self, method: str, path: str, authorization: str) -> tuple[int, dict, dict]:
        if (method, path) != ("GET", "/v1.0/me"):
            return 404, {"error": {"code": "Request_ResourceNotFound"}}, {}
        claims = self._claims(authorization)
        if claims is None:
            with self._lock:
                self.refused += 1
            return 401, {"error": {"code": "InvalidAuthenticationToken"}}, {"WWW-Authenticate": _CHALLENGE}
        with self._lock:
            self.served[(claims["tid"], claims["oid"])] += 1
        return 200, {"id": claims["oid"], "displayName": f"User {claims['oid'][:8]}",
                     "userPrincipalName": f"{claims['oid'][:8]}@example.test"}, {}

    def _claims(self, authorization: str) -> dict | None:
        scheme, _, token = (authorization or "").partition(" ")
        try:
            key = self.entra.signing_key(jwt.get_unverified_header(token).get("kid"))
            if scheme.lower() != "bearer" or key is None:
                return None
            claims = jwt.decode(token, key.public, algorithms=["RS256"], audience=GRAPH_AUDIENCE,
                                options={"require": ["exp", "tid", "oid", "scp"]})
        except jwt.PyJWTError:
            return None
        return claims if "User.Read" in claims["scp"].split() else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base's signature
        pass

    def do_GET(self) -> None:  # noqa: N802
        graph: FakeGraph = self.server.state  # type: ignore[attr-defined]
        status, body, headers = graph.answer("GET", self.path.split("?")[0],
                                             self.headers.get("Authorization", ""))
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Type": "application/json",
                            "Content-Length": str(len(data))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
