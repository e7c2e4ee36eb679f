"""``VaultUserCredential``: an azure-core ``TokenCredential`` whose tokens the vault redeems for
one stored user, so that any Azure SDK client (Key Vault, Storage, the Microsoft Graph SDK)
acts for that user — also when the user is long gone.

It redeems as the app (the client needs an app ``credential``), caches each token until
``refresh_margin`` seconds before it expires, and lets concurrent callers share one redeem.
Failures are the client's typed errors; those that mean "no token for this user" are
``ClientAuthenticationError`` s, which other SDKs' pipelines do not retry.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import ClientAuthenticationError

from ._errors import ReauthRequired

__all__ = ["VaultUserCredential", "REFRESH_MARGIN"]

#: Seconds before expiry at which a cached token is redeemed again (azure-core's own window).
REFRESH_MARGIN = 300.0

Key = Tuple[str, ...]


def scopes_key(scopes: Tuple[str, ...]) -> Key:
    if not scopes:
        raise ValueError("get_token needs at least one scope")
    return tuple(sorted(set(scopes)))


def check_request(tenant_id: str, requested_tenant: Optional[str],
                  claims: Optional[str]) -> None:
    """What no redeem can satisfy, refused before asking the vault.

    - another tenant: the stored refresh token redeems only in the user's own tenant;
    - a claims challenge (a resource's CAE or step-up): only the user can meet it, by signing
      in again with those claims, which ``ReauthRequired.claims`` carries to the web app.
    """
    if requested_tenant and requested_tenant.lower() != tenant_id.lower():
        raise ClientAuthenticationError(
            f"VaultUserCredential holds tokens of tenant {tenant_id} only; "
            f"{requested_tenant} was asked for.")
    if claims:
        raise ReauthRequired("(reauth_required) The resource asked for claims the stored "
                             "grant cannot satisfy; the user must sign in again.",
                             status=409, claims=claims)


def token_info(token: AccessToken, margin: float) -> AccessTokenInfo:
    return AccessTokenInfo(token.token, token.expires_on, token_type="Bearer",
                           refresh_on=int(token.expires_on - margin))


class _Flight:
    """One redeem in progress; callers that arrive meanwhile wait for its outcome."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: Optional[AccessToken] = None
        self.error: Optional[BaseException] = None


class VaultUserCredential:
    """``VaultUserCredential(client, tenant_id, user_id)``: tokens of one stored user.

    :param client: a ``TokenVaultClient`` with an app ``credential``.
    :keyword float refresh_margin: redeem again this many seconds before expiry.
    :keyword clock: seconds since the epoch (tests pin it).
    """

    def __init__(self, client: Any, tenant_id: str, user_id: str, *,
                 refresh_margin: float = REFRESH_MARGIN,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self.tenant_id = tenant_id
        self.user_id = user_id
        self._margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: Dict[Key, AccessToken] = {}
        self._flights: Dict[Key, _Flight] = {}

    def get_token(self, *scopes: str, claims: Optional[str] = None,
                  tenant_id: Optional[str] = None, enable_cae: bool = False,
                  **kwargs: Any) -> AccessToken:
        """An access token for ``scopes`` for this user (``enable_cae`` is accepted and has no
        effect: the vault's grant is what it is)."""
        check_request(self.tenant_id, tenant_id, claims)
        return self._token(scopes_key(scopes))

    def get_token_info(self, *scopes: str,
                       options: Optional[TokenRequestOptions] = None) -> AccessTokenInfo:
        """``SupportsTokenInfo``: the same token, with ``refresh_on`` set to when it would be
        redeemed again."""
        options = options or {}
        check_request(self.tenant_id, options.get("tenant_id"), options.get("claims"))
        return token_info(self._token(scopes_key(scopes)), self._margin)

    def _fresh(self, key: Key) -> Optional[AccessToken]:
        token = self._cache.get(key)
        if token is not None and token.expires_on - self._margin > self._clock():
            return token
        return None

    def _token(self, key: Key) -> AccessToken:
        with self._lock:
            cached = self._fresh(key)
            if cached is not None:
                return cached
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        assert flight is not None
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.token is not None
            return flight.token
        try:
            flight.token = self._client.redeem(list(key), tenant_id=self.tenant_id,
                                               user_id=self.user_id)
            with self._lock:
                self._cache[key] = flight.token
            return flight.token
        except BaseException as error:
            flight.error = error
            with self._lock:
                self._cache.pop(key, None)
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def close(self) -> None:
        """Nothing to release: the client belongs to the caller."""

    def __enter__(self) -> "VaultUserCredential":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VaultUserCredential(tenant_id={self.tenant_id!r}, user_id={self.user_id!r})"
