"""``TokenVaultClient``: the four calls of the TokenVault API, on azure-core's pipeline."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Union

from azure.core import PipelineClient
from azure.core.credentials import AccessToken, AzureKeyCredential, TokenCredential
from azure.core.tracing.decorator import distributed_trace

from . import _operations as ops
from ._models import StoredRecord
from ._policies import VaultAuthenticationPolicy, VaultRetryPolicy, build_policies

__all__ = ["TokenVaultClient"]


class TokenVaultClient:
    """A client of one TokenVault deployment.

    :param str endpoint: the function app's base URL (``https://<app>.azurewebsites.net``);
        the client adds ``/api/...``.
    :keyword str client_id: TokenVault's app registration (``TOKENVAULT_CLIENT_ID``); app
        calls ask the credential for ``api://<client_id>/.default``.
    :keyword credential: a ``TokenCredential`` for app calls (client credentials or a managed
        identity of an app listed in ``TOKENVAULT_REDEEM_CALLERS`` with the ``TokenVault.Redeem``
        or ``TokenVault.Admin`` role). Not needed when every call passes ``user_token``.
    :keyword function_key: the Functions key (``x-functions-key``), a string or an
        ``AzureKeyCredential`` (which can be rotated in place).
    :keyword float retry_after_max: the longest ``Retry-After`` (seconds) the client waits
        out before retrying; a longer one is raised at once as ``UpstreamUnavailable``.
    :keyword clock: seconds since the epoch, for the expiry of redeemed tokens (tests pin it).

    Other keywords are azure-core's: ``retry_total``, ``transport``, ``connection_verify``,
    ``per_call_policies``, ``headers``, ``user_agent``, ...

    Every call takes ``user_token``: the user's access token exactly as the web API received
    it (audience = ``client_id``). With it the call acts as that user (a user reaches only
    their own record); without it, as the app.
    """

    def __init__(self, endpoint: str, *, client_id: str,
                 credential: Optional[TokenCredential] = None,
                 function_key: Union[str, AzureKeyCredential, None] = None,
                 clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        self._endpoint = ops.normalize_endpoint(endpoint)
        self.client_id = client_id
        self._clock = clock
        retry_after_max = kwargs.pop("retry_after_max", None)
        retry = VaultRetryPolicy(**({"retry_after_max": retry_after_max}
                                    if retry_after_max is not None else {}), **kwargs)
        policies = build_policies(
            authentication=VaultAuthenticationPolicy(credential, client_id),
            retry=retry, function_key=function_key, kwargs=kwargs)
        self._client: PipelineClient = PipelineClient(self._endpoint, policies=policies, **kwargs)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @distributed_trace
    def store(self, scopes: ops.Scopes, *, user_token: str, **kwargs: Any) -> StoredRecord:
        """Store the user's refresh token (the vault runs the On-Behalf-Of exchange).

        :raises ReauthRequired: the identity provider needs the user (MFA, consent): see
            ``claims``. :raises OfflineAccessMissing, TenantNotOnboarded, TenantRevoked,
            InvalidToken, BadRequest, UpstreamUnavailable: as their names say.
        """
        request = ops.store_request(self._endpoint, scopes)
        return ops.read_record(self._send(request, user_token, kwargs), expected=201)

    @distributed_trace
    def redeem(self, scopes: ops.Scopes, *, user_token: Optional[str] = None,
               tenant_id: Optional[str] = None, user_id: Optional[str] = None,
               **kwargs: Any) -> AccessToken:
        """A fresh access token for a stored user: the user's own (``user_token``), or, as the
        app, any user's (``tenant_id`` and ``user_id``).

        :raises NotFound: nothing is stored: sign the user in and store.
        :raises ReauthRequired: the stored refresh token is dead (``claims`` when given).
        :raises ScopeNotStored, TenantRevoked, InsufficientPermissions, UpstreamUnavailable.
        """
        request = ops.redeem_request(self._endpoint, scopes, tenant_id, user_id)
        return ops.read_access_token(self._send(request, user_token, kwargs), self._clock())

    @distributed_trace
    def describe(self, tenant_id: str, user_id: str, *, user_token: Optional[str] = None,
                 **kwargs: Any) -> StoredRecord:
        """A record's metadata. :raises NotFound: nothing is stored."""
        request = ops.record_request(self._endpoint, "GET", tenant_id, user_id)
        return ops.read_record(self._send(request, user_token, kwargs))

    @distributed_trace
    def forget(self, tenant_id: str, user_id: str, *, user_token: Optional[str] = None,
               **kwargs: Any) -> None:
        """Delete a record (the user themself, or an app with ``TokenVault.Admin``).
        :raises NotFound: nothing is stored."""
        request = ops.record_request(self._endpoint, "DELETE", tenant_id, user_id)
        ops.read_no_content(self._send(request, user_token, kwargs))

    def _send(self, request: Any, user_token: Optional[str], kwargs: dict) -> Any:
        return self._client.send_request(request, **ops.call_options(user_token, kwargs))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "TokenVaultClient":
        self._client.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._client.__exit__(*exc)

    def __repr__(self) -> str:
        return f"TokenVaultClient(endpoint={self._endpoint!r}, client_id={self.client_id!r})"
