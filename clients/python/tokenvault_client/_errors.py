"""The client's errors: one class per problem ``code`` of the TokenVault API.

Every answer of TokenVault that is not a success is an RFC 9457 problem with a stable
``code``; the client raises the class named after it. A code this version does not know yet
still becomes a ``TokenVaultError`` carrying that code::

    azure.core.exceptions.HttpResponseError
    └── TokenVaultError                        .code .status .correlation_id .retry_after
        │                                      .claims .field
        ├── BadRequest                  bad_request               400  (.field names the part)
        ├── PayloadTooLarge             payload_too_large         413
        ├── UpstreamUnavailable         upstream_unavailable      503  (.retry_after, seconds)
        ├── InternalError               internal                  500
        └── TokenVaultAuthenticationError    (also azure-core's ClientAuthenticationError)
            ├── InvalidToken            invalid_token             401
            ├── InsufficientPermissions insufficient_permissions  403
            ├── NotFound                not_found                 404  (also ResourceNotFoundError)
            ├── ReauthRequired          reauth_required           409  (.claims when given)
            ├── OfflineAccessMissing    offline_access_missing    422
            ├── TenantNotOnboarded      tenant_not_onboarded      403
            ├── TenantRevoked           tenant_revoked            403
            └── ScopeNotStored          scope_not_stored          403

``TokenVaultAuthenticationError`` is the family of answers meaning "the vault will not hand out
this token": the user must sign in again, or the caller lacks a right. They are azure-core
``ClientAuthenticationError`` s because ``VaultUserCredential`` raises them from inside another
Azure SDK client's pipeline, whose retry policy retries any other ``AzureError`` — a dead
refresh token would be redeemed again and again.

Messages carry the problem's code, title, detail and correlation id: the vault never puts a
token in a problem, and the client never adds one.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

__all__ = [
    "TokenVaultError",
    "TokenVaultAuthenticationError",
    "InvalidToken",
    "InsufficientPermissions",
    "BadRequest",
    "PayloadTooLarge",
    "NotFound",
    "ReauthRequired",
    "OfflineAccessMissing",
    "TenantNotOnboarded",
    "TenantRevoked",
    "ScopeNotStored",
    "UpstreamUnavailable",
    "InternalError",
    "ERRORS_BY_CODE",
    "error_from_response",
]

_MAX_TEXT = 300  # of a title or detail in a message: problems are short; a proxy's page is not


class TokenVaultError(HttpResponseError):
    """A problem answered by TokenVault (or, with ``code`` None, an answer that was not one)."""

    #: The problem code this class stands for (None on the base class).
    CODE: Optional[str] = None

    def __init__(self, message: Optional[str] = None, *, response: Any = None,
                 code: Optional[str] = None, status: Optional[int] = None,
                 title: Optional[str] = None, detail: Optional[str] = None,
                 correlation_id: Optional[str] = None, retry_after: Optional[int] = None,
                 claims: Optional[str] = None, field: Optional[str] = None) -> None:
        self.code = code if code is not None else self.CODE
        self.title = title
        self.detail = detail
        self.correlation_id = correlation_id
        #: seconds to wait before trying again, from the ``Retry-After`` header.
        self.retry_after = retry_after
        #: the identity provider's claims challenge (JSON text), to start a claims request.
        self.claims = claims
        #: the part of the request a ``bad_request`` is about.
        self.field = field
        super().__init__(message=message or _message(self.code, title, detail, correlation_id),
                         response=response, error_format=_NotOData)
        # HttpResponseError takes the status from the response; a problem built without one
        # (VaultUserCredential's claims refusal) still has the status of its code.
        self.status = status if status is not None else self.status_code

    def __str__(self) -> str:
        # Only the message: azure-core would append the body, and a body that is not the
        # vault's own problem (a proxy's page, say) is not ours to repeat.
        return self.message

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, "
                f"correlation_id={self.correlation_id!r})")


class _NotOData:
    """Tells azure-core's HttpResponseError that a problem is not an OData error body (it would
    otherwise build the message from it)."""

    def __init__(self, body: Any) -> None:
        raise ValueError("a problem+json body, not OData")


class TokenVaultAuthenticationError(TokenVaultError, ClientAuthenticationError):
    """The vault will not hand out this token: sign the user in again, or fix the caller's
    rights. Retrying the same call gives the same answer."""


class InvalidToken(TokenVaultAuthenticationError):
    """The bearer token (the user's, or the app's) is missing or invalid."""

    CODE = "invalid_token"


class InsufficientPermissions(TokenVaultAuthenticationError):
    """The caller may not do this: an app without the role or not listed, or a user naming
    someone else's record."""

    CODE = "insufficient_permissions"


