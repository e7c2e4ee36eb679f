"""The composition root: settings → adapters → vault, once per process, on first use.

``function_app`` imports this module and nothing heavier: the Azure SDKs, msal and the vault
are imported and built when the first request, timer tick or queue message arrives. A bad
setting is then a ``SettingError`` — one log line naming the setting and a 500 ``internal``
answer — and the next call tries again, so fixing the app setting heals the app without a
crash loop of the worker.

The builders (``build_keys``, ``build_records``, ``build_queue``, ``build_key_admin``,
``build_sweep``) are the one place each adapter is made from settings: ``compose`` uses them for
the app, the ops CLI for its commands. Tests and the dev host compose the same way, passing what
differs locally (a credential for the Key Vault fake, an HTTP session that trusts a test CA).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import azure.functions as func

from . import __version__
from .errors import SettingError

if TYPE_CHECKING:  # the heavy imports stay out of function_app's import time
    from azure.core.credentials import TokenCredential

    from .adapters.key_admin import KeyAdmin
    from .adapters.storage_queue import StorageQueue
    from .adapters.table_records import TableRecords
    from .http import Api
    from .observe import Observer
    from .ports import Clock, Keys, Queue, Records
    from .settings import BackendSettings, Settings, StorageConnection
    from .sweep import Planner, SweepHandler, Worker
    from .vault import Vault

__all__ = ["App", "Credentials", "compose", "build_keys", "build_records", "build_queue",
           "build_key_admin", "build_sweep", "api", "sweep", "health", "openapi", "install",
           "reset", "current", "telemetry", "LIBRARY_LOG_LEVELS", "quiet_libraries",
           "log_levels"]

log = logging.getLogger("tokenvault.bootstrap")

#: Levels of the libraries' loggers. They must be set here, in the process: the Functions host
#: files every record of the Python worker under ``Function.<name>.User``, so host.json's
#: per-logger levels never reach them, and at their default level every Key Vault, Table and
#: Queue request (azure.core's http_logging_policy) and every token request (msal, urllib3)
#: would be logged at Information in Azure. The dev host uses the same levels.
LIBRARY_LOG_LEVELS = {"azure": logging.WARNING, "msal": logging.WARNING, "urllib3": logging.WARNING}


def quiet_libraries() -> None:
    """Set the libraries' logger levels (LIBRARY_LOG_LEVELS); idempotent."""
    for name, level in LIBRARY_LOG_LEVELS.items():
        logging.getLogger(name).setLevel(level)


def log_levels() -> None:
    """The libraries quiet (``quiet_libraries``) and the app's own records at INFO at least,
    whatever the root logger's level: the audit trail and the sweep's summaries are INFO
    records and must reach the handlers (the exporter's among them). Idempotent; a level set
    lower (DEBUG, in tests) is kept."""
    quiet_libraries()
    own = logging.getLogger("tokenvault")
    if own.getEffectiveLevel() > logging.INFO:
        own.setLevel(logging.INFO)


@dataclass(frozen=True)
class App:
    """Everything one process serves with, built once."""

    settings: "Settings"
    vault: "Vault"
    api: "Api"
    sweep: "SweepHandler"
    keys: "Keys"
    records: "Records"
    clock: "Clock"
    #: where spans and metrics go (a NullObserver when telemetry is off)
    observer: "Observer"
    #: the SDK clients holding connections, closed by ``close``.
    clients: tuple = ()

    def close(self) -> None:
        """Close the SDK clients' connections (tests and local hosts; Azure ends the process)."""
        for client in self.clients:
            client.close()


class Credentials:
    """The Azure credentials the adapters authenticate with, made on first need.

    ``fixed`` (tests, benchmarks) is used for everything. Otherwise one credential per
    managed-identity client id: in Azure a ``ManagedIdentityCredential`` for a user-assigned
    identity (``DefaultAzureCredential``'s chain would only add start-up probes there),
    elsewhere ``DefaultAzureCredential`` (a developer's or a pipeline's sign-in).
    """

    def __init__(self, *, fixed: Any = None, in_azure: bool = False,
                 client_id: str | None = None) -> None:
        self._fixed, self._in_azure, self._client_id = fixed, in_azure, client_id
        self._made: dict[str | None, Any] = {}

    def get(self, client_id: str | None = None) -> "TokenCredential":
        """The credential of ``client_id`` (default: the app's own managed identity)."""
        if self._fixed is not None:
            return self._fixed
        client_id = client_id or self._client_id
        if client_id not in self._made:
            from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

            self._made[client_id] = ManagedIdentityCredential(client_id=client_id) \
                if self._in_azure and client_id \
                else DefaultAzureCredential(managed_identity_client_id=client_id)
        return self._made[client_id]

    def for_storage(self, connection: "StorageConnection") -> "TokenCredential":
        """The credential of identity-based storage: the connection's own client id
        (``AzureWebJobsStorage__clientId``), as the Functions host does. (A connection string
        needs none: the builders use this only for identity-based connections.)"""
        return self.get(connection.client_id)


