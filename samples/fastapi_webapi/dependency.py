"""``Depends(vault_token(scopes=[...]))``: the Flask sample's ``@vault_token`` as a FastAPI
dependency on the async client — the same rules (see ``flask_webapi/vault_token.py``): store
on first sight of a user, redeem after; 401 with a ``WWW-Authenticate`` challenge (with the
claims, when given) on ``NotFound`` / ``ReauthRequired``; store again on ``ScopeNotStored``;
503 with ``Retry-After`` when the vault's dependencies are down.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Awaitable, Callable, Dict, Iterable, List, Optional

from azure.core.credentials import AccessToken
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from entra_tokens import EntraTokenValidator, InvalidBearer, KeysUnavailable, User, challenge
from tokenvault_client import (
    NotFound,
    ReauthRequired,
    ScopeNotStored,
    TokenVaultError,
    UpstreamUnavailable,
)
from tokenvault_client.aio import TokenVaultClient

__all__ = ["vault_token", "VaultTokens", "Problem", "problem_response"]

log = logging.getLogger("fastapi_webapi")


class Problem(Exception):
    """Answered as ``application/problem+json`` by ``problem_response``."""

    def __init__(self, status: int, code: str, detail: str,
                 headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(code)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


async def problem_response(request: Request, problem: Problem) -> JSONResponse:
    return JSONResponse({"status": problem.status, "code": problem.code, "detail": problem.detail},
                        status_code=problem.status, media_type="application/problem+json",
                        headers={**problem.headers, "Cache-Control": "no-store"})


class VaultTokens:
    """What the dependency needs, kept in ``app.state.vault`` for the app's lifetime."""

    def __init__(self, client: TokenVaultClient, validator: EntraTokenValidator, *,
                 authority_host: str, limit: int = 10_000) -> None:
        self.client = client
        self.validator = validator
        self.authority_host = authority_host
        # The users this process has stored (one event loop: no lock needed).
        self.stored: "OrderedDict[str, None]" = OrderedDict()
        self._limit = limit

    async def token_for(self, user: User, scopes: List[str]) -> AccessToken:
        if user.key not in self.stored:
            await self.client.store(scopes, user_token=user.token)
            self.stored[user.key] = None
            while len(self.stored) > self._limit:
                self.stored.popitem(last=False)
        try:
            return await self.client.redeem(scopes, user_token=user.token)
        except ScopeNotStored:
            await self.client.store(scopes, user_token=user.token)
            return await self.client.redeem(scopes, user_token=user.token)


def vault_token(scopes: Iterable[str]) -> Callable[[Request], Awaitable[AccessToken]]:
    """A dependency giving the view an ``AccessToken`` for ``scopes`` for the calling user
    (also in ``request.state.user``)."""
    wanted = list(scopes)

    async def dependency(request: Request) -> AccessToken:
        vault: VaultTokens = request.app.state.vault
        try:
            # PyJWKClient fetches keys with blocking I/O: off the event loop.
            user = await run_in_threadpool(vault.validator.user,
                                           request.headers.get("Authorization"))
        except InvalidBearer:
            raise _sign_in(vault, "invalid_token", None,
                           "The bearer token is missing or invalid.") from None
        except KeysUnavailable:
            raise Problem(503, "upstream_unavailable", "The identity provider is unavailable.",
                          {"Retry-After": "5"}) from None
        try:
            token = await vault.token_for(user, wanted)
        except (NotFound, ReauthRequired) as error:
            vault.stored.pop(user.key, None)
            raise _sign_in(vault, error.code, error.claims, "Sign in again.") from error
        except UpstreamUnavailable as error:
            raise Problem(503, error.code, "TokenVault is unavailable; retry later.",
                          {"Retry-After": str(error.retry_after or 5)}) from error
        except TokenVaultError as error:
            log.warning("TokenVault refused: %s (correlation id %s)", error.code,
                        error.correlation_id)
            raise Problem(403 if error.status == 403 else 502, error.code or "vault_error",
                          "The token for this call could not be obtained.") from error
        request.state.user = user
        return token

    return dependency


def _sign_in(vault: VaultTokens, code: str, claims: Optional[str], detail: str) -> Problem:
    return Problem(401, code, detail, {"WWW-Authenticate": challenge(
        authority_host=vault.authority_host, claims=claims)})
