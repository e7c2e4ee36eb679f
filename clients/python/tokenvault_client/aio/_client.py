"""``tokenvault_client.aio.TokenVaultClient``: the async twin of the sync client, same calls,
same answers, same errors (on azure-core's aiohttp transport: ``tokenvault-client[aio]``)."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Union

from azure.core import AsyncPipelineClient
from azure.core.credentials import AccessToken, AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.tracing.decorator_async import distributed_trace_async

from .. import _operations as ops
from .._models import StoredRecord
from .._policies import build_policies
from ._policies import AsyncVaultAuthenticationPolicy, AsyncVaultRetryPolicy

__all__ = ["TokenVaultClient"]


class TokenVaultClient:
    """See ``tokenvault_client.TokenVaultClient``; ``credential`` is an async credential
    (``azure.identity.aio``). Use it as ``async with`` or ``await client.close()``."""

    def __init__(self, endpoint: str, *, client_id: str,
                 credential: Optional[AsyncTokenCredential] = None,
                 function_key: Union[str, AzureKeyCredential, None] = None,
                 clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        self._endpoint = ops.normalize_endpoint(endpoint)
        self.client_id = client_id
        self._clock = clock
        retry_after_max = kwargs.pop("retry_after_max", None)
        retry = AsyncVaultRetryPolicy(**({"retry_after_max": retry_after_max}
                                         if retry_after_max is not None else {}), **kwargs)
        policies = build_policies(
            authentication=AsyncVaultAuthenticationPolicy(credential, client_id),
            retry=retry, function_key=function_key, kwargs=kwargs)
        self._client: AsyncPipelineClient = AsyncPipelineClient(self._endpoint, policies=policies,
                                                                **kwargs)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @distributed_trace_async
    async def store(self, scopes: ops.Scopes, *, user_token: str, **kwargs: Any) -> StoredRecord:
        request = ops.store_request(self._endpoint, scopes)
        return ops.read_record(await self._send(request, user_token, kwargs), expected=201)

    @distributed_trace_async
    async def redeem(self, scopes: ops.Scopes, *, user_token: Optional[str] = None,
                     tenant_id: Optional[str] = None, user_id: Optional[str] = None,
                     **kwargs: Any) -> AccessToken:
        request = ops.redeem_request(self._endpoint, scopes, tenant_id, user_id)
        return ops.read_access_token(await self._send(request, user_token, kwargs), self._clock())

    @distributed_trace_async
    async def describe(self, tenant_id: str, user_id: str, *, user_token: Optional[str] = None,
                       **kwargs: Any) -> StoredRecord:
        request = ops.record_request(self._endpoint, "GET", tenant_id, user_id)
        return ops.read_record(await self._send(request, user_token, kwargs))

    @distributed_trace_async
    async def forget(self, tenant_id: str, user_id: str, *, user_token: Optional[str] = None,
                     **kwargs: Any) -> None:
        request = ops.record_request(self._endpoint, "DELETE", tenant_id, user_id)
        ops.read_no_content(await self._send(request, user_token, kwargs))

    async def _send(self, request: Any, user_token: Optional[str], kwargs: dict) -> Any:
        return await self._client.send_request(request, **ops.call_options(user_token, kwargs))

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> "TokenVaultClient":
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._client.__aexit__(*exc)

    def __repr__(self) -> str:
        return f"TokenVaultClient(endpoint={self._endpoint!r}, client_id={self.client_id!r})"
