"""The async ``VaultUserCredential``: an ``AsyncTokenCredential`` over the async client, with
the sync one's cache, its one-redeem-for-all-waiters rule (an ``asyncio`` future per scope
set) and its refusals."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Dict, Optional

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from .._credential import REFRESH_MARGIN, Key, check_request, scopes_key, token_info

__all__ = ["VaultUserCredential"]


class VaultUserCredential:
    """``VaultUserCredential(client, tenant_id, user_id)`` with an async ``TokenVaultClient``.

    One instance belongs to one event loop, as the async client does.
    """

    def __init__(self, client: Any, tenant_id: str, user_id: str, *,
                 refresh_margin: float = REFRESH_MARGIN,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self.tenant_id = tenant_id
        self.user_id = user_id
        self._margin = refresh_margin
        self._clock = clock
        self._cache: Dict[Key, AccessToken] = {}
        self._flights: Dict[Key, "asyncio.Future[AccessToken]"] = {}

    async def get_token(self, *scopes: str, claims: Optional[str] = None,
                        tenant_id: Optional[str] = None, enable_cae: bool = False,
                        **kwargs: Any) -> AccessToken:
        check_request(self.tenant_id, tenant_id, claims)
        return await self._token(scopes_key(scopes))

    async def get_token_info(self, *scopes: str,
                             options: Optional[TokenRequestOptions] = None) -> AccessTokenInfo:
        options = options or {}
        check_request(self.tenant_id, options.get("tenant_id"), options.get("claims"))
        return token_info(await self._token(scopes_key(scopes)), self._margin)

    async def _token(self, key: Key) -> AccessToken:
        token = self._cache.get(key)
        if token is not None and token.expires_on - self._margin > self._clock():
            return token
        flight = self._flights.get(key)
        if flight is not None:
            # shield: one waiter cancelled does not cancel the redeem the others wait for.
            return await asyncio.shield(flight)
        flight = self._flights[key] = asyncio.get_running_loop().create_future()
        try:
            token = await self._client.redeem(list(key), tenant_id=self.tenant_id,
                                              user_id=self.user_id)
        except BaseException as error:
            self._cache.pop(key, None)
            flight.set_exception(error)
            # Waiters (if any) take the error; with none, the future's error is retrieved here.
            flight.exception()
            raise
        else:
            self._cache[key] = token
            flight.set_result(token)
            return token
        finally:
            self._flights.pop(key, None)

    async def close(self) -> None:
        """Nothing to release: the client belongs to the caller."""

    async def __aenter__(self) -> "VaultUserCredential":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"VaultUserCredential(tenant_id={self.tenant_id!r}, user_id={self.user_id!r})"