class BadRequest(TokenVaultError):
    """The request is malformed; ``field`` names the part."""

    CODE = "bad_request"


class PayloadTooLarge(TokenVaultError):
    CODE = "payload_too_large"


class NotFound(TokenVaultAuthenticationError, ResourceNotFoundError):
    """Nothing is stored for this user: sign the user in again and store."""

    CODE = "not_found"


class ReauthRequired(TokenVaultAuthenticationError):
    """The stored refresh token is dead. ``claims``, when set, is the claims challenge to pass
    to the client app so that it signs the user in with it."""

    CODE = "reauth_required"


class OfflineAccessMissing(TokenVaultAuthenticationError):
    """The identity provider granted no refresh token: the app must ask for offline_access."""

    CODE = "offline_access_missing"


class TenantNotOnboarded(TokenVaultAuthenticationError):
    CODE = "tenant_not_onboarded"


class TenantRevoked(TokenVaultAuthenticationError):
    CODE = "tenant_revoked"


class ScopeNotStored(TokenVaultAuthenticationError):
    """A redeem asked for scopes the record was not stored with: store them first."""

    CODE = "scope_not_stored"


class UpstreamUnavailable(TokenVaultError):
    """A dependency of the vault is throttled or down; ``retry_after`` says when to retry.
    The client has already retried as long as ``retry_after_max`` allowed."""

    CODE = "upstream_unavailable"


class InternalError(TokenVaultError):
    """Something failed inside the vault; the answer carries no detail, only a correlation id."""

    CODE = "internal"


#: Every problem code the client knows, with its class.
ERRORS_BY_CODE: Dict[str, Type[TokenVaultError]] = {
    cls.CODE: cls
    for cls in (InvalidToken, InsufficientPermissions, BadRequest, PayloadTooLarge, NotFound,
                ReauthRequired, OfflineAccessMissing, TenantNotOnboarded, TenantRevoked,
                ScopeNotStored, UpstreamUnavailable, InternalError)
    if cls.CODE is not None
}


def error_from_response(response: Any, retry_after: Optional[int] = None) -> TokenVaultError:
    """The error for a non-success ``azure.core.rest.HttpResponse`` of the vault."""
    problem = _problem(response)
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    cls = ERRORS_BY_CODE.get(code or "", TokenVaultError)
    return cls(response=response, code=code, status=response.status_code,
               title=_text(problem.get("title")), detail=_text(problem.get("detail")),
               correlation_id=_text(problem.get("correlation_id"))
               or response.headers.get("X-Correlation-Id"),
               retry_after=retry_after, claims=_text(problem.get("claims"), limit=None),
               field=_text(problem.get("field")))


def _problem(response: Any) -> Dict[str, Any]:
    media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not media_type.endswith("json"):
        return {}
    try:
        body = json.loads(response.text())
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _text(value: Any, limit: Optional[int] = _MAX_TEXT) -> Optional[str]:
    if not isinstance(value, str):
        return None
    return value if limit is None else value[:limit]


def _message(code: Optional[str], title: Optional[str], detail: Optional[str],
             correlation_id: Optional[str]) -> str:
    message = f"({code or 'no problem code'}) {detail or title or 'TokenVault answered an error.'}"
    return message + (f" Correlation id: {correlation_id}." if correlation_id else "")
