"""HTTP plumbing the adapters share: read the environment per request only when it says
something, and keep as many connections as the sweep uses at once.

``requests`` looks for proxy settings (and a CA bundle, and ``.netrc``) in the environment on
every request when a session trusts it, and azure-core's transport lets it; that costs 0.2–0.5 ms
of CPU a request here (docs/field-notes.md), for nothing when no proxy is configured — as in
Azure. So sessions get ``trust_env = False`` and azure-core clients ``use_env_settings=False``
unless a proxy variable is set (a developer behind a proxy: then everything reads the
environment as before). A CA bundle named by ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (a
local run trusting the fakes' CA) is read once, here, and handed over explicitly as the
session's ``verify`` and the clients' ``connection_verify``; an explicit value given by the
caller wins.

A ``requests`` session keeps at most ``pool_maxsize`` (default 10) connections per host; more
requests at once open connections that are dropped afterwards (with a urllib3 warning each).
The sweep works up to (batchSize + newBatchThreshold) messages at once per instance, each with
``TOKENVAULT_SWEEP_CONCURRENCY`` records in flight, so the pools are sized to that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

__all__ = ["proxy_configured", "ca_bundle", "http_session", "azure_client_options",
           "pool_size", "HOST_MESSAGES"]

#: Messages the Functions host works at once per instance: host.json's queues.batchSize (4)
#: plus newBatchThreshold (2). "The maximum number of messages processed in parallel by the
#: job is NewBatchThreshold plus BatchSize" —
#: https://azuresdkdocs.z19.web.core.windows.net/dotnet/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/5.3.3/api/Microsoft.Azure.WebJobs.Host/Microsoft.Azure.WebJobs.Host.QueuesOptions.html
#: (tests/unit/test_transport.py keeps it equal to host.json).
HOST_MESSAGES = 6
# azure-core's transport retries itself (its RetryPolicy); the connection pool must not.
_NO_RETRIES = Retry(total=False, redirect=False, raise_on_status=False)
# Passed through to azure-core's transport, which reads them when it is built.
_CONNECTION_OPTIONS = ("connection_timeout", "read_timeout", "connection_verify",
                       "connection_cert", "connection_data_block_size")


def proxy_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a proxy (``*_proxy``, ``no_proxy``, any case) is configured in the environment:
    then requests must keep reading it on every request."""
    env = os.environ if environ is None else environ
    return any(value and name.upper().endswith("_PROXY") for name, value in env.items())


def ca_bundle(environ: Mapping[str, str] | None = None) -> str | None:
    """The CA bundle the environment names for requests, as requests itself would pick it."""
    env = os.environ if environ is None else environ
    return env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or None


def pool_size(concurrency: int) -> int:
    """Connections to keep per host for a process whose sweep maintains ``concurrency``
    records per message: every message the host works at once may have that many in flight."""
    return max(10, concurrency * HOST_MESSAGES)


def http_session(*, pool: int = 10, environ: Mapping[str, str] | None = None) -> requests.Session:
    """The ``requests`` session for msal and the caller-token key fetches."""
    session = requests.Session()
    session.trust_env = proxy_configured(environ)
    bundle = ca_bundle(environ)
    if bundle and not session.trust_env:
        session.verify = bundle
    adapter = HTTPAdapter(pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def azure_client_options(options: Mapping | None = None, *, pool: int | None = None,
                         environ: Mapping[str, str] | None = None) -> dict:
    """``options`` for one azure-core client, plus ``use_env_settings`` (and the environment's
    CA bundle) as the environment calls for and, with ``pool``, a transport of its own keeping
    that many connections. Call it once per client: a transport belongs to the client it is
    given to."""
    merged = dict(options or {})
    merged.setdefault("use_env_settings", proxy_configured(environ))
    bundle = ca_bundle(environ)
    if bundle and not merged["use_env_settings"]:
        merged.setdefault("connection_verify", bundle)
    if pool is None or "transport" in merged:
        return merged
    session = requests.Session()
    session.trust_env = merged["use_env_settings"]
    adapter = HTTPAdapter(max_retries=_NO_RETRIES, pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    merged["transport"] = RequestsTransport(
        session=session, session_owner=True, use_env_settings=merged["use_env_settings"],
        **{k: merged[k] for k in _CONNECTION_OPTIONS if k in merged})
    return merged
