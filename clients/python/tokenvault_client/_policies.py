"""The pipeline of the client: azure-core's policies, and the two that know TokenVault.

- ``VaultAuthenticationPolicy``: a call made with a user's token carries exactly that token
  (``Authorization: Bearer <user token>``) and nothing of the app; every other call gets an app
  token from the credential for ``api://<client_id>/.default`` (azure-core's
  ``BearerTokenCredentialPolicy``, which caches it). Bearer tokens go only over TLS, except to
  a loopback address (the local dev host serves plain HTTP).
- ``VaultRetryPolicy``: azure-core's retry, which honours ``Retry-After``, with fewer attempts
  and a ceiling: an answer asking to wait longer than ``retry_after_max`` seconds is not
  waited for but raised at once (``UpstreamUnavailable.retry_after`` says how long), so a web
  request is not held for minutes; and no retry of a 500, which the vault answers for what
  waiting does not fix.

Logging: ``HttpLoggingPolicy`` on the logger ``tokenvault_client.http`` logs method, URL,
status and headers, with every header outside azure-core's allow-list (``Authorization`` and
``x-functions-key`` among them) replaced by ``REDACTED``; bodies are never logged. There is no
``NetworkTraceLoggingPolicy``: it would log bodies, and a redeem's body is an access token —
``logging_enable=True`` therefore changes nothing.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any, List, Optional
from urllib.parse import urlsplit

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.policies import (
    AzureKeyCredentialPolicy,
    BearerTokenCredentialPolicy,
    CustomHookPolicy,
    DistributedTracingPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    ProxyPolicy,
    RequestIdPolicy,
    RetryPolicy,
    UserAgentPolicy,
)

from ._version import VERSION

__all__ = ["VaultAuthenticationPolicy", "VaultRetryPolicy", "USER_TOKEN", "app_scope",
           "build_policies", "HTTP_LOGGER"]

#: The keyword a call passes its user token under; the authentication policy takes it.
USER_TOKEN = "tokenvault_user_token"
_CONTEXT_KEY = "tokenvault.user_token"
HTTP_LOGGER = "tokenvault_client.http"
#: Default attempts after the first, and the longest Retry-After the client waits for.
RETRY_TOTAL = 3
RETRY_AFTER_MAX = 30.0
# Headers of the vault's answers worth seeing in a log; none is secret.
_LOGGED_HEADERS = ("X-Correlation-Id", "Location", "X-Content-Type-Options")


def app_scope(client_id: str) -> str:
    return f"api://{client_id}/.default"


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def take_user_token(request: Any) -> Optional[str]:
    """The call's user token: taken out of the options on the first attempt (the transport
    must not see it as a keyword) and kept in the context for the retries."""
    options = request.context.options
    if USER_TOKEN in options:
        request.context[_CONTEXT_KEY] = options.pop(USER_TOKEN)
    return request.context.get(_CONTEXT_KEY)


def require_tls(request: Any) -> None:
    url = request.http_request.url
    if not url.lower().startswith("https://") and not is_loopback(url):
        raise ServiceRequestError("TokenVault: a bearer token is sent only over https "
                                  "(or to a loopback address).")


def authorize_as_user(request: Any, user_token: str) -> None:
    require_tls(request)
    request.http_request.headers["Authorization"] = f"Bearer {user_token}"


def prepare_app_call(request: Any, has_credential: bool) -> None:
    if not has_credential:
        raise ValueError("TokenVault: this call needs a user_token, or a credential for the "
                         "app given to the client.")
    require_tls(request)
    # azure-core refuses bearer tokens over http; the local dev host is plain http.
    request.context["enforce_https"] = False


class VaultAuthenticationPolicy(BearerTokenCredentialPolicy):
    """A user's token when the call has one; else the app's, from the credential."""

    def __init__(self, credential: Any, client_id: str, **kwargs: Any) -> None:
        super().__init__(credential, app_scope(client_id), **kwargs)

    def send(self, request: Any) -> Any:
        user_token = take_user_token(request)
        if user_token is not None:
            authorize_as_user(request, user_token)
            return self.next.send(request)
        prepare_app_call(request, self._credential is not None)
        return super().send(request)


class RetryAfterCeiling:
    """Mixed into azure-core's retry policies: no wait longer than ``retry_after_max``."""

    def __init__(self, *, retry_after_max: float = RETRY_AFTER_MAX, **kwargs: Any) -> None:
        kwargs.setdefault("retry_total", RETRY_TOTAL)
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self.retry_after_max = retry_after_max

    def is_retry(self, settings: Any, response: Any) -> bool:
        retry_after = self.get_retry_after(response)  # type: ignore[attr-defined]
        if retry_after is not None and retry_after > self.retry_after_max:
            return False
        # The vault's 500 (`internal`) is a bad setting or key, not a blip: asking again only
        # makes the caller wait (azure-core would retry it three times, backing off).
        if response.http_response.status_code == 500 and retry_after is None:
            return False
        return super().is_retry(settings, response)  # type: ignore[misc]


class VaultRetryPolicy(RetryAfterCeiling, RetryPolicy):
    pass


def build_policies(*, authentication: Any, retry: Any, function_key: Any,
                   kwargs: dict) -> List[Any]:
    """The policies in the order azure-core's own clients use: per call, retry, per attempt
    (authentication, keys, hooks, tracing, logging)."""
    per_call = _listed(kwargs.pop("per_call_policies", None))
    per_retry = _listed(kwargs.pop("per_retry_policies", None))
    logging_policy = HttpLoggingPolicy(logging.getLogger(HTTP_LOGGER), **kwargs)
    logging_policy.allowed_header_names.update(_LOGGED_HEADERS)
    policies: List[Any] = [
        RequestIdPolicy(**kwargs),
        HeadersPolicy(**kwargs),
        UserAgentPolicy(sdk_moniker=f"tokenvault-client/{VERSION}", **kwargs),
        ProxyPolicy(**kwargs),
        *per_call,
        retry,
        authentication,
    ]
    if function_key is not None:
        key = function_key if isinstance(function_key, AzureKeyCredential) \
            else AzureKeyCredential(function_key)
        # The Functions host's key, as defence in depth beside the bearer token.
        policies.append(AzureKeyCredentialPolicy(key, "x-functions-key"))
    policies += [CustomHookPolicy(**kwargs), *per_retry, DistributedTracingPolicy(**kwargs),
                 logging_policy]
    return policies


def _listed(policies: Any) -> List[Any]:
    if policies is None:
        return []
    return list(policies) if isinstance(policies, (list, tuple)) else [policies]
