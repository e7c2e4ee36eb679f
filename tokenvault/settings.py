"""Settings, read from the environment once and validated as a whole.

Every name here is a contract with infra and callers (docs/design.md "Settings"). A bad or
missing value raises ``SettingError`` whose message is one line naming the setting, and
never the value (a setting may be a secret or a connection string).

This module is the list of settings: each variable's name, default and meaning, and the
settings read from several variables together (the client credential, a storage connection).
How one variable's text becomes a value is tokenvault/setting_values.py; where a local run's
variables come from is tokenvault/local_settings.py. Both are re-exported here, so
``tokenvault.settings`` stays the one import for all of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from .clouds import PUBLIC, PUBLIC_CLOUD, Cloud, cloud_of
from .errors import SettingError
from .local_settings import LOCAL_SETTINGS, apply_local_settings, local_settings_values
from .model import AppCaller
from .sensitive import Sensitive
from .setting_values import (
    _callers,
    _duration,
    _Env,
    _guid,
    _guid_set,
    _https_url,
    _int,
    _ncrontab,
    _table,
    parse_duration,
)

__all__ = ["Settings", "BackendSettings", "CredentialKind", "StorageConnection", "parse_duration",
           "REFRESH_QUEUE", "AZURE_MARKERS", "running_in_azure", "LOCAL_SETTINGS",
           "local_settings_values", "apply_local_settings", "telemetry_mode", "TELEMETRY_MODES"]

#: The sweep's queue. Fixed: the queue trigger names it, and ops tooling relies on it.
REFRESH_QUEUE = "tokenvault-refresh"
DEFAULT_AUTHORITY_HOST = PUBLIC_CLOUD
DEFAULT_REFRESH_SCHEDULE = "0 0 */6 * * *"
DEFAULT_REFRESH_AFTER = timedelta(days=7)
DEFAULT_KEY_CACHE_TTL = 300
#: Variables the platform sets in every Function App, one of which marks "running in Azure".
#: WEBSITE_SITE_NAME (read-only, the app's name) is there on every plan: the Functions host
#: itself reads it as the site name, on Flex Consumption too. WEBSITE_INSTANCE_ID is NOT set on
#: Flex Consumption (the host's own IsAppService() test is false there), so it can only be a
#: second marker. https://learn.microsoft.com/azure/app-service/reference-app-settings#app-environment
AZURE_MARKERS = ("WEBSITE_SITE_NAME", "WEBSITE_INSTANCE_ID")
#: Records of one tenant the sweep maintains at once per process (refreshes, mostly waiting
#: on the identity provider); see docs/capacity.md for how it was chosen.
DEFAULT_SWEEP_CONCURRENCY = 8


class CredentialKind(str, Enum):
    SECRET = "secret"
    CERTIFICATE = "certificate"
    MANAGED_IDENTITY = "managed_identity"


@dataclass(frozen=True)
class StorageConnection:
    """Either a connection string (Azurite, dev) or identity-based endpoints (Azure)."""

    connection_string: Sensitive[str] | None = field(default=None, repr=False)
    table_endpoint: str | None = None
    queue_endpoint: str | None = None
    #: client id of the user-assigned managed identity for identity-based access
    #: (``<prefix>__clientId``, as the Functions host reads it; else ``AZURE_CLIENT_ID``).
    client_id: str | None = None

    @property
    def identity_based(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class BackendSettings:
    """Where the keys, the records and the sweep's queue are: all that the ops CLI's ``keys``
    and ``records`` commands need, which run without the app's client credential."""

    key_vault_url: str | None
    local_keyring: Path | None
    key_cache_ttl: int
    storage: StorageConnection
    queue_storage: StorageConnection
    table: str = "tokens"
    in_azure: bool = False
    refresh_queue: str = REFRESH_QUEUE
    #: the Microsoft cloud of TOKENVAULT_AUTHORITY_HOST: its storage suffix and token exchange
    #: audience (tokenvault/clouds.py).
    cloud: Cloud = PUBLIC

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "BackendSettings":
        """:raises SettingError: naming the first bad or missing setting."""
        env = _Env(os.environ if environ is None else environ)
        in_azure = running_in_azure(env)
        cloud = cloud_of(env.get("TOKENVAULT_AUTHORITY_HOST"))
        key_vault_url = env.get("TOKENVAULT_KEY_VAULT_URL")
        keyring = env.get("TOKENVAULT_LOCAL_KEYRING")
        if key_vault_url:
            _https_url("TOKENVAULT_KEY_VAULT_URL", key_vault_url)
        elif not keyring:
            raise SettingError("TOKENVAULT_KEY_VAULT_URL",
                               "missing (or set TOKENVAULT_LOCAL_KEYRING for local use)")
        elif in_azure:
            raise SettingError("TOKENVAULT_LOCAL_KEYRING",
                               "refused when running in Azure; set TOKENVAULT_KEY_VAULT_URL")
        webjobs = _storage(env, "AzureWebJobsStorage", cloud)
        own = env.get("TOKENVAULT_STORAGE")
        return cls(
            key_vault_url=key_vault_url.rstrip("/") if key_vault_url else None,
            local_keyring=None if key_vault_url else Path(keyring or ""),
            key_cache_ttl=_int("TOKENVAULT_KEY_CACHE_TTL", env.get("TOKENVAULT_KEY_CACHE_TTL"),
                               DEFAULT_KEY_CACHE_TTL, low=0, high=86400),
            storage=_connection_string("TOKENVAULT_STORAGE", own) if own else webjobs,
            queue_storage=webjobs,
            table=_table("TOKENVAULT_TABLE", env.get("TOKENVAULT_TABLE") or "tokens"),
            in_azure=in_azure,
            cloud=cloud,
        )


