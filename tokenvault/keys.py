"""Per-tenant data keys, read side: ``KeyVaultKeys`` (Key Vault secrets) and ``LocalKeyring``.

A tenant's key is the secret ``tenant-<tenant_id>``: base64 of 32 random bytes, one Key Vault
version per key version (DESIGN.md "Keys"). The function only reads keys; ``key_admin`` writes
them. Lookups sit on every request's path, so a fetched key is cached: a hit is one dict lookup
and one clock compare. Every entry — "latest", a version, or the fact that a key is missing —
is trusted for ``ttl`` seconds and then checked with the store again, which is what bounds how
long a revoked (deleted) tenant key stays usable.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.keyvault.secrets import SecretClient

from .errors import (
    InternalError,
    SettingError,
    TenantKeyInvalid,
    TenantNotOnboarded,
    TenantRevoked,
    UpstreamUnavailable,
    VaultError,
)
from .keyring import position_created, read_keyring
from .model import TenantKey, valid_id
from .ports import Keys
from .sensitive import Sensitive
from .singleflight import SingleFlight

__all__ = ["KeyVaultKeys", "LocalKeyring", "secret_name", "READER_ROLE"]

_log = logging.getLogger(__name__)

READER_ROLE = "Key Vault Secrets User"
_VERSION = re.compile(r"[0-9a-f]{32}\Z")
_MAX_ENTRIES = 10_000
_NEGATIVE = (TenantNotOnboarded, TenantRevoked, TenantKeyInvalid)


def secret_name(tenant_id: str) -> str:
    return "tenant-" + valid_id(tenant_id, "tenant_id")


def decode_key(tenant_id: str, version: str, value: object, created: datetime | None) -> TenantKey:
    """The key from a secret's value; anything but base64 of 32 bytes is ``TenantKeyInvalid``."""
    try:
        material = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        material = b""
    if len(material) != 32:
        # The value itself is never logged: a near-miss of a key is still most of a key.
        _log.error("tenant key invalid: code=tenant_key_invalid tenant=%s version=%s "
                   "(not base64 of 32 bytes)", tenant_id, version)
        raise TenantKeyInvalid()
    return TenantKey(tenant_id, version, Sensitive(material), created)


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
            raise entry.error()  # type: ignore[misc]
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

    def is_retry(self, settings, response) -> bool:
        wait = self.get_retry_after(response)
        if wait is not None and wait > self.max_wait:
            return False
        return super().is_retry(settings, response)


def _client_options(options: dict) -> dict:
    retry = {"retry_total": 2, "retry_backoff_factor": 0.2,
             **{k: options.pop(k) for k in list(options) if k.startswith("retry_")}}
    # azure-core waits 300 s by default; a request should fail over to a 503 long before.
    return {"retry_policy": _BoundedRetry(**retry), "connection_timeout": 5, "read_timeout": 10,
            **options}


class KeyVaultKeys(Keys):
    """Tenant keys from Key Vault secrets, cached for ``ttl`` seconds.

    Needs the **Key Vault Secrets User** role on the vault (secrets/get). ``client_options``
    go to the ``SecretClient`` (e.g. ``connection_verify``, ``verify_challenge_resource``);
    ``client`` replaces it outright.
    """

    def __init__(self, vault_url: str, credential, *, ttl: float = 300,
                 monotonic: Callable[[], float] = time.monotonic, client: SecretClient | None = None,
                 **client_options) -> None:
        self._client = client or SecretClient(vault_url, credential, **_client_options(client_options))
        self._cache = _Cache(ttl, monotonic)
        self._vault_url = vault_url

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
        try:
            secret = self._client.get_secret(name, version)
        except AzureError as exc:
            raise _translate(exc, missing=missing) from exc
        props = secret.properties
        return decode_key(tenant_id, props.version or "", secret.value, props.created_on)


