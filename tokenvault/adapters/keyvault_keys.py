"""Per-tenant data keys, read side, from Key Vault: ``KeyVaultKeys``.

A tenant's key is the secret ``tenant-<tenant_id>`` (``key_format``). The function only reads
keys; ``key_admin`` writes them. Lookups sit on every request's path, so a fetched key is
cached: a hit is one dict lookup and one clock compare. Every entry — "latest", a version, or
the fact that a key is missing — is trusted for ``ttl`` seconds and then checked with the store
again, which is what bounds how long a revoked (deleted) tenant key stays usable.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.keyvault.secrets import SecretClient

from ..errors import TenantKeyInvalid, TenantNotOnboarded, TenantRevoked, VaultError
from ..model import TenantKey
from ..observe import KEY_VAULT_CALLS, NullObserver, Observer
from ..ports import Keys
from ..singleflight import SingleFlight
from .key_format import decode_key, secret_name
from .keyvault_errors import translate
from .transport import azure_client_options

__all__ = ["KeyVaultKeys"]

_log = logging.getLogger(__name__)

_VERSION = re.compile(r"[0-9a-f]{32}\Z")
_MAX_ENTRIES = 10_000
_NEGATIVE = (TenantNotOnboarded, TenantRevoked, TenantKeyInvalid)


class _Entry:
    __slots__ = ("key", "error", "expires")

    def __init__(self, key: TenantKey | None, error: type[VaultError] | None, expires: float) -> None:
        self.key, self.error, self.expires = key, error, expires


class _Cache:
    """Keys and known absences by (tenant, version; None for latest), each trusted for ``ttl``.

    Reads take no lock; writes do, and concurrent misses for one slot share one fetch.
    Absences are cached too, so a flood of requests for a tenant without a key does not turn
    into a flood of Key Vault reads (4,000 per 10 s per vault, shared by every tenant).
    """

    def __init__(self, ttl: float, monotonic: Callable[[], float], max_entries: int = _MAX_ENTRIES) -> None:
        self._ttl, self._monotonic, self._max = ttl, monotonic, max_entries
        self._entries: dict[tuple[str, str | None], _Entry] = {}
        self._lock = threading.Lock()
        self._flight: SingleFlight[TenantKey] = SingleFlight()

    def lookup(self, slot: tuple[str, str | None], fetch: Callable[[], TenantKey]) -> TenantKey:
        entry = self._entries.get(slot)
        if entry is None or self._monotonic() >= entry.expires:
            return self._flight.do(slot, lambda: self._refresh(slot, fetch))
        if entry.key is None:
            assert entry.error is not None  # an entry holds a key or the error of its absence
            raise entry.error()
        return entry.key

    def _refresh(self, slot: tuple[str, str | None], fetch: Callable[[], TenantKey]) -> TenantKey:
        expires = self._monotonic() + self._ttl
        try:
            key = fetch()
        except _NEGATIVE as error:
            self._store(slot, _Entry(None, type(error), expires))
            raise
        self._store(slot, _Entry(key, None, expires))
        if slot[1] is None:
            self._store((slot[0], key.version), _Entry(key, None, expires))
        return key

    def _store(self, slot: tuple[str, str | None], entry: _Entry) -> None:
        with self._lock:
            if len(self._entries) >= self._max and slot not in self._entries:
                now = self._monotonic()
                for stale in [s for s, e in self._entries.items() if e.expires <= now]:
                    del self._entries[stale]
                if len(self._entries) >= self._max:
                    for oldest in list(self._entries)[:max(1, self._max // 2)]:
                        del self._entries[oldest]
            self._entries[slot] = entry


class _BoundedRetry(RetryPolicy):
    """Retry a blip, but hand a long Retry-After back to the caller (as our own 503 with
    Retry-After) instead of sleeping through it on a request's path."""

    max_wait = 2.0

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        wait = self.get_retry_after(response)
        if wait is not None and wait > self.max_wait:
            return False
        return super().is_retry(settings, response)


def _client_options(options: dict) -> dict:
    retry = {"retry_total": 2, "retry_backoff_factor": 0.2,
             **{k: options.pop(k) for k in list(options) if k.startswith("retry_")}}
    # azure-core waits 300 s by default; a request should fail over to a 503 long before.
    return azure_client_options({"retry_policy": _BoundedRetry(**retry), "connection_timeout": 5,
                                 "read_timeout": 10, **options})


class KeyVaultKeys(Keys):
    """Tenant keys from Key Vault secrets, cached for ``ttl`` seconds.

    Needs the **Key Vault Secrets User** role on the vault (secrets/get). ``client_options``
    go to the ``SecretClient`` (e.g. ``connection_verify``, ``verify_challenge_resource``);
    ``client`` replaces it outright. ``observer`` counts the reads that reach Key Vault
    (``KEY_VAULT_CALLS``; cache hits are not calls).
    """

    def __init__(self, vault_url: str, credential: TokenCredential, *, ttl: float = 300,
                 monotonic: Callable[[], float] = time.monotonic, client: SecretClient | None = None,
                 observer: Observer | None = None, **client_options: Any) -> None:
        self._client = client or SecretClient(vault_url, credential, **_client_options(client_options))
        self._cache = _Cache(ttl, monotonic)
        self._vault_url = vault_url
        self._observer = observer or NullObserver()

    def __repr__(self) -> str:
        return f"KeyVaultKeys({self._vault_url!r})"

    def close(self) -> None:
        self._client.close()

    def latest(self, tenant_id: str) -> TenantKey:
        """The newest version of ``tenant-<tenant_id>``. Role: Key Vault Secrets User.

        :raises TenantNotOnboarded: no such secret (or it is deleted or disabled).
        :raises TenantKeyInvalid, UpstreamUnavailable, InternalError (access refused).
        """
        name = secret_name(tenant_id)
        return self._cache.lookup((tenant_id, None),
                                  lambda: self._fetch(tenant_id, name, None, TenantNotOnboarded))

    def get(self, tenant_id: str, version: str) -> TenantKey:
        """One version of ``tenant-<tenant_id>``. Role: Key Vault Secrets User.

        :raises TenantRevoked: the version or the whole secret is gone (or disabled).
        :raises TenantKeyInvalid, UpstreamUnavailable, InternalError (access refused).
        """
        name = secret_name(tenant_id)
        if not isinstance(version, str) or not _VERSION.match(version):
            raise TenantRevoked()  # no Key Vault version looks like that: nothing to ask
        return self._cache.lookup((tenant_id, version),
                                  lambda: self._fetch(tenant_id, name, version, TenantRevoked))

    def _fetch(self, tenant_id: str, name: str, version: str | None,
               missing: type[VaultError]) -> TenantKey:
        operation = "get_secret" if version else "get_latest_secret"
        try:
            secret = self._client.get_secret(name, version)
        except AzureError as exc:
            error = translate(exc, missing=missing)
            self._observer.add(KEY_VAULT_CALLS, operation=operation, outcome=error.code)
            raise error from exc
        self._observer.add(KEY_VAULT_CALLS, operation=operation, outcome="ok")
        props = secret.properties
        return decode_key(tenant_id, props.version or "", secret.value, props.created_on)


