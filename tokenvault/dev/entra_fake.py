"""An HTTPS fake of the Entra ID endpoints that msal and PyJWT call, run against unmodified.

Development code (never deployed): the test suite's Entra, and the local identity provider
of ``scripts/run`` (scripts/demo_idp.py), which must not depend on the tests.

Per tenant (any lower-case GUID in the path) it serves::

    GET  /{tenant}/v2.0/.well-known/openid-configuration
    GET  /{tenant}/discovery/v2.0/keys                     JWKS (RS256; keys can be rolled)
    GET  /common/discovery/v2.0/keys                       the same keys, issuer as a {tenantid} template
    POST /{tenant}/oauth2/v2.0/token                       OBO (jwt-bearer), refresh_token,
                                                           client_credentials

It behaves like Entra where TokenVault depends on it: the OBO assertion is verified with the
fake's own keys (audience = the client, expiry, tenant = the authority's); a refresh token
comes back only when ``offline_access`` is asked for; each refresh returns a new refresh token
and the old one stays valid; clients authenticate with a secret or a ``client_assertion`` JWT
(signed by a registered certificate, or a federated token the fake itself issued).

Faults are set per test with ``fault()``, aimed at a grant kind, a user or a refresh token,
for the next N matching requests. Every secret the fake hands out is remembered, so a test can
scan logs and outputs for leaks (``issued_secrets()``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .entra_fake_grants import (
    _FAULT_KINDS,
    DESCRIPTION_MARKER,
    FEDERATION_AUDIENCE,
    GRANT_JWT_BEARER,
    Client,
    Fault,
    RefreshTokenRecord,
    Refused,
    TokenEndpoint,
    error,
)
from .tls import HTTPSServer, TestCA

__all__ = ["FakeEntra", "Fault", "SigningKey", "DESCRIPTION_MARKER", "GRANT_JWT_BEARER",
           "FEDERATION_AUDIENCE"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(number: int) -> str:
    return _b64url(number.to_bytes((number.bit_length() + 7) // 8, "big"))


class SigningKey:
    """One RSA key the fake signs with; ``jwk`` is its public half as JWKS lists it."""

    def __init__(self, private: rsa.RSAPrivateKey | None = None, kid: str | None = None) -> None:
        self.private = private or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public = self.private.public_key()
        self.kid = kid or _b64url(secrets.token_bytes(15))
        numbers = self.public.public_numbers()
        self.jwk = {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                    "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)


class FakeEntra:
    """The fake identity provider. ``authority_host`` is what TokenVault's setting points at."""

    #: Called with every secret the fake issues or knows. The test suite's leak check sets it
    #: (tests/support/leaks.py) and then searches all output for those secrets.
    on_issue: ClassVar[Callable[[str], None]] = staticmethod(lambda secret: None)

    def __init__(self, ca: TestCA, *, client_id: str, client_secret: str) -> None:
        self._lock = threading.RLock()
        self._server = HTTPSServer(_Handler, ca, self)
        self.authority_host = self._server.url
        self.client_id = client_id
        self.clients: dict[str, Client] = {}
        self._issued: set[str] = set()
        self._keys: list[SigningKey] = [SigningKey()]
        self._refresh_tokens: dict[str, RefreshTokenRecord] = {}
        self.register_client(client_id, secret=client_secret)
        self.reset()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FakeEntra":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "FakeEntra":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget faults, counters and modes (keys, clients and tokens stay)."""
        with self._lock:
            self.faults: list[Fault] = []
            self.counts: Counter[str] = Counter()
            self.jwks_fetches: Counter[str] = Counter()
            self.requests: list[tuple[str, str]] = []
            self.latency = 0.0
            self.rotate_refresh_tokens = True
            #: kid → the issuer the common key set names for it instead of the template
            #: (as for a key that signs for one tenant only).
            self.key_issuers: dict[str, str] = {}
            #: token requests being answered now, and the most ever at once, per tenant.
            self.in_flight: Counter[str] = Counter()
            self.most_in_flight: Counter[str] = Counter()

    # --- registration and keys -----------------------------------------------------------------

    def register_client(self, client_id: str, *, secret: str | None = None,
                        certificate: x509.Certificate | None = None,
                        federated: tuple[str, str] | None = None,
                        roles: Iterable[str] = ()) -> None:
        with self._lock:
            client = self.clients.setdefault(client_id, Client())
            if secret:
                client.secret = secret
                self._remember(secret)
            if certificate is not None:
                client.certificates.append(certificate)
            if federated:
                client.federated.add(federated)
            client.roles = tuple(roles) or client.roles

    @property
    def current_key(self) -> SigningKey:
        return self._keys[-1]

    def add_key(self, key: SigningKey | None = None) -> SigningKey:
        """Publish a new signing key and make it the one new tokens are signed with."""
        key = key or SigningKey()
        with self._lock:
            self._keys.append(key)
        return key

    def drop_key(self, kid: str) -> None:
        with self._lock:
            self._keys = [k for k in self._keys if k.kid != kid] or [SigningKey()]

    def roll_keys(self) -> SigningKey:
        """Entra's key roll: a new key becomes current and the old ones leave the JWKS."""
        old = [k.kid for k in self._keys]
        new = self.add_key()
        for kid in old:
            self.drop_key(kid)
        return new

    def signing_key(self, kid: object) -> SigningKey | None:
        """The published key with this kid (None once dropped)."""
        with self._lock:
            return next((k for k in self._keys if k.kid == kid), None)

    def public_pem(self, kid: str | None = None) -> bytes:
        key = self.signing_key(kid) if kid else self.current_key
        assert key is not None
        return key.public_pem()

    # --- tokens for tests ----------------------------------------------------------------------

    def issuer(self, tenant: str) -> str:
        return f"{self.authority_host}/{tenant}/v2.0"

    def user_token(self, tenant: str, oid: str, *, aud: str | None = None,
                   scp: str | None = "access_as_user", claims: dict | None = None,
                   headers: dict | None = None, key: SigningKey | None = None,
                   lifetime: int = 3600, now: float | None = None) -> str:
        """A delegated access token for our API, as Entra issues it (v2). A ``None`` value in
        ``claims`` or ``headers`` removes that entry."""
        issued = int(time.time() if now is None else now)
        payload = {"aud": aud or self.client_id, "iss": self.issuer(tenant), "iat": issued,
                   "nbf": issued, "exp": issued + lifetime, "tid": tenant, "oid": oid,
                   "sub": _b64url(hashlib.sha256(f"{oid}{aud}".encode()).digest()[:24]),
                   "scp": scp, "azp": "5f1c2b7e-0000-4000-8000-00000000f00d", "azpacr": "0",
                   "ver": "2.0", "name": "Test User", "preferred_username": f"{oid[:8]}@example.test",
                   "uti": _b64url(secrets.token_bytes(16)), "rh": "0.fake."}
        return self._sign(payload, claims, headers, key)

    def app_token(self, tenant: str, app_id: str, *, roles: Iterable[str] = (),
                  aud: str | None = None, ver: str = "2.0", claims: dict | None = None,
                  headers: dict | None = None, key: SigningKey | None = None,
                  lifetime: int = 3600, now: float | None = None) -> str:
        """An app-only access token (client credentials): ``azp`` in v2, ``appid`` in v1."""
        issued = int(time.time() if now is None else now)
        principal = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{app_id}"))
        payload = {"aud": aud or self.client_id, "iat": issued, "nbf": issued,
                   "exp": issued + lifetime, "tid": tenant, "oid": principal, "sub": principal,
                   "idtyp": "app", "ver": ver, "uti": _b64url(secrets.token_bytes(16))}
        if roles:
            payload["roles"] = list(roles)
        if ver == "1.0":
            payload.update(iss=f"https://sts.windows.net/{tenant}/", appid=app_id, appidacr="1")
        else:
            payload.update(iss=self.issuer(tenant), azp=app_id, azpacr="1")
        return self._sign(payload, claims, headers, key)

    def _sign(self, payload: dict, claims: dict | None, headers: dict | None,
              key: SigningKey | None) -> str:
        key = key or self.current_key
        payload = {k: v for k, v in {**payload, **(claims or {})}.items() if v is not None}
        header = {k: v for k, v in {"kid": key.kid, **(headers or {})}.items() if v is not None}
        token = jwt.encode(payload, key.private, algorithm="RS256", headers=header)
        self._remember(token)
        return token

    def issue_refresh_token(self, tenant: str, oid: str, *, client_id: str | None = None,
                            scopes: Iterable[str] = ("https://graph.microsoft.com/User.Read",)) -> str:
        """A live refresh token, as if an earlier OBO had returned it."""
        token = "1.fake." + _b64url(secrets.token_bytes(48))
        with self._lock:
            self._refresh_tokens[token] = RefreshTokenRecord(tenant, oid, client_id or self.client_id,
                                                        tuple(scopes))
            self._remember(token)
        return token

    def refresh_record(self, token: str | None) -> RefreshTokenRecord | None:
        with self._lock:
            return self._refresh_tokens.get(token) if token else None

    def refresh_token_valid(self, token: str) -> bool:
        record = self.refresh_record(token)
        return record is not None and record.dead_code is None

    def kill_user(self, tenant: str, oid: str, code: int = 50173) -> int:
        """Revoke every refresh token of the user, as an admin password reset does."""
        with self._lock:
            doomed = [r for r in self._refresh_tokens.values() if (r.tenant, r.oid) == (tenant, oid)]
            for record in doomed:
                record.dead_code = code
            return len(doomed)

    def _remember(self, secret: str) -> None:
        with self._lock:
            self._issued.add(secret)
        FakeEntra.on_issue(secret)

    def issued_secrets(self) -> frozenset[str]:
        """Every token the fake issued or minted, and every client secret it knows."""
        with self._lock:
            return frozenset(self._issued)

    def fault(self, kind: str, **match: Any) -> Fault:
        """Make the next matching token request(s) fail; see ``Fault`` for the targeting."""
        if kind not in _FAULT_KINDS:
            raise ValueError(kind)
        fault = Fault(kind, **match)
        with self._lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, grant: str, user: tuple[str, str] | None,
                   refresh_token: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(grant, user, refresh_token):
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    @contextmanager
    def serving(self, tenant: str) -> Iterator[None]:
        """Around one token request of ``tenant``: counts how many are answered at once."""
        with self._lock:
            self.in_flight[tenant] += 1
            self.most_in_flight[tenant] = max(self.most_in_flight[tenant], self.in_flight[tenant])
        try:
            yield
        finally:
            with self._lock:
                self.in_flight[tenant] -= 1

    # --- the endpoints -------------------------------------------------------------------------

    def answer(self, method: str, path: str, form: dict[str, str],
               authorization: str | None) -> tuple[int, dict | str, dict]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        with self._lock:
            self.requests.append((method, path))
        tenant = parts[0] if parts else ""
        rest = "/".join(parts[1:])
        if method == "GET" and tenant == "common" and rest == "discovery/v2.0/keys":
            # Entra's common key set signs every tenant's tokens; each key names the issuer
            # as a template (https://learn.microsoft.com/entra/identity-platform/access-tokens).
            with self._lock:
                self.counts["jwks"] += 1
                self.jwks_fetches[tenant] += 1
                return 200, {"keys": [dict(k.jwk, issuer=self.key_issuers.get(
                    k.kid, self.issuer("{tenantid}"))) for k in self._keys]}, {}
        try:
            uuid.UUID(tenant)
        except ValueError:
            return 400, error(400, "invalid_tenant", 90002, "Tenant not found.").body, {}
        if method == "GET" and rest == "v2.0/.well-known/openid-configuration":
            self.count("discovery")
            return 200, self._openid_configuration(tenant), {}
        if method == "GET" and rest == "discovery/v2.0/keys":
            with self._lock:
                self.counts["jwks"] += 1
                self.jwks_fetches[tenant] += 1
                return 200, {"keys": [dict(k.jwk, issuer=self.issuer(tenant)) for k in self._keys]}, {}
        if method == "POST" and rest == "oauth2/v2.0/token":
            try:
                with self.serving(tenant):
                    return 200, TokenEndpoint(self, tenant, form, authorization).answer(), {}
            except Refused as refusal:
                return refusal.status, refusal.body, refusal.headers
        return 404, {"error": "not_found"}, {}

    def _openid_configuration(self, tenant: str) -> dict:
        base = f"{self.authority_host}/{tenant}"
        return {
            "issuer": self.issuer(tenant),
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "oid", "tid"],
            "tenant_region_scope": "EU", "cloud_instance_name": "microsoftonline.com",
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, each answer would wait for the
    # client's delayed ACK (~40 ms) and the latency figures would measure that.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet; tests read counters
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
            status, body, headers = entra.answer(method, urlsplit(self.path).path, form,
                                                 self.headers.get("Authorization"))
            # Entra answers JSON; a str body is plain text (the local demo's mint endpoint).
            plain = isinstance(body, str)
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, str(value))
            self.send_header("Content-Type", "text/plain; charset=utf-8" if plain
                             else "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)
        except (ConnectionError, ssl.SSLError, OSError):
            # The client gave up (a timeout test, usually): nothing left to answer.
            self.close_connection = True