# --- builders: each adapter from settings, in one place ----------------------------------

def build_keys(backend: "BackendSettings", credentials: Credentials, *,
               observer: "Observer | None" = None, **options: Any) -> "Keys":
    """The read side of the tenant keys. ``options`` go to ``KeyVaultKeys`` (and from there
    to ``SecretClient``); ``observer`` counts its Key Vault reads."""
    if backend.key_vault_url:
        from .adapters.keyvault_keys import KeyVaultKeys

        return KeyVaultKeys(backend.key_vault_url, credentials.get(), ttl=backend.key_cache_ttl,
                            observer=observer, **options)
    from .adapters.local_keyring import LocalKeyring

    assert backend.local_keyring is not None  # BackendSettings requires one or the other
    return LocalKeyring(backend.local_keyring, ttl=backend.key_cache_ttl, in_azure=backend.in_azure)


def build_key_admin(backend: "BackendSettings", credentials: Credentials,
                    **options: Any) -> "KeyAdmin":
    """The write side of the tenant keys (ops). ``options`` go to the ``SecretClient``."""
    from .adapters.key_admin import KeyVaultKeyAdmin, LocalKeyringAdmin

    if backend.key_vault_url:
        return KeyVaultKeyAdmin(backend.key_vault_url, credentials.get(), **options)
    assert backend.local_keyring is not None
    return LocalKeyringAdmin(backend.local_keyring)


def build_records(backend: "BackendSettings", credentials: Credentials, *,
                  pool: int | None = None, **options: Any) -> "TableRecords":
    """The record table. ``options`` are azure-core client options (retries, timeouts, hooks);
    ``pool``: connections to keep (``adapters.transport.pool_size``)."""
    from .adapters.table_records import TableRecords

    storage = backend.storage
    if storage.connection_string is not None:
        return TableRecords.from_connection_string(storage.connection_string.reveal(),
                                                   backend.table, pool=pool, **options)
    assert storage.table_endpoint is not None
    return TableRecords.from_endpoint(storage.table_endpoint, backend.table,
                                      credentials.for_storage(storage), pool=pool, **options)


def build_queue(backend: "BackendSettings", credentials: Credentials,
                **options: Any) -> "StorageQueue":
    """The sweep's queue (on the host's storage). ``options`` as for ``build_records``."""
    from .adapters.storage_queue import StorageQueue

    storage = backend.queue_storage
    if storage.connection_string is not None:
        return StorageQueue.from_connection_string(storage.connection_string.reveal(),
                                                   backend.refresh_queue, **options)
    assert storage.queue_endpoint is not None
    return StorageQueue.from_endpoint(storage.queue_endpoint, backend.refresh_queue,
                                      credentials.for_storage(storage), **options)


def build_sweep(*, vault: "Vault", records: "Records", keys: "Keys", queue: "Queue",
                clock: "Clock", refresh_after: timedelta, allowed_tenants: frozenset[str],
                time_budget: timedelta | None = None,
                concurrency: int | None = None,
                observer: "Observer | None" = None) -> tuple["Planner", "Worker"]:
    """The sweep's planner and worker over one queue. ``time_budget``: how long one plan may
    run before it continues itself in a message (default: the planner's, within a function's
    timeout); ``concurrency``: records of one tenant worked at once (default: the worker's)."""
    from .sweep import Planner, Worker

    planner_of = partial(Planner, records=records, keys=keys, queue=queue, clock=clock,
                         refresh_after=refresh_after, allowed_tenants=allowed_tenants,
                         observer=observer)
    planner = planner_of() if time_budget is None else planner_of(time_budget=time_budget)
    worker_of = partial(Worker, vault=vault, queue=queue, clock=clock, refresh_after=refresh_after,
                        observer=observer)
    worker = worker_of() if concurrency is None else worker_of(concurrency=concurrency)
    return planner, worker


