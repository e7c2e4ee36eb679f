"""Caller-token validation: a bearer JWT from Entra ID becomes a ``Caller``, or ``InvalidToken``.

The checks, cheapest first, so a forged token costs us as little as possible and never makes
us fetch anything it chose:

1. ``Authorization: Bearer <three base64url segments>``, at most 16 KiB.
2. Header ``alg`` is RS256 (never ``none``, HS*, or anything the token picks) and ``kid`` is
   set. ``jku``, ``x5u``, ``jwk`` and ``x5c`` are ignored: keys come only from our authority.
3. ``tid`` is a lower-case GUID and, when ``allowed_tenants`` is set, one of them or the home
   tenant of a listed caller app — before any network call.
4. The signing key is the one with that ``kid`` in Entra's key set at the *common* endpoint
   (``{authority_host}/common/discovery/v2.0/keys``). One key set serves every tenant, so a
   token naming a tenant we have never seen costs nothing more than one naming a known one.
   An unknown ``kid`` refetches the set at most once per ``refetch_interval`` for all tenants
   together, however many forged tokens arrive; a key Entra withdraws stops verifying when the
   set is re-read (at least daily).
5. Signature, issuer ``{authority_host}/{tid}/v2.0`` (plus the v1 ``sts.windows.net`` issuer
   for the public cloud only) — and, when the key carries an ``issuer`` (template), that issuer
   with the token's ``tid`` filled in must be one of the tenant's — audience ``client_id`` or ``api://client_id``,
   ``exp``/``nbf`` against the injected clock with at most five minutes of leeway.
6. Delegated or app: a user token has ``scp`` (and ``idtyp`` is not ``app``) and an ``oid``;
   an app token has ``idtyp: app`` or roles without ``scp``, and its app id in ``azp`` (v2) or
   ``appid`` (v1).

Why one key set is sound: Entra signs the tokens of every tenant with the keys it publishes at
the common endpoint (apps with their own signing keys aside — TokenVault's registration has
none, and must not get one: https://learn.microsoft.com/entra/identity-platform/signing-key-rollover).
A signature proves the token came from Entra; *which* tenant issued it is the ``tid`` and
``iss`` claims, and those are checked after the signature, against each other and against the
key's issuer template. A per-tenant key set bought nothing but a fetch per tenant — the fetch
a flood of forged tokens with random ``tid`` values used to exhaust the budget with, locking
out real users of new tenants.

Every failure is one ``InvalidToken`` without detail; the reason goes to the log as a short
code, never with the token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import jwt
import requests

from ..clouds import PUBLIC_CLOUD
from ..errors import InvalidToken, UpstreamUnavailable
from ..model import Caller, CallerKind, is_valid_id
from ..sensitive import Sensitive
from ..singleflight import SingleFlight
from .upstream import retry_after_of

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["CallerTokenValidator"]

log = logging.getLogger("tokenvault.adapters.caller_tokens")

MAX_TOKEN_LENGTH = 16 * 1024
MAX_LEEWAY = 300.0
_ALGORITHM = "RS256"
# Headers that would make a JOSE library do something other than verify one compact JWS
# with the key we chose.
_REFUSED_HEADERS = ("crit", "b64", "zip", "enc")
# After a fetch that failed for a passing reason, try again this soon rather than wait out
# the whole refetch interval.
_RETRY_AFTER_FAILURE = 10.0
_TENANT_PLACEHOLDER = "{tenantid}"
# A key Entra withdraws (an emergency roll) must stop verifying: cached keys are re-read
# this often even when every kid is known.
_MAX_KEY_AGE = 24 * 3600.0


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallerTokenValidator:
    """The ``Authenticate`` callable of ``tokenvault.http``: raw Authorization header → Caller.

    Fetching JWKS needs no role: the keys document is public.
    """

    def __init__(self, *, client_id: str, authority_host: str,
                 allowed_tenants: frozenset[str] = frozenset(),
                 caller_tenants: frozenset[str] = frozenset(),
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, refetch_interval: float = 300,
                 leeway: float = MAX_LEEWAY, timeout: float = 5) -> None:
        """``allowed_tenants``: the customer tenants (empty: any); ``caller_tenants``: the home
        tenants of the listed caller apps, whose tokens are let through to be checked further
        even when they are not customer tenants."""
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError("leeway must be between 0 and 300 seconds")
        self._audiences = (client_id, f"api://{client_id}")
        self._host = authority_host.rstrip("/")
        self._tenants = allowed_tenants | caller_tenants if allowed_tenants else frozenset()
        self._clock = clock
        self._leeway = leeway
        self._keys = _KeySet(f"{self._host}/common/discovery/v2.0/keys",
                             session or requests.Session(), clock=clock,
                             refetch_interval=refetch_interval, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: "Settings",
                      session: requests.Session | None = None) -> "CallerTokenValidator":
        return cls(client_id=settings.client_id, authority_host=settings.authority_host,
                   allowed_tenants=settings.allowed_tenants,
                   caller_tenants=frozenset(c.tenant_id for c in settings.redeem_callers),
                   session=session)

    @property
    def key_fetches(self) -> int:
        """How often the key set was fetched (for tests and benchmarks)."""
        return self._keys.fetches

    def __call__(self, authorization: str | None) -> Caller:
        """Validate the bearer token of an ``Authorization`` header.

        :raises InvalidToken: for every kind of bad token, without saying which.
        :raises UpstreamUnavailable: the tenant's keys could not be fetched (Entra down).
        """
        try:
            return self._validate(authorization)
        except _Rejected as rejected:
            log.info("bearer token rejected: %s", rejected.reason)
            raise InvalidToken() from None

    def _validate(self, authorization: str | None) -> Caller:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _Rejected("malformed") from None
        if header.get("alg") != _ALGORITHM:
            raise _Rejected("algorithm")
        if any(name in header for name in _REFUSED_HEADERS):
            raise _Rejected("header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _Rejected("kid_missing")
        tenant = unverified.get("tid")
        if not is_valid_id(tenant):
            raise _Rejected("tenant_invalid")
        if self._tenants and tenant not in self._tenants:
            raise _Rejected("tenant_not_allowed")
        key, issuer_template = self._keys.key(kid)
        claims = self._verify(token, key, tenant)
        # A key that names an issuer signs for that issuer only: with the template filled in
        # with the token's tenant it must be an issuer of that tenant (v1 tokens carry another
        # form of the same tenant's issuer than the key names).
        if issuer_template is not None \
                and issuer_template.replace(_TENANT_PLACEHOLDER, tenant) not in self._issuers(tenant):
            raise _Rejected("key_issuer")
        return _caller(claims, token)

    def _verify(self, token: str, key: jwt.PyJWK, tenant: str) -> dict:
        try:
            claims = jwt.decode(
                token, key, algorithms=[_ALGORITHM], audience=self._audiences,
                issuer=self._issuers(tenant),
                # Time is checked below against our clock; PyJWT only reads the system's.
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "require": ["exp", "iss", "aud", "tid"]})
        except jwt.InvalidSignatureError:
            raise _Rejected("signature") from None
        except jwt.InvalidAudienceError:
            raise _Rejected("audience") from None
        except jwt.InvalidIssuerError:
            raise _Rejected("issuer") from None
        except jwt.MissingRequiredClaimError:
            raise _Rejected("claim_missing") from None
        except jwt.PyJWTError:
            raise _Rejected("malformed") from None
        if claims["tid"] != tenant:
            raise _Rejected("tenant_invalid")
        now = self._clock()
        expires, not_before = claims["exp"], claims.get("nbf", 0)
        if not isinstance(expires, int | float) or not isinstance(not_before, int | float):
            raise _Rejected("malformed")
        if now > expires + self._leeway:
            raise _Rejected("expired")
        if now + self._leeway < not_before:
            raise _Rejected("not_yet_valid")
        return claims

    def _issuers(self, tenant: str) -> tuple[str, ...]:
        issuers: tuple[str, ...] = (f"{self._host}/{tenant}/v2.0",)
        if self._host == PUBLIC_CLOUD:
            # v1 tokens (an API whose manifest asks for them) carry the v1 issuer; it is
            # Microsoft's, so it is accepted only when we trust Microsoft's public cloud.
            issuers += (f"https://sts.windows.net/{tenant}/",)
        return issuers


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise _Rejected("missing")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise _Rejected("scheme")
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise _Rejected("malformed")
    return token


def _caller(claims: dict, token: str) -> Caller:
    tenant = claims["tid"]
    scp, roles = claims.get("scp"), claims.get("roles") or []
    if (scp is not None and not isinstance(scp, str)) or not isinstance(roles, list) \
            or not all(isinstance(role, str) for role in roles):
        raise _Rejected("malformed")
    app_id = claims.get("azp") if claims.get("ver") == "2.0" else claims.get("appid")
    app_id = app_id.lower() if isinstance(app_id, str) else None
    if claims.get("idtyp") == "app" or (roles and not scp):
        if not is_valid_id(app_id):
            raise _Rejected("app_id")
        return Caller(kind=CallerKind.APP, tenant_id=tenant, app_id=app_id,
                      roles=frozenset(roles))
    if not scp:
        raise _Rejected("kind")
    oid = claims.get("oid")
    if not is_valid_id(oid):
        raise _Rejected("oid")
    return Caller(kind=CallerKind.USER, tenant_id=tenant, object_id=oid,
                  app_id=app_id if is_valid_id(app_id) else None, roles=frozenset(roles),
                  scopes=frozenset(scp.split()), assertion=Sensitive(token))


class _KeySet:
    """Entra's signing keys from one JWKS document, fetched on first use and on an unknown
    ``kid`` at most once per ``refetch_interval``, and re-read when older than a day."""

    def __init__(self, url: str, session: requests.Session, *, clock: Callable[[], float],
                 refetch_interval: float, timeout: float) -> None:
        self._url = url
        self._session = session
        self._clock = clock
        self._interval = refetch_interval
        self._timeout = timeout
        self._keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        self._fetched_at = float("-inf")
        self._next_fetch = float("-inf")
        self._lock = threading.Lock()
        self._flight: SingleFlight[None] = SingleFlight()
        self.fetches = 0

    def key(self, kid: str) -> tuple[jwt.PyJWK, str | None]:
        """The key with ``kid`` and its issuer template (None: the key names none)."""
        now = self._clock()
        known = self._keys.get(kid)
        if known is not None and now - self._fetched_at < _MAX_KEY_AGE:
            return known
        try:
            # Concurrent requests share one fetch.
            self._flight.do("keys", lambda: self._refetch(now))
        except UpstreamUnavailable:
            if known is not None:
                return known  # stale but known: Entra being down is no reason to refuse
            raise
        found = self._keys.get(kid)
        if found is None:
            raise _Rejected("kid_unknown")
        return found

    def _refetch(self, now: float) -> None:
        with self._lock:
            stale = now - self._fetched_at >= _MAX_KEY_AGE
            if not stale and now < self._next_fetch:
                return  # an unknown kid within the interval: the set we have is the answer
            # The first fetch leaves one refetch of the interval available, so a key rolled
            # just after we first looked is picked up at once.
            first = self._fetched_at == float("-inf")
            self._next_fetch = now if first else now + self._interval
            self.fetches += 1
        try:
            keys = self._fetch()
        except UpstreamUnavailable:
            with self._lock:
                self._next_fetch = now + min(self._interval, _RETRY_AFTER_FAILURE)
            raise
        with self._lock:
            self._keys, self._fetched_at = keys, now
        log.info("fetched Entra's signing keys (%d keys)", len(keys))

    def _fetch(self) -> dict[str, tuple[jwt.PyJWK, str | None]]:
        try:
            response = self._session.get(self._url, timeout=self._timeout)
        except requests.RequestException as exc:
            log.warning("signing keys unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable(upstream="identity_provider") from exc
        if response.status_code == 429 or response.status_code >= 500:
            log.warning("signing keys: HTTP %d", response.status_code)
            raise UpstreamUnavailable(retry_after=retry_after_of(response, default=5),
                                      upstream="identity_provider")
        try:
            document = response.json() if response.status_code == 200 else {}
            entries = document.get("keys", [])
        except (ValueError, AttributeError):
            entries = []
        keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" \
                    or entry.get("kty") != "RSA" or not isinstance(entry.get("kid"), str):
                continue
            issuer = entry.get("issuer")
            try:
                # The algorithm is ours, never the document's or the token's.
                keys[entry["kid"]] = (jwt.PyJWK(entry, algorithm=_ALGORITHM),
                                      issuer if isinstance(issuer, str) else None)
            except jwt.PyJWTError:
                continue
        return keys
