"""The token endpoint of the Entra fake (``tokenvault.dev.entra_fake``): client authentication,
the OBO, refresh-token and client-credentials grants, and the faults, with Entra's error
shapes (``error``, ``error_codes``, ``suberror``, ``claims``, ``Retry-After``).
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

if TYPE_CHECKING:
    from .entra_fake import FakeEntra

GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
#: Appears in every error_description the fake sends: tests assert it never reaches our
#: messages or logs (upstream text is not ours to show).
DESCRIPTION_MARKER = "fake-entra-description"
DEFAULT_CLAIMS_CHALLENGE = json.dumps(
    {"access_token": {"capolids": {"essential": True,
                                   "values": ["c1a5b3d2-0000-4000-8000-000000000001"]}}})
_OIDC = ("openid", "profile", "offline_access")
_GRANTS = {GRANT_JWT_BEARER: "obo", "refresh_token": "refresh",
           "client_credentials": "client_credentials"}
_FAULT_KINDS = ("invalid_grant", "interaction_required", "consent_required", "throttled",
                "server_error", "slow", "no_refresh_token", "invalid_scope", "scope_refused")
_LIFETIME = 3599


@dataclass
class Fault:
    """A failure the token endpoint answers instead of (or, for ``slow``, before) the grant.

    ``grant`` (obo, refresh, client_credentials), ``user`` ((tenant, oid)) and
    ``refresh_token`` narrow which requests it hits; ``times`` counts down (None: until reset).
    """

    kind: str
    grant: str | None = None
    user: tuple[str, str] | None = None
    refresh_token: str | None = field(default=None, repr=False)
    times: int | None = 1
    code: int | None = None
    claims: str | None = None
    retry_after: int = 7
    delay: float = 0.0
    hits: int = 0

    def matches(self, grant: str, user: tuple[str, str] | None, refresh_token: str | None) -> bool:
        return (self.times is None or self.times > 0) and self.grant in (None, grant) \
            and self.user in (None, user) and self.refresh_token in (None, refresh_token)


@dataclass
class Client:
    secret: str | None = None
    certificates: list[x509.Certificate] = field(default_factory=list)
    #: (issuer, subject) pairs of federated credentials, as Entra's app registration holds.
    federated: set[tuple[str, str]] = field(default_factory=set)
    roles: tuple[str, ...] = ()


@dataclass
class RefreshTokenRecord:
    tenant: str
    oid: str
    client_id: str
    scopes: tuple[str, ...]
    dead_code: int | None = None


class Refused(Exception):
    """An error answer of the token endpoint."""

    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def error(status: int, error: str, code: int, text: str, **extra: Any) -> Refused:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"error": error,
            "error_description": f"AADSTS{code}: {text} ({DESCRIPTION_MARKER}) "
                                 f"Trace ID: {trace} Correlation ID: {correlation}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": trace, "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}"}
    headers = extra.pop("headers", None)
    body.update({k: v for k, v in extra.items() if v is not None})
    return Refused(status, body, headers)


def _invalid_grant(code: int, text: str) -> Refused:
    return error(400, "invalid_grant", code, text)


def dead_grant(code: int) -> Refused:
    return _invalid_grant(code, {
        70008: "The provided authorization code or refresh token has expired due to inactivity.",
        50173: "The provided grant has expired due to it being revoked, a fresh auth token "
               "is needed.",
    }.get(code, "The grant is invalid."))


def fault_answer(fault: Fault) -> Refused:
    if fault.kind == "invalid_grant":
        return dead_grant(fault.code or 70008)
    if fault.kind == "interaction_required":
        return error(400, "interaction_required", fault.code or 50076,
                     "Due to a configuration change made by your administrator, you must use "
                     "multi-factor authentication.", suberror="basic_action",
                     claims=fault.claims or DEFAULT_CLAIMS_CHALLENGE)
    if fault.kind == "consent_required":
        return error(400, "invalid_grant", fault.code or 65001,
                     "The user or administrator has not consented to use the application.",
                     suberror="consent_required", claims=fault.claims)
    if fault.kind == "scope_refused":
        # What Entra answers when only the requested scopes are refused: the refresh token lives.
        return _invalid_grant(fault.code or 70000,
                              "The request was denied because one or more scopes requested are "
                              "unauthorized or expired. The user must first sign in and grant "
                              "the client application access to the requested scope.")
    if fault.kind == "invalid_scope":
        return error(400, "invalid_scope", fault.code or 70011,
                     "The provided request must include a valid 'scope' input parameter.")
    if fault.kind == "throttled":
        return error(429, "temporarily_unavailable", fault.code or 50196,
                     "The server is temporarily too busy.",
                     headers={"Retry-After": str(fault.retry_after)})
    return error(500, "server_error", fault.code or 50000, "There was an error issuing a token.",
                 headers={"Retry-After": str(fault.retry_after)})


class TokenEndpoint:
    """One request to ``POST /{tenant}/oauth2/v2.0/token``."""

    def __init__(self, entra: "FakeEntra", tenant: str, form: dict[str, str],
                 authorization: str | None) -> None:
        self.entra, self.tenant, self.form, self.authorization = entra, tenant, form, authorization

    def answer(self) -> dict:
        grant = _GRANTS.get(self.form.get("grant_type", ""), "other")
        if grant == "obo" and self.form.get("requested_token_use") != "on_behalf_of":
            grant = "other"
        self.entra.count(grant)
        if self.entra.latency:
            time.sleep(self.entra.latency)
        client_id = self._authenticate_client()
        user, refresh_token = self._subject(grant)
        fault = self.entra.take_fault(grant, user, refresh_token)
        omit_refresh_token = False
        if fault is not None:
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind == "no_refresh_token":
                omit_refresh_token = True
            else:
                raise fault_answer(fault)
        if grant == "obo":
            tenant, oid = self._verify_user_assertion(client_id)
            return self._grant(tenant, oid, client_id, omit_refresh_token, None)
        if grant == "refresh":
            return self._refresh(client_id, omit_refresh_token)
        if grant == "client_credentials":
            return self._client_credentials(client_id)
        raise error(400, "unsupported_grant_type", 70003, "The grant type is not supported.")

    # --- client authentication ---------------------------------------------------------------

    def _authenticate_client(self) -> str:
        client_id = self.form.get("client_id", "")
        secret = self.form.get("client_secret")
        if self.authorization and self.authorization.lower().startswith("basic "):
            decoded = base64.b64decode(self.authorization.split(None, 1)[1]).decode()
            basic_id, _, basic_secret = decoded.partition(":")
            client_id, secret = unquote_plus(basic_id), unquote_plus(basic_secret)
        client = self.entra.clients.get(client_id)
        if client is None:
            raise error(400, "unauthorized_client", 700016, "Application not found in the directory.")
        if secret is not None:
            if client.secret is None or not hmac.compare_digest(secret.encode(), client.secret.encode()):
                raise error(401, "invalid_client", 7000215, "Invalid client secret provided.")
            return client_id
        assertion = self.form.get("client_assertion")
        if assertion and self.form.get("client_assertion_type") == CLIENT_ASSERTION_TYPE:
            self._verify_client_assertion(client_id, client, assertion)
            return client_id
        raise error(401, "invalid_client", 7000218,
                    "The request body must contain 'client_assertion' or 'client_secret'.")

    def _verify_client_assertion(self, client_id: str, client: Client, assertion: str) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
            if "x5t#S256" in header or "x5t" in header:
                # A certificate credential: the assertion names the certificate by thumbprint.
                key = self._certificate_key(client, header)
                claims = jwt.decode(assertion, key, algorithms=["PS256", "RS256"],
                                    audience=self.token_endpoint,
                                    options={"require": ["exp", "iss", "sub"]})
                if claims["iss"] != client_id or claims["sub"] != client_id:
                    raise jwt.InvalidTokenError("iss/sub")
                return
            # A federated credential: a token the fake itself issued (as a managed identity's).
            signing = self.entra.signing_key(header.get("kid"))
            if signing is None:
                raise jwt.InvalidTokenError("kid")
            claims = jwt.decode(assertion, signing.public, algorithms=["RS256"],
                                audience=FEDERATION_AUDIENCE, options={"require": ["exp", "iss", "sub"]})
        except jwt.PyJWTError:
            raise error(401, "invalid_client", 700027,
                        "Client assertion failed signature validation.") from None
        if (claims["iss"], claims["sub"]) not in client.federated:
            raise error(400, "invalid_client", 70021, "No matching federated identity record found.")

    @staticmethod
    def _certificate_key(client: Client, header: dict) -> Any:
        for certificate in client.certificates:
            sha256 = base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA256())).rstrip(b"=")
            sha1 = base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA1())).rstrip(b"=")
            # msal pads the base64url thumbprint; JWS says not to: accept both.
            if str(header.get("x5t#S256", "")).rstrip("=").encode() == sha256 \
                    or str(header.get("x5t", "")).rstrip("=").encode() == sha1:
                return certificate.public_key()
        raise jwt.InvalidTokenError("no such certificate")

    @property
    def token_endpoint(self) -> str:
        return f"{self.entra.authority_host}/{self.tenant}/oauth2/v2.0/token"

    # --- grants -------------------------------------------------------------------------------

    def _subject(self, grant: str) -> tuple[tuple[str, str] | None, str | None]:
        """Who a request is about, unverified: only to aim faults."""
        if grant == "obo":
            try:
                claims = jwt.decode(self.form.get("assertion", ""), options={"verify_signature": False})
                tid, oid = claims.get("tid"), claims.get("oid")
                return ((tid, oid) if isinstance(tid, str) and isinstance(oid, str) else None), None
            except jwt.PyJWTError:
                return None, None
        if grant == "refresh":
            token = self.form.get("refresh_token")
            record = self.entra.refresh_record(token)
            return ((record.tenant, record.oid) if record else None), token
        return None, None

    def _verify_user_assertion(self, client_id: str) -> tuple[str, str]:
        assertion = self.form.get("assertion", "")
        try:
            signing = self.entra.signing_key(jwt.get_unverified_header(assertion).get("kid"))
            if signing is None:
                raise jwt.InvalidSignatureError("kid")
            claims = jwt.decode(assertion, signing.public, algorithms=["RS256"],
                                audience=[client_id, f"api://{client_id}"],
                                issuer=self.entra.issuer(self.tenant),
                                options={"require": ["exp", "tid", "oid"]})
        except jwt.ExpiredSignatureError:
            raise _invalid_grant(500133, "Assertion is not within its valid time range.") from None
        except jwt.DecodeError:
            raise _invalid_grant(50027, "JWT token is invalid or malformed.") from None
        except jwt.PyJWTError:
            raise _invalid_grant(50013, "Assertion failed signature validation.") from None
        if claims["tid"] != self.tenant or not claims.get("scp"):
            raise _invalid_grant(50013, "Assertion is not a user token of this tenant.")
        return claims["tid"], claims["oid"]

    def _refresh(self, client_id: str, omit_refresh_token: bool) -> dict:
        token = self.form.get("refresh_token", "")
        record = self.entra.refresh_record(token)
        if record is None:
            raise _invalid_grant(9002313, "Invalid request. Request is malformed or invalid.")
        if record.dead_code is not None:
            raise dead_grant(record.dead_code)
        if record.client_id != client_id or record.tenant != self.tenant:
            raise _invalid_grant(70000, "The refresh token was issued to a different client or tenant.")
        return self._grant(record.tenant, record.oid, client_id, omit_refresh_token, token)

    def _grant(self, tenant: str, oid: str, client_id: str, omit_refresh_token: bool,
               old_refresh_token: str | None) -> dict:
        requested = self.form.get("scope", "").split()
        resource_scopes = [s for s in requested if s not in _OIDC]
        resource, names = _resource(resource_scopes)
        body = {"token_type": "Bearer", "expires_in": _LIFETIME, "ext_expires_in": _LIFETIME,
                "scope": " ".join(resource_scopes + [s for s in _OIDC if s in requested]),
                "access_token": self.entra.user_token(tenant, oid, aud=resource, scp=" ".join(names),
                                                      claims={"azp": client_id})}
        if "offline_access" in requested and not omit_refresh_token:
            if old_refresh_token and not self.entra.rotate_refresh_tokens:
                body["refresh_token"] = old_refresh_token
            else:
                body["refresh_token"] = self.entra.issue_refresh_token(
                    tenant, oid, client_id=client_id, scopes=resource_scopes)
        if "openid" in requested:
            body["id_token"] = self.entra.user_token(
                tenant, oid, aud=client_id, scp=None, claims={"azp": None, "uti": None, "rh": None})
        if self.form.get("client_info") == "1":
            info = json.dumps({"uid": oid, "utid": tenant}).encode()
            body["client_info"] = base64.urlsafe_b64encode(info).rstrip(b"=").decode()
        return body

    def _client_credentials(self, client_id: str) -> dict:
        scopes = self.form.get("scope", "").split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
        resource = scopes[0][: -len("/.default")]
        token = self.entra.app_token(self.tenant, client_id, aud=resource,
                                     roles=self.entra.clients[client_id].roles)
        return {"token_type": "Bearer", "expires_in": _LIFETIME, "ext_expires_in": _LIFETIME,
                "access_token": token}


def _resource(scopes: list[str]) -> tuple[str, list[str]]:
    """Split ``https://graph.microsoft.com/User.Read`` into the resource and the scope names."""
    resource, names = "https://graph.microsoft.com", []
    for scope in scopes:
        if "/" in scope.split("://", 1)[-1]:
            resource, name = scope.rsplit("/", 1)
            names.append(name)
        else:
            names.append(scope)
    return resource, names