def compose(settings: "Settings", *, credential: Any = None, session: Any = None,
            key_vault_options: dict | None = None, storage_options: dict | None = None,
            clock: "Clock | None" = None, observer: "Observer | None" = None) -> App:
    """Build the app from settings with the real adapters.

    ``credential`` reaches Key Vault and identity-based storage (default: ``Credentials``);
    ``session`` is the ``requests`` session msal and the JWKS fetches use (default: one that
    reads the environment per request only when a proxy or CA bundle is set there, with
    connections for the sweep's concurrency); ``key_vault_options`` go to ``KeyVaultKeys``;
    ``storage_options`` go to the table and queue clients; ``clock`` is the vault's and the
    sweep's time (tests pin it); ``observer`` receives spans and metrics (default: none are
    recorded).
    """
    from .access_cache import AccessTokenCache
    from .adapters.caller_tokens import CallerTokenValidator
    from .adapters.entra import EntraIdentityProvider
    from .adapters.transport import http_session, pool_size
    from .http import Api
    from .observe import NullObserver, ObservedIdentityProvider
    from .ports import SystemClock
    from .sweep import SweepHandler
    from .vault import Vault

    observer = observer or NullObserver()
    backend = settings.backend
    credentials = Credentials(fixed=credential, in_azure=backend.in_azure,
                              client_id=settings.managed_identity_client_id)
    pool = pool_size(settings.sweep_concurrency)
    session = session or http_session(pool=pool)
    keys = build_keys(backend, credentials, observer=observer, **(key_vault_options or {}))
    records = build_records(backend, credentials, pool=pool, **(storage_options or {}))
    queue = build_queue(backend, credentials, **(storage_options or {}))
    if not backend.in_azure:
        # In Azure the infrastructure creates the table and the queues (infra/app/storage.bicep)
        # and the app's roles are scoped to them; a cold start there makes no extra calls.
        records.ensure_table()
        queue.ensure_queue()

    clock = clock or SystemClock()
    identity = ObservedIdentityProvider(
        EntraIdentityProvider.from_settings(settings, session=session), observer)
    vault = Vault(client_id=settings.client_id, keys=keys, records=records, identity=identity,
                  clock=clock, access_tokens=AccessTokenCache(),
                  allowed_tenants=settings.allowed_tenants)
    api = Api(vault=vault, authenticate=CallerTokenValidator.from_settings(settings, session=session),
              redeem_callers=settings.redeem_callers, clock=clock, observer=observer)
    planner, worker = build_sweep(vault=vault, records=records, keys=keys, queue=queue,
                                  clock=clock, refresh_after=settings.refresh_after,
                                  allowed_tenants=settings.allowed_tenants,
                                  concurrency=settings.sweep_concurrency, observer=observer)
    return App(settings=settings, vault=vault, api=api, keys=keys, records=records, clock=clock,
               observer=observer,
               sweep=SweepHandler(planner=planner, worker=worker, queue=queue, observer=observer),
               clients=tuple(c for c in (keys, records, queue) if hasattr(c, "close")))


# --- the process's app: built lazily, once ----------------------------------------------

_lock = threading.Lock()
_app: App | None = None


def current() -> App:
    """The process's app, composed on first use from the environment.

    :raises SettingError: a setting is bad; logged once per attempt as one line.
    """
    global _app
    if _app is not None:
        return _app
    with _lock:
        if _app is None:
            from .settings import Settings

            log_levels()  # before any SDK client exists, whatever the settings say
            try:
                settings = Settings.from_environ()
                _app = compose(settings, observer=telemetry())
            except SettingError as error:
                log.error("configuration error: %s", error.message)
                raise
    return _app


def telemetry() -> "Observer":
    """The process's telemetry, set up on first use from the environment (``TOKENVAULT_TELEMETRY``,
    ``APPLICATIONINSIGHTS_CONNECTION_STRING``): OpenTelemetry is imported only when it is on.

    :raises SettingError: ``TOKENVAULT_TELEMETRY`` is not a mode.
    """
    from .settings import telemetry_mode

    mode = telemetry_mode(os.environ)
    if mode == "none":
        from .observe import NullObserver

        return NullObserver()
    from .adapters.telemetry import configure

    return configure(mode)


def install(app: App | None) -> None:
    """Serve with ``app`` from now on (tests, the dev host); None: compose again on next use."""
    global _app
    with _lock:
        _app = app


def reset() -> None:
    install(None)


def api() -> "Api":
    return current().api


def sweep() -> "SweepHandler":
    return current().sweep


def health() -> func.HttpResponse:
    # Liveness only: composing here would make a probe depend on Key Vault and storage.
    return _json({"status": "ok", "version": __version__})


def openapi() -> func.HttpResponse:
    from .openapi import document

    return _json(document(__version__))


def _json(body: dict) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json",
                             charset="utf-8", headers={"Cache-Control": "no-store"})
