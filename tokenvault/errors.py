"""The one error hierarchy of TokenVault.

Every failure the vault can report is a ``VaultError`` with a stable machine-readable
``code``, the HTTP ``status`` it is answered with, and a ``message`` that is safe to show to a
caller: it never carries a token, a key, an assertion or text that came from upstream.
Adapters translate Azure and MSAL exceptions into these at their boundary (``raise ... from``),
so the core and the HTTP layer only ever see this tree::

    VaultError                       code                     status
    ├── InvalidToken                 invalid_token            401
    ├── InsufficientPermissions      insufficient_permissions 403
    ├── BadRequest                   bad_request              400  (names the field)
    ├── PayloadTooLarge              payload_too_large        413
    ├── NotFound                     not_found                404
    ├── ReauthRequired               reauth_required          409  (may carry a claims challenge)
    ├── OfflineAccessMissing         offline_access_missing   422
    ├── TenantNotOnboarded           tenant_not_onboarded     403
    ├── TenantRevoked                tenant_revoked           403
    ├── ScopeNotStored               scope_not_stored         403  (a redeem beyond the stored grant)
    ├── UpstreamUnavailable          upstream_unavailable     503  (carries Retry-After)
    ├── RecordConflict               conflict                 409  internal: a stale ETag
    ├── TenantKeyInvalid             tenant_key_invalid       500  internal: answered as `internal`
    ├── CiphertextInvalid            ciphertext_invalid       500  internal: answered as `internal`
    ├── SettingError                 setting_invalid          500  internal: answered as `internal`
    ├── KeyExists                    key_exists               409  internal: ops key admin only
    ├── KeyDeleted                   key_deleted              409  internal: ops key admin only
    └── InternalError                internal                 500

Errors marked internal are logged under their own code but never shown as such: a caller
sees ``internal`` with no detail (``public`` is False).
"""

from __future__ import annotations

__all__ = [
    "VaultError",
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
    "RecordConflict",
    "TenantKeyInvalid",
    "CiphertextInvalid",
    "SettingError",
    "KeyExists",
    "KeyDeleted",
    "InternalError",
    "PUBLIC_CODES",
]


class VaultError(Exception):
    """Base of every TokenVault error. ``str(error)`` is the safe message."""

    code: str = "internal"
    status: int = 500
    title: str = "Internal error"
    default_message: str = "The vault could not complete the request."
    #: False for errors whose code is for logs only; callers see `internal`.
    public: bool = True

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidToken(VaultError):
    """The bearer token is missing or failed validation. Deliberately says nothing more."""

    code, status, title = "invalid_token", 401, "Invalid token"
    default_message = "The bearer token is missing or invalid."


class InsufficientPermissions(VaultError):
    code, status, title = "insufficient_permissions", 403, "Insufficient permissions"
    default_message = "The caller may not perform this operation."


class BadRequest(VaultError):
    """Malformed input. ``field`` names the offending part of the request, when there is one."""

    code, status, title = "bad_request", 400, "Bad request"
    default_message = "The request is malformed."

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLarge(VaultError):
    code, status, title = "payload_too_large", 413, "Payload too large"
    default_message = "The request body is too large."


class NotFound(VaultError):
    """Nothing is stored: the caller should sign the user in again."""

    code, status, title = "not_found", 404, "Not found"
    default_message = "No refresh token is stored for this user."


class ReauthRequired(VaultError):
    """The user must sign in again: the stored refresh token is dead, or the identity provider
    wants the user for this request (consent, a step-up, scopes it will not grant).

    ``claims`` is the identity provider's claims challenge, when it sent one; it is safe to
    pass on (it names conditions, not credentials) and the caller needs it to sign in again.
    ``grant_dead`` is True only when the identity provider said the refresh token itself is
    dead: only then may the vault erase it. Anything else leaves the stored token as it was.
    """

    code, status, title = "reauth_required", 409, "Re-authentication required"
    default_message = "The user must sign in again for this request."

    def __init__(self, message: str | None = None, *, claims: str | None = None,
                 reason: str | None = None, grant_dead: bool = False) -> None:
        super().__init__(message)
        self.claims = claims
        #: why, as a short code for logs and the record's `LastError` (e.g. `invalid_grant`).
        self.reason = reason or "invalid_grant"
        self.grant_dead = grant_dead


class OfflineAccessMissing(VaultError):
    code, status, title = "offline_access_missing", 422, "No refresh token granted"
    default_message = "The identity provider did not grant a refresh token (offline_access)."


class TenantNotOnboarded(VaultError):
    code, status, title = "tenant_not_onboarded", 403, "Tenant not onboarded"
    default_message = "The tenant has no key in the vault."


class TenantRevoked(VaultError):
    code, status, title = "tenant_revoked", 403, "Tenant revoked"
    default_message = "The tenant's key has been revoked; its tokens cannot be used."


class ScopeNotStored(VaultError):
    """A redeem asked for scopes the record was not stored with. The grant is fixed at store
    time: the user widens it by signing in again and storing."""

    code, status, title = "scope_not_stored", 403, "Scope not stored"
    default_message = ("The requested scopes were not granted when the token was stored; the "
                       "user must sign in and store again.")


class UpstreamUnavailable(VaultError):
    """A dependency (identity provider, Key Vault, storage) throttled us or is down."""

    code, status, title = "upstream_unavailable", 503, "Upstream unavailable"
    default_message = "A dependency is unavailable; retry later."

    def __init__(self, message: str | None = None, *, retry_after: int = 5,
                 upstream: str = "unknown") -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
        #: which dependency: `identity_provider`, `key_vault` or `storage`.
        self.upstream = upstream


class RecordConflict(VaultError):
    """The record changed (or appeared) since it was read: its ETag no longer matches."""

    code, status, title = "conflict", 409, "Conflict"
    default_message = "The record was changed concurrently."
    public = False


class TenantKeyInvalid(VaultError):
    code, status = "tenant_key_invalid", 500
    default_message = "The tenant's key is malformed."
    public = False


class CiphertextInvalid(VaultError):
    """A stored ciphertext does not decrypt. One error for every cause, like Fernet's."""

    code, status = "ciphertext_invalid", 500
    default_message = "The stored ciphertext could not be decrypted."
    public = False


class SettingError(VaultError):
    """A bad or missing setting. The message is one line naming the setting."""

    code, status = "setting_invalid", 500
    public = False

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"setting {name}: {problem}")
        self.name = name


class KeyExists(VaultError):
    """Ops asked to create a tenant key that exists (or to recover or purge one not deleted)."""

    code, status = "key_exists", 409
    default_message = "The tenant already has a key."
    public = False


class KeyDeleted(VaultError):
    """The tenant's key is soft-deleted: its name is reserved until recovered or purged."""

    code, status = "key_deleted", 409
    default_message = "The tenant's key is soft-deleted: recover it, or purge it, first."
    public = False


class InternalError(VaultError):
    pass


#: The codes a caller may see, each with its status (docs/design.md "Problem codes").
PUBLIC_CODES: dict[str, int] = {
    cls.code: cls.status
    for cls in (InvalidToken, InsufficientPermissions, BadRequest, PayloadTooLarge, NotFound,
                ReauthRequired, OfflineAccessMissing, TenantNotOnboarded, TenantRevoked,
                ScopeNotStored, UpstreamUnavailable, InternalError)
}
