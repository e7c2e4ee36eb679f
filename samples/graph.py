"""Just enough of Microsoft Graph for the samples (``GET /v1.0/me``), called the way Azure SDK
clients call a service: azure-core's pipeline with a ``BearerTokenCredentialPolicy`` that
asks a ``TokenCredential`` for its token. Hand it a ``VaultUserCredential`` and it acts for a
stored user; the Microsoft Graph SDK (``msgraph-sdk``) takes the same credential the same way.
"""

from __future__ import annotations

from typing import Any, Iterable

from azure.core import AsyncPipelineClient, PipelineClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import (
    AsyncBearerTokenCredentialPolicy,
    AsyncRetryPolicy,
    BearerTokenCredentialPolicy,
    RetryPolicy,
)
from azure.core.rest import HttpRequest

__all__ = ["GraphClient", "AsyncGraphClient", "GRAPH", "GRAPH_SCOPES", "StaticToken"]

GRAPH = "https://graph.microsoft.com"
#: What the samples store and redeem: the delegated scope Graph's /me needs.
GRAPH_SCOPES = ["https://graph.microsoft.com/User.Read"]


class StaticToken:
    """A ``TokenCredential`` over one token already redeemed (a view's ``g.vault_token``)."""

    def __init__(self, token: AccessToken) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._token


class _AsyncStaticToken:
    def __init__(self, token: AccessToken) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._token

    async def close(self) -> None:
        pass


def _me_request(base_url: str) -> HttpRequest:
    return HttpRequest("GET", f"{base_url.rstrip('/')}/v1.0/me",
                       headers={"Accept": "application/json"})


def _options(base_url: str) -> dict:
    # A local stand-in of Graph serves plain http on a loopback address; Graph itself is https.
    local = base_url.startswith(("http://127.0.0.1", "http://localhost"))
    return {"enforce_https": False} if local else {}


def _profile(response: Any) -> dict:
    if response.status_code != 200:
        raise HttpResponseError(response=response)
    return response.json()


class GraphClient:
    def __init__(self, credential: Any, scopes: Iterable[str] = GRAPH_SCOPES, *,
                 base_url: str = GRAPH, **kwargs: Any) -> None:
        self._base = base_url
        policies = [RetryPolicy(retry_total=2, **kwargs),
                    BearerTokenCredentialPolicy(credential, *scopes)]
        self._client: PipelineClient = PipelineClient(base_url, policies=policies, **kwargs)

    @classmethod
    def for_token(cls, token: AccessToken, **kwargs: Any) -> "GraphClient":
        return cls(StaticToken(token), **kwargs)

    def me(self) -> dict:
        return _profile(self._client.send_request(_me_request(self._base), **_options(self._base)))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "GraphClient":
        self._client.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._client.__exit__(*exc)


class AsyncGraphClient:
    def __init__(self, credential: Any, scopes: Iterable[str] = GRAPH_SCOPES, *,
                 base_url: str = GRAPH, **kwargs: Any) -> None:
        self._base = base_url
        policies = [AsyncRetryPolicy(retry_total=2, **kwargs),
                    AsyncBearerTokenCredentialPolicy(credential, *scopes)]
        self._client: AsyncPipelineClient = AsyncPipelineClient(base_url, policies=policies,
                                                                **kwargs)

    @classmethod
    def for_token(cls, token: AccessToken, **kwargs: Any) -> "AsyncGraphClient":
        return cls(_AsyncStaticToken(token), **kwargs)

    async def me(self) -> dict:
        response = await self._client.send_request(_me_request(self._base), **_options(self._base))
        return _profile(response)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> "AsyncGraphClient":
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._client.__aexit__(*exc)
