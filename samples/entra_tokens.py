"""What both samples share, free of any web framework: checking the bearer tokens a web API
receives from Entra ID, and the ``WWW-Authenticate`` challenges it answers with.

The checks are TokenVault's own (``tokenvault/adapters/caller_tokens.py``), cut to what a web
API needs, with PyJWT: RS256 only, a ``kid`` from the tenant's published keys
(``{authority}/{tid}/discovery/v2.0/keys``, fetched and cached by ``PyJWKClient``), the issuer
``{authority}/{tid}/v2.0``, the audience (the API's client id or ``api://<client id>``), the
expiry with a minute of leeway, and a delegated token (``scp``, an ``oid``) — app tokens are
not users. The token the API received is exactly what it hands TokenVault: the vault accepts
user tokens whose audience is its ``TOKENVAULT_CLIENT_ID``, which is this API's client id.
"""

from __future__ import annotations

import base64
import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Optional

import jwt

__all__ = ["User", "InvalidBearer", "KeysUnavailable", "EntraTokenValidator", "challenge",
           "PUBLIC_AUTHORITY"]

PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_MAX_TOKEN = 16 * 1024
_MAX_TENANTS = 100


@dataclass(frozen=True)
class User:
    """The caller, from a valid delegated token. ``token`` is the token as received."""

    tenant_id: str
    user_id: str
    token: str = field(repr=False)

    @property
    def key(self) -> str:
        return f"{self.tenant_id}/{self.user_id}"


class InvalidBearer(Exception):
    """The bearer token is missing or invalid (deliberately without saying why)."""


class KeysUnavailable(Exception):
    """The tenant's signing keys could not be fetched: try again later."""


class EntraTokenValidator:
    """``EntraTokenValidator(client_id=...).user(request.headers.get("Authorization"))``

    ``ssl_context`` is for a local identity provider with its own CA; ``allowed_tenants``
    (optional) refuses other tenants before any network call.
    """

    def __init__(self, *, client_id: str, authority_host: str = PUBLIC_AUTHORITY,
                 allowed_tenants: FrozenSet[str] = frozenset(),
                 ssl_context: Optional[ssl.SSLContext] = None, leeway: float = 60) -> None:
        self._audiences = [client_id, f"api://{client_id}"]
        self._authority = authority_host.rstrip("/")
        self._allowed = allowed_tenants
        self._ssl = ssl_context
        self._leeway = leeway
        self._lock = threading.Lock()
        self._keys: Dict[str, jwt.PyJWKClient] = {}

    def user(self, authorization: Optional[str]) -> User:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            tenant = jwt.decode(token, options={"verify_signature": False}).get("tid")
        except jwt.PyJWTError:
            raise InvalidBearer() from None
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise InvalidBearer()
        if not isinstance(tenant, str) or not _GUID.match(tenant) \
                or (self._allowed and tenant not in self._allowed):
            raise InvalidBearer()
        try:
            key = self._jwks(tenant).get_signing_key(header["kid"]).key
        except jwt.PyJWKClientConnectionError:
            raise KeysUnavailable() from None
        except jwt.PyJWKClientError:
            raise InvalidBearer() from None  # no such kid in the tenant's keys
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=self._audiences,
                                issuer=f"{self._authority}/{tenant}/v2.0", leeway=self._leeway,
                                options={"require": ["exp", "iss", "aud", "tid", "oid"]})
        except jwt.PyJWTError:
            raise InvalidBearer() from None
        if not claims.get("scp") or claims.get("idtyp") == "app" \
                or not _GUID.match(str(claims["oid"])) or claims["tid"] != tenant:
            raise InvalidBearer()
        return User(tenant_id=tenant, user_id=claims["oid"], token=token)

    def _jwks(self, tenant: str) -> jwt.PyJWKClient:
        with self._lock:
            client = self._keys.get(tenant)
            if client is None:
                if len(self._keys) >= _MAX_TENANTS:
                    self._keys.clear()
                client = self._keys[tenant] = jwt.PyJWKClient(
                    f"{self._authority}/{tenant}/discovery/v2.0/keys", cache_keys=True,
                    lifespan=3600, timeout=5, ssl_context=self._ssl)
            return client


def _bearer(authorization: Optional[str]) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN or token.count(".") != 2:
        raise InvalidBearer()
    return token


def challenge(*, authority_host: str = PUBLIC_AUTHORITY, claims: Optional[str] = None,
              error: str = "invalid_token", description: Optional[str] = None) -> str:
    """A ``WWW-Authenticate`` value that tells the client app to sign the user in again.

    With ``claims`` it is a claims challenge in the format Microsoft documents
    (https://learn.microsoft.com/entra/identity-platform/claims-challenge): HTTP 401,
    ``error="insufficient_claims"`` and the claims JSON in base64; the client app passes the
    claims to its token request (MSAL: ``claims_challenge``), which brings the user to sign in.
    """
    parts = ['realm=""', f'authorization_uri="{authority_host.rstrip("/")}/common/oauth2/authorize"']
    if claims:
        encoded = base64.b64encode(claims.encode()).decode()
        parts += ['error="insufficient_claims"', f'claims="{encoded}"']
    else:
        parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{description}"')
    return "Bearer " + ", ".join(parts)