def _retry_after(exc: AzureError) -> int | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return math.ceil(float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return math.ceil((moment - datetime.now(timezone.utc)).total_seconds())


def _inner_code(exc: AzureError) -> str | None:
    inner = getattr(getattr(exc, "error", None), "innererror", None)
    return inner.get("code") if isinstance(inner, dict) else None


def _translate(exc: AzureError, *, missing: type[VaultError] = TenantNotOnboarded,
               role: str = READER_ROLE) -> VaultError:
    """The VaultError for an Azure SDK error from a Key Vault call.

    ``missing`` is what an absent secret means to the caller (not onboarded for "latest",
    revoked for a version); a disabled secret counts as absent. ``role`` is named in the log
    line when Key Vault refuses access, which is a deployment mistake, not a caller's.
    """
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return missing()
    if status == 403 and _inner_code(exc) == "SecretDisabled":
        return missing()
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)) or status in (408, 429) \
            or (status is not None and status >= 500):
        retry_after = _retry_after(exc)
        _log.warning("Key Vault unavailable: code=upstream_unavailable status=%s retry_after=%s error=%s",
                     status, retry_after, type(exc).__name__)
        return UpstreamUnavailable(retry_after=retry_after or 5, upstream="key_vault")
    if status in (401, 403) or isinstance(exc, ClientAuthenticationError):
        _log.error("Key Vault refused access: code=internal status=%s; the function's identity needs "
                   "the '%s' role on the vault", status, role)
        return InternalError()
    _log.error("Key Vault call failed: code=internal status=%s error=%s", status, type(exc).__name__)
    return InternalError()


_INVALID = "invalid"


class LocalKeyring(Keys):
    """Tenant keys from the local keyring file, for local runs and tests; refused in Azure.

    The file is re-read when it changes (checked at most once a second, and at least once per
    ``ttl``), so an edit — or the ops CLI — takes effect like a Key Vault change.
    """

    def __init__(self, path: Path, *, ttl: float = 300, monotonic: Callable[[], float] = time.monotonic,
                 in_azure: bool = False) -> None:
        if in_azure:
            raise SettingError("TOKENVAULT_LOCAL_KEYRING",
                               "refused when running in Azure; set TOKENVAULT_KEY_VAULT_URL")
        self._path = Path(path)
        self._interval = min(ttl, 1.0)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stamp: tuple | None = ()
        self._tenants: dict[str, list[TenantKey] | str] | None = {}
        self._next_check = -math.inf

    def __repr__(self) -> str:
        return f"LocalKeyring({str(self._path)!r})"

    def latest(self, tenant_id: str) -> TenantKey:
        return self._versions(tenant_id, TenantNotOnboarded)[-1]

    def get(self, tenant_id: str, version: str) -> TenantKey:
        for key in self._versions(tenant_id, TenantRevoked):
            if key.version == version:
                return key
        raise TenantRevoked()

    def _versions(self, tenant_id: str, missing: type[VaultError]) -> list[TenantKey]:
        name = secret_name(tenant_id)
        now = self._monotonic()
        if now >= self._next_check:
            with self._lock:
                if now >= self._next_check:
                    self._reload_if_changed()
                    self._next_check = now + self._interval
        tenants = self._tenants
        if tenants is None:
            raise TenantKeyInvalid("The local keyring file is malformed.")
        keys = tenants.get(name)
        if keys == _INVALID:
            raise TenantKeyInvalid()
        if not keys:
            raise missing()
        return keys  # type: ignore[return-value]

    def _reload_if_changed(self) -> None:
        try:
            info = os.stat(self._path)
            stamp: tuple | None = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            document = read_keyring(self._path)
        except TenantKeyInvalid:
            self._tenants = None
            return
        tenants: dict[str, list[TenantKey] | str] = {}
        for name, versions in document["secrets"].items():
            tenant_id = name.removeprefix("tenant-")
            try:
                tenants[name] = [decode_key(tenant_id, v["version"], v.get("value"), position_created(i))
                                 for i, v in enumerate(versions)]
            except TenantKeyInvalid:
                tenants[name] = _INVALID
        self._tenants = tenants
