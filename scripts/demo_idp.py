"""LOCAL DEMO ONLY: an identity provider that plays Entra ID for ``scripts/run``.

It is the test suite's HTTPS fake of Entra ID (``tests.support.entra.FakeEntra``: OpenID
discovery, JWKS, the token endpoint with OBO and refresh, run against by the unmodified msal
and PyJWT) plus one endpoint that exists nowhere else, so a developer can try the API with
curl and no Azure tenant:

    POST /_demo/user-token   form fields tid, oid   →  text/plain: a user access token for the
                                                       app (audience TOKENVAULT_CLIENT_ID)

Anyone who can reach it can mint tokens for any user: it listens on 127.0.0.1 only, and the
app trusts it only because ``scripts/run`` points ``TOKENVAULT_AUTHORITY_HOST`` and
``REQUESTS_CA_BUNDLE`` at it. Never point a deployed app at it.

Its TLS certificate comes from a throwaway CA written under ``<folder>/tls`` (a new one per
start), so the ``--cacert`` path that ``scripts/run`` prints stays valid while it runs.
"""

from __future__ import annotations

import json
import ssl
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.support.entra import FakeEntra
from tests.support.https import HTTPSServer, TestCA
from tokenvault.model import is_valid_id

__all__ = ["DemoIdentityProvider", "MINT_PATH"]

MINT_PATH = "/_demo/user-token"


class DemoIdentityProvider:
    """``DemoIdentityProvider(Path(".local"), client_id=..., client_secret=...).start()``"""

    def __init__(self, folder: Path, *, client_id: str, client_secret: str) -> None:
        self.ca = TestCA(Path(folder) / "tls")
        self.ca_bundle = self.ca.bundle
        self.entra = FakeEntra(self.ca, client_id=client_id, client_secret=client_secret)
        # The fake's own server is not used (it cannot serve text/plain): close its socket.
        self.entra.start()
        self.entra.stop()
        # One server answers both the Entra endpoints (through the fake's own `answer`) and the
        # mint endpoint, so the authority host and the mint URL are one origin.
        self._server = HTTPSServer(_Handler, self.ca, self.entra)
        self.url = self._server.url
        self.entra.authority_host = self.url  # issuer, discovery and token endpoint live here
        self._started = False

    def start(self) -> "DemoIdentityProvider":
        self._server.start()
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._server.stop()

    def mint_user_token(self, tenant_id: str, user_id: str) -> str:
        """A delegated access token for the app, as Entra would issue it after a sign-in."""
        return self.entra.user_token(tenant_id, user_id)

    def __enter__(self) -> "DemoIdentityProvider":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base's signature
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        entra: FakeEntra = self.server.state  # type: ignore[attr-defined]
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            path = urlsplit(self.path).path
            if path == MINT_PATH:
                self._mint(entra, method, form)
                return
            status, body, headers = entra.answer(method, path, form,
                                                 self.headers.get("Authorization"))
            self._send(status, json.dumps(body).encode(), "application/json", headers)
        except (ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True

    def _mint(self, entra: FakeEntra, method: str, form: dict[str, str]) -> None:
        if method != "POST":
            self._send(405, b"POST tid=<tenant id>&oid=<user object id>\n", "text/plain",
                       {"Allow": "POST"})
            return
        tenant, user = form.get("tid", ""), form.get("oid", "")
        if not (is_valid_id(tenant) and is_valid_id(user)):
            self._send(400, b"tid and oid must be lower-case GUIDs\n", "text/plain")
            return
        self._send(200, entra.user_token(tenant, user).encode(), "text/plain")

    def _send(self, status: int, data: bytes, media_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.send_header("Content-Type", f"{media_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)
