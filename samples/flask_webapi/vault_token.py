"""``@vault_token(scopes=[...])``: the seed article's ``login_required`` decorator, done right.

The article kept the refresh token in the Flask session and refreshed it by hand with the
client secret. Here the web API never sees a refresh token:

- the caller's bearer token is validated (``entra_tokens``); a bad one is 401;
- the first time this process sees the user, their token is handed to TokenVault (**store**:
  the vault runs the On-Behalf-Of exchange and keeps the refresh token, encrypted);
- every call then **redeems** a fresh access token for ``scopes`` (``g.vault_token``);
- when the vault says the user must sign in again — ``NotFound`` (nothing stored any more) or
  ``ReauthRequired`` (the refresh token is dead, with a claims challenge when the identity
  provider sent one) — the answer is 401 with a ``WWW-Authenticate`` challenge, so the client
  app signs the user in again; its next call brings a fresh token, which is stored again.
- a redeem of scopes the record was not stored with (``ScopeNotStored``) stores the user's
  token again for them (the user is here) and redeems once more.
- the vault's dependencies down: 503 with its ``Retry-After``.

Which users were stored is remembered per process (bounded); another instance stores once
more, which is harmless: a store replaces the record.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import wraps
from threading import Lock
from typing import Any, Callable, Iterable, List

from flask import current_app, g, jsonify, request

from entra_tokens import EntraTokenValidator, InvalidBearer, KeysUnavailable, User, challenge
from tokenvault_client import (
    NotFound,
    ReauthRequired,
    ScopeNotStored,
    TokenVaultClient,
    TokenVaultError,
    UpstreamUnavailable,
)

__all__ = ["vault_token", "VaultTokens", "EXTENSION"]

EXTENSION = "tokenvault"


class StoredUsers:
    """The users this process has stored, most recent last; at most ``limit`` of them."""

    def __init__(self, limit: int = 10_000) -> None:
        self._users: "OrderedDict[str, None]" = OrderedDict()
        self._limit = limit
        self._lock = Lock()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._users

    def add(self, key: str) -> None:
        with self._lock:
            self._users[key] = None
            self._users.move_to_end(key)
            while len(self._users) > self._limit:
                self._users.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._users.pop(key, None)


class VaultTokens:
    """What the decorator needs, kept in ``app.extensions["tokenvault"]``."""

    def __init__(self, client: TokenVaultClient, validator: EntraTokenValidator, *,
                 authority_host: str) -> None:
        self.client = client
        self.validator = validator
        self.authority_host = authority_host
        self.stored = StoredUsers()

    def token_for(self, user: User, scopes: List[str]):
        if user.key not in self.stored:
            self.client.store(scopes, user_token=user.token)
            self.stored.add(user.key)
        try:
            return self.client.redeem(scopes, user_token=user.token)
        except ScopeNotStored:
            self.client.store(scopes, user_token=user.token)
            return self.client.redeem(scopes, user_token=user.token)


def vault_token(scopes: Iterable[str]) -> Callable:
    """Protect a view: it runs with ``g.user`` and ``g.vault_token`` (an ``AccessToken`` for
    ``scopes``, for the user who called)."""
    wanted = list(scopes)

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            vault: VaultTokens = current_app.extensions[EXTENSION]
            try:
                user = vault.validator.user(request.headers.get("Authorization"))
            except InvalidBearer:
                return _sign_in(vault, "invalid_token", None, "The bearer token is missing or invalid.")
            except KeysUnavailable:
                return _problem(503, "upstream_unavailable", "The identity provider is unavailable.",
                                {"Retry-After": "5"})
            try:
                g.vault_token = vault.token_for(user, wanted)
            except (NotFound, ReauthRequired) as error:
                # The next call, after the user signed in again, stores the new token.
                vault.stored.discard(user.key)
                return _sign_in(vault, error.code, error.claims, "Sign in again.")
            except UpstreamUnavailable as error:
                return _problem(503, error.code, "TokenVault is unavailable; retry later.",
                                {"Retry-After": str(error.retry_after or 5)})
            except TokenVaultError as error:
                current_app.logger.warning("TokenVault refused: %s (correlation id %s)",
                                           error.code, error.correlation_id)
                return _problem(403 if error.status == 403 else 502, error.code or "vault_error",
                                "The token for this call could not be obtained.")
            g.user = user
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _sign_in(vault: VaultTokens, code: str, claims, detail: str):
    return _problem(401, code, detail,
                    {"WWW-Authenticate": challenge(authority_host=vault.authority_host,
                                                   claims=claims)})


def _problem(status: int, code: str, detail: str, headers: dict = None):
    response = jsonify({"status": status, "code": code, "detail": detail})
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response
