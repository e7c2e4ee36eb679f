"""HTTP handlers: parse, authenticate, authorize, call the vault, answer JSON.

Every answer carries ``Cache-Control: no-store`` and an ``X-Correlation-Id`` that is also in
the log line. Every error is RFC 9457 ``application/problem+json`` with a stable ``code``; an
error whose code is internal (``public`` False) or that is not a ``VaultError`` at all is
answered as ``internal`` with no detail.

Who may do what (docs/design.md "HTTP API"):
- a user token (delegated, audience = our client) stores, redeems, reads and forgets its
  own record, identified by the token's ``tid`` and ``oid`` — never by a name in the body;
- an app token must come from an (app id, home tenant) pair listed in
  ``TOKENVAULT_REDEEM_CALLERS`` *and* carry the role: ``TokenVault.Redeem`` to redeem or read,
  ``TokenVault.Admin`` to read or forget. The role alone proves nothing (any tenant can assign
  our app roles to its own apps), and neither does the app id alone: a multi-tenant caller has
  a service principal in every customer tenant, whose admin can give it our roles and mint
  client-credentials tokens as that app with their own ``tid``. The pair is the caller.
The vault then applies the rules that hold whoever asks: the record's tenant must be one the
vault keeps, and a redeem stays within the scopes stored.

Every data route is audited (``tokenvault.audit``): one record per request, allowed or refused,
with the caller as far as it was established, and it runs in a span ``http.<route>`` under the
invocation's correlation id, counted in ``tokenvault.requests`` (``tokenvault.observe``).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import azure.functions as func

from .audit import Audit
from .errors import (
    BadRequest,
    InsufficientPermissions,
    InternalError,
    PayloadTooLarge,
    ReauthRequired,
    UpstreamUnavailable,
    VaultError,
)
from .model import AppCaller, Caller, RecordKey, TokenGrant, valid_id
from .observe import REDEEMS, REQUEST_DURATION, REQUESTS, NullObserver, Observer, correlated
from .ports import Clock
from .scopes import is_reserved
from .vault import Vault

__all__ = ["Api", "dispatch", "problem", "MAX_BODY", "ROLE_REDEEM", "ROLE_ADMIN"]

log = logging.getLogger("tokenvault.http")

MAX_BODY = 16 * 1024
MAX_SCOPES = 20
MAX_SCOPE_LENGTH = 512
ROLE_REDEEM = "TokenVault.Redeem"
ROLE_ADMIN = "TokenVault.Admin"
PROBLEM_TYPE = "urn:tokenvault:problem:"
_SCOPE = re.compile(r"[\x21-\x7e]+\Z")

Authenticate = Callable[[str | None], Caller]


@dataclass(frozen=True)
class _Request:
    correlation_id: str
    route: str


class Api:
    def __init__(self, *, vault: Vault, authenticate: Authenticate,
                 redeem_callers: frozenset[AppCaller], clock: Clock,
                 observer: Observer | None = None) -> None:
        self._vault = vault
        self._authenticate = authenticate
        self._callers = redeem_callers
        self._clock = clock
        self.observer = observer or NullObserver()

    # --- routes: each fills in its audit record as facts are established -------------------

    def store(self, req: func.HttpRequest, audit: Audit | None = None) -> func.HttpResponse:
        audit = audit or Audit("store", "")
        raw = _bounded_body(req)
        caller = self._caller(req, audit)
        if caller.is_user:
            own = _own_key(caller)
            audit.target(own.tenant_id, own.user_id)
        scopes = _scopes(_json_body(req, raw, required={"scopes"}, optional=set())["scopes"])
        audit.asked_for(scopes)
        if not caller.is_user:
            raise InsufficientPermissions("Only a user token can store a refresh token.")
        record = self._vault.store(caller, scopes)
        return _json(201, record.metadata(),
                     {"Location": f"/api/tokens/{record.tenant_id}/{record.user_id}"})

    def redeem(self, req: func.HttpRequest, audit: Audit | None = None) -> func.HttpResponse:
        audit = audit or Audit("redeem", "")
        raw = _bounded_body(req)
        caller = self._caller(req, audit)
        body = _json_body(req, raw, required={"scopes"}, optional={"tenant_id", "user_id"})
        scopes = _scopes(body["scopes"])
        audit.asked_for(scopes)
        if caller.is_user:
            own = _own_key(caller)
            audit.target(own.tenant_id, own.user_id)
            # Malformed is malformed whoever asks: the same 400 naming the field as for an app.
            named = {f: valid_id(body[f], f) for f in ("tenant_id", "user_id") if f in body}
            if named and named != {"tenant_id": own.tenant_id, "user_id": own.user_id}:
                audit.target(named.get("tenant_id"), named.get("user_id"))
                raise InsufficientPermissions("A user token redeems only its own record.")
            key = own
        else:
            named = {f: valid_id(body[f], f) for f in ("tenant_id", "user_id") if f in body}
            audit.target(named.get("tenant_id"), named.get("user_id"))
            self._require_app(caller, ROLE_REDEEM)
            for name in ("tenant_id", "user_id"):
                if name not in body:
                    raise BadRequest(f"{name} is required with an app token.", field=name)
            key = RecordKey(named["tenant_id"], named["user_id"])
        grant = self._vault.redeem(key, scopes)
        audit.cached = grant.from_cache
        self.observer.add(REDEEMS, source="cache" if grant.from_cache else "identity_provider")
        return _json(200, _token_body(grant, self._now()))

    def describe(self, req: func.HttpRequest, audit: Audit | None = None) -> func.HttpResponse:
        audit = audit or Audit("describe", "")
        caller = self._caller(req, audit)
        key = _route_key(req)
        audit.target(key.tenant_id, key.user_id)
        self._authorize_record(caller, key, (ROLE_REDEEM, ROLE_ADMIN))
        return _json(200, self._vault.describe(key).metadata())

    def forget(self, req: func.HttpRequest, audit: Audit | None = None) -> func.HttpResponse:
        audit = audit or Audit("forget", "")
        caller = self._caller(req, audit)
        key = _route_key(req)
        audit.target(key.tenant_id, key.user_id)
        self._authorize_record(caller, key, (ROLE_ADMIN,))
        self._vault.forget(key)
        return func.HttpResponse(status_code=204, headers=_common_headers())

    # --- authorization -------------------------------------------------------------------

    def _caller(self, req: func.HttpRequest, audit: Audit) -> Caller:
        caller = self._authenticate(req.headers.get("Authorization"))
        audit.authenticated(caller)  # only now: a refused token's claims are never recorded
        return caller

    def _authorize_record(self, caller: Caller, key: RecordKey, roles: tuple[str, ...]) -> None:
        if caller.is_user:
            if _own_key(caller) != key:
                raise InsufficientPermissions("A user token reaches only its own record.")
            return
        self._require_app(caller, *roles)

    def _require_app(self, caller: Caller, *roles: str) -> None:
        if caller.app not in self._callers or not caller.roles.intersection(roles):
            raise InsufficientPermissions(f"The app needs the role {' or '.join(roles)} and "
                                          "must be listed, with its home tenant, in "
                                          "TOKENVAULT_REDEEM_CALLERS.")

    def _now(self) -> int:
        return int(self._clock.now().timestamp())


def dispatch(route: str, req: func.HttpRequest, api: Callable[[], Api]) -> func.HttpResponse:
    """Run one route: build (or reuse) the Api, call it, turn every failure into a problem.
    Exactly one audit record is written, whatever happens."""
    request = _Request(correlation_id=str(uuid.uuid4()), route=route)
    audit = Audit(route, request.correlation_id)
    started = time.monotonic()
    with correlated(request.correlation_id):
        try:
            served = api()
        except Exception as error:  # noqa: BLE001 - a bad setting: nothing can be served
            response, code = _answer_failure(request, error)
            audit.write(code)
            return response
        with served.observer.span(f"http.{route}", route=route) as span:
            try:
                response, code = getattr(served, route)(req, audit), "ok"
            except Exception as error:  # noqa: BLE001 - every failure is answered
                response, code = _answer_failure(request, error)
            else:
                response.headers["X-Correlation-Id"] = request.correlation_id
                # Successes are logged too, so every answer's correlation id is in the log.
                log.info("request answered: %d", response.status_code,
                         extra={**_log_fields(request, "ok"), "status": response.status_code})
            span.update(outcome=code, status=response.status_code)
            audit.write(code)
        served.observer.add(REQUESTS, route=route, code=code)
        served.observer.record(REQUEST_DURATION, time.monotonic() - started, route=route, code=code)
    return response


def _answer_failure(request: _Request, error: Exception) -> tuple[func.HttpResponse, str]:
    """The problem answer to ``error`` and the code it is counted and audited under (an
    internal error's own code: the audit trail and the metrics are ours, not the caller's)."""
    if isinstance(error, VaultError):
        return _failure(request, error), error.code
    log.exception("unexpected error", extra=_log_fields(request, "internal"))
    return problem(InternalError(), request.correlation_id), "internal"


def _failure(request: _Request, error: VaultError) -> func.HttpResponse:
    level = logging.ERROR if error.status >= 500 else logging.INFO
    # The message is safe by construction; the log keeps the internal code too.
    log.log(level, "request failed: %s", error.message, extra=_log_fields(request, error.code))
    return problem(error, request.correlation_id)


def problem(error: VaultError, correlation_id: str) -> func.HttpResponse:
    shown = error if error.public else InternalError()
    body = {"type": PROBLEM_TYPE + shown.code, "title": shown.title, "status": shown.status,
            "code": shown.code, "detail": shown.message, "correlation_id": correlation_id}
    headers = {**_common_headers(), "X-Correlation-Id": correlation_id}
    if isinstance(shown, BadRequest) and shown.field:
        body["field"] = shown.field
    if shown.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if isinstance(shown, ReauthRequired) and shown.claims:
        body["claims"] = shown.claims
        # As Microsoft's APIs do for a claims challenge: base64 of the claims JSON.
        encoded = base64.b64encode(shown.claims.encode()).decode()
        headers["WWW-Authenticate"] = f'Bearer error="insufficient_claims", claims="{encoded}"'
    if isinstance(shown, UpstreamUnavailable):
        headers["Retry-After"] = str(shown.retry_after)
    return func.HttpResponse(json.dumps(body), status_code=shown.status, headers=headers,
                             mimetype="application/problem+json", charset="utf-8")


# --- parsing -----------------------------------------------------------------------------

def _bounded_body(req: func.HttpRequest) -> bytes:
    """The body, refused before anything else is done with the request when it is too big."""
    body = req.get_body() or b""
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"The body is larger than {MAX_BODY} bytes.")
    return body


def _json_body(req: func.HttpRequest, body: bytes, *, required: set[str],
               optional: set[str]) -> dict:
    media_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest("The body must be JSON (Content-Type: application/json).",
                         field="Content-Type")
    try:
        # JSON between systems is UTF-8 (RFC 8259); json.loads would also guess UTF-16 and -32.
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.", field="body") from None
    except RecursionError:
        # A few thousand nested brackets fit in MAX_BODY and exhaust the parser's stack.
        raise BadRequest("The body is nested too deeply.", field="body") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.", field="body")
    for name in data:
        if name not in required | optional:
            raise BadRequest(f"Unknown field {name[:64]!r}.", field=name[:64])
    for name in sorted(required):
        if name not in data:
            raise BadRequest(f"{name} is required.", field=name)
    return data


def _scopes(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise BadRequest("scopes must be a non-empty list of strings.", field="scopes")
    if len(value) > MAX_SCOPES:
        raise BadRequest(f"scopes may hold at most {MAX_SCOPES} entries.", field="scopes")
    for scope in value:
        if not isinstance(scope, str) or not 0 < len(scope) <= MAX_SCOPE_LENGTH \
                or not _SCOPE.match(scope):
            raise BadRequest("Each scope must be 1 to 512 printable characters without spaces.",
                             field="scopes")
        if is_reserved(scope):
            raise BadRequest("openid, profile and offline_access are added by the vault.",
                             field="scopes")
    return tuple(dict.fromkeys(value))


def _route_key(req: func.HttpRequest) -> RecordKey:
    params = req.route_params
    return RecordKey(valid_id(params.get("tenant_id"), "tenant_id"),
                     valid_id(params.get("user_id"), "user_id"))


def _own_key(caller: Caller) -> RecordKey:
    return RecordKey(caller.tenant_id, caller.object_id or "")


def _token_body(grant: TokenGrant, now: int) -> dict:
    return {"access_token": grant.access_token.reveal(), "token_type": grant.token_type,
            "expires_in": max(0, grant.expires_on - now), "expires_on": grant.expires_on,
            "scope": " ".join(grant.scopes)}


def _json(status: int, body: dict, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status,
                             headers={**_common_headers(), **(headers or {})},
                             mimetype="application/json", charset="utf-8")


def _common_headers() -> dict[str, str]:
    return {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _log_fields(request: _Request, code: str) -> dict:
    return {"correlation_id": request.correlation_id, "route": request.route, "code": code}
