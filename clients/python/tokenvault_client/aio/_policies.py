"""The async twins of the client's two own policies (see ``tokenvault_client._policies``)."""

from __future__ import annotations

from typing import Any

from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy, AsyncRetryPolicy

from .._policies import (
    RetryAfterCeiling,
    app_scope,
    authorize_as_user,
    prepare_app_call,
    take_user_token,
)

__all__ = ["AsyncVaultAuthenticationPolicy", "AsyncVaultRetryPolicy"]


class AsyncVaultAuthenticationPolicy(AsyncBearerTokenCredentialPolicy):
    """A user's token when the call has one; else the app's, from the async credential."""

    def __init__(self, credential: Any, client_id: str, **kwargs: Any) -> None:
        super().__init__(credential, app_scope(client_id), **kwargs)

    async def send(self, request: Any) -> Any:
        user_token = take_user_token(request)
        if user_token is not None:
            authorize_as_user(request, user_token)
            return await self.next.send(request)
        prepare_app_call(request, self._credential is not None)
        return await super().send(request)


class AsyncVaultRetryPolicy(RetryAfterCeiling, AsyncRetryPolicy):
    pass