@dataclass(frozen=True)
class Settings:
    """Every setting of the app: the client it acts as, who may call it, the sweep's timing,
    and its ``backend``."""

    client_id: str
    credential_kind: CredentialKind
    backend: BackendSettings
    client_secret: Sensitive[str] | None = field(default=None, repr=False)
    client_certificate_path: Path | None = None
    #: client id of the user-assigned managed identity used as federated credential.
    managed_identity_client_id: str | None = None
    authority_host: str = DEFAULT_AUTHORITY_HOST
    allowed_tenants: frozenset[str] = frozenset()
    redeem_callers: frozenset[AppCaller] = frozenset()
    refresh_schedule: str = DEFAULT_REFRESH_SCHEDULE
    refresh_after: timedelta = DEFAULT_REFRESH_AFTER
    sweep_concurrency: int = DEFAULT_SWEEP_CONCURRENCY

    @property
    def in_azure(self) -> bool:
        return self.backend.in_azure

    @property
    def cloud(self) -> Cloud:
        return self.backend.cloud

    def with_backend(self, **changes: Any) -> "Settings":
        """These settings with some backend settings changed (tests: a queue of their own)."""
        return replace(self, backend=replace(self.backend, **changes))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read and validate every setting.

        :raises SettingError: naming the first bad or missing setting.
        """
        env = _Env(os.environ if environ is None else environ)
        client_id = _guid("TOKENVAULT_CLIENT_ID", env.require("TOKENVAULT_CLIENT_ID"))
        kind, secret, cert, mi_client = _client_credential(env)
        return cls(
            client_id=client_id,
            credential_kind=kind,
            backend=BackendSettings.from_environ(environ),
            client_secret=secret,
            client_certificate_path=cert,
            managed_identity_client_id=mi_client,
            authority_host=_https_url("TOKENVAULT_AUTHORITY_HOST",
                                      env.get("TOKENVAULT_AUTHORITY_HOST") or DEFAULT_AUTHORITY_HOST),
            allowed_tenants=_guid_set("TOKENVAULT_ALLOWED_TENANTS", env.get("TOKENVAULT_ALLOWED_TENANTS")),
            redeem_callers=_callers("TOKENVAULT_REDEEM_CALLERS", env.get("TOKENVAULT_REDEEM_CALLERS")),
            refresh_schedule=_ncrontab("TOKENVAULT_REFRESH_SCHEDULE",
                                       env.get("TOKENVAULT_REFRESH_SCHEDULE") or DEFAULT_REFRESH_SCHEDULE),
            refresh_after=_duration("TOKENVAULT_REFRESH_AFTER", env.get("TOKENVAULT_REFRESH_AFTER"),
                                    DEFAULT_REFRESH_AFTER),
            sweep_concurrency=_int("TOKENVAULT_SWEEP_CONCURRENCY",
                                   env.get("TOKENVAULT_SWEEP_CONCURRENCY"),
                                   DEFAULT_SWEEP_CONCURRENCY, low=1, high=64, unit="records"),
        )


#: What ``TOKENVAULT_TELEMETRY`` may say: ``console`` (spans and metrics on stdout, the dev
#: host's default) or ``none``. Unset: Azure Monitor when ``APPLICATIONINSIGHTS_CONNECTION_STRING``
#: is set, else nothing.
TELEMETRY_MODES = ("console", "none")


def telemetry_mode(environ: Mapping[str, str]) -> str:
    """``azure_monitor``, ``console`` or ``none``, from the environment.

    The Application Insights connection string wins over ``console``; ``none`` turns
    telemetry off even where the connection string is set.

    :raises SettingError: ``TOKENVAULT_TELEMETRY`` is neither unset, ``console`` nor ``none``.
    """
    env = _Env(environ)
    chosen = (env.get("TOKENVAULT_TELEMETRY") or "").lower()
    if chosen and chosen not in TELEMETRY_MODES:
        raise SettingError("TOKENVAULT_TELEMETRY", "must be console or none")
    if chosen == "none":
        return "none"
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return "azure_monitor"
    return chosen or "none"


def running_in_azure(environ: Mapping[str, str] | "_Env") -> bool:
    """True in a Function App in Azure (any plan), by a variable the platform always sets."""
    get = environ.get
    return any((get(name) or "").strip() for name in AZURE_MARKERS)


def _client_credential(env: _Env) -> tuple[CredentialKind, Sensitive[str] | None, Path | None, str | None]:
    secret = env.get("TOKENVAULT_CLIENT_SECRET")
    cert = env.get("TOKENVAULT_CLIENT_CERTIFICATE_PATH")
    assertion = env.get("TOKENVAULT_CLIENT_ASSERTION")
    given = [name for name, value in (("TOKENVAULT_CLIENT_SECRET", secret),
                                      ("TOKENVAULT_CLIENT_CERTIFICATE_PATH", cert),
                                      ("TOKENVAULT_CLIENT_ASSERTION", assertion)) if value]
    if not given:
        raise SettingError("TOKENVAULT_CLIENT_SECRET", "missing (or set "
                           "TOKENVAULT_CLIENT_CERTIFICATE_PATH or TOKENVAULT_CLIENT_ASSERTION)")
    if len(given) > 1:
        raise SettingError(given[1], f"set together with {given[0]}; choose one client credential")
    if secret:
        return CredentialKind.SECRET, Sensitive(secret), None, None
    if cert:
        path = Path(cert)
        if not path.is_file():
            raise SettingError("TOKENVAULT_CLIENT_CERTIFICATE_PATH", "no such file")
        return CredentialKind.CERTIFICATE, None, path, None
    if assertion != "managed_identity":
        raise SettingError("TOKENVAULT_CLIENT_ASSERTION", "must be 'managed_identity'")
    # Only a user-assigned identity can be a federated credential of an app registration.
    mi_client = env.get("AZURE_CLIENT_ID")
    if not mi_client:
        raise SettingError("AZURE_CLIENT_ID", "missing: the user-assigned managed identity's client id is "
                                              "required with TOKENVAULT_CLIENT_ASSERTION=managed_identity")
    return CredentialKind.MANAGED_IDENTITY, None, None, _guid("AZURE_CLIENT_ID", mi_client)


def _storage(env: _Env, prefix: str, cloud: Cloud) -> StorageConnection:
    """A Functions-style connection: ``PREFIX`` (a connection string) or ``PREFIX__*`` (identity):
    service URIs, or an account name completed with the cloud's storage suffix."""
    value = env.get(prefix)
    if value:
        return _connection_string(prefix, value)
    account = env.get(f"{prefix}__accountName")
    table = env.get(f"{prefix}__tableServiceUri")
    queue = env.get(f"{prefix}__queueServiceUri")
    if account:
        table = table or f"https://{account}.table.{cloud.storage_suffix}"
        queue = queue or f"https://{account}.queue.{cloud.storage_suffix}"
    if not (table and queue):
        raise SettingError(prefix, "missing (a connection string, or identity-based "
                                   f"{prefix}__accountName)")
    # The host's own storage identity setting; without it the app's user-assigned identity.
    named = f"{prefix}__clientId" if env.get(f"{prefix}__clientId") else "AZURE_CLIENT_ID"
    client_id = env.get(named)
    if client_id is not None:
        client_id = _guid(named, client_id)
    return StorageConnection(table_endpoint=_https_url(f"{prefix}__tableServiceUri", table),
                             queue_endpoint=_https_url(f"{prefix}__queueServiceUri", queue),
                             client_id=client_id)


def _connection_string(name: str, value: str) -> StorageConnection:
    if value == "UseDevelopmentStorage=true":
        return StorageConnection(connection_string=Sensitive(value))
    parts = dict(p.split("=", 1) for p in value.split(";") if "=" in p)
    if not ("AccountName" in parts or "TableEndpoint" in parts or "QueueEndpoint" in parts):
        raise SettingError(name, "not a storage connection string")
    return StorageConnection(connection_string=Sensitive(value))
