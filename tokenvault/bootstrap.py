"""The composition root: settings → adapters → vault, once per process, on first use.

``function_app`` imports this module and nothing heavier: the Azure SDKs, msal and the vault
are imported and built when the first request, timer tick or queue message arrives. A bad
setting is then a ``SettingError`` — one log line naming the setting and a 500 ``internal``
answer — and the next call tries again, so fixing the app setting heals the app without a
crash loop of the worker.

Tests and the dev host compose the same way through ``compose``, passing what differs
locally (a credential for the Key Vault fake, an HTTP session that trusts a test CA).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import azure.functions as func

from . import __version__
from .errors import SettingError

if TYPE_CHECKING:  # the heavy imports stay out of function_app's import time
    from .http import Api
    from .ports import Clock, Keys, Records
    from .settings import Settings
    from .sweep import SweepHandler
    from .vault import Vault

__all__ = ["App", "compose", "api", "sweep", "health", "openapi", "install", "reset"]

log = logging.getLogger("tokenvault.bootstrap")


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
    #: the SDK clients holding connections, closed by ``close``.
    clients: tuple = ()

    def close(self) -> None:
        """Close the SDK clients' connections (tests and local hosts; Azure ends the process)."""
        for client in self.clients:
            client.close()


def compose(settings: "Settings", *, credential: Any = None, session: Any = None,
            key_vault_options: dict | None = None, storage_options: dict | None = None,
            clock: "Clock | None" = None) -> App:
    """Build the app from settings with the real adapters.

    ``credential`` reaches Key Vault and identity-based storage (default: a managed identity
    in Azure, ``DefaultAzureCredential`` elsewhere); ``session`` is the ``requests`` session
    msal and the JWKS fetches use; ``key_vault_options`` go to ``KeyVaultKeys`` (and from there
    to ``SecretClient``); ``storage_options`` go to the table and queue clients (azure-core
    client options: retries, timeouts, request hooks); ``clock`` is the vault's and the
    sweep's time (tests pin it).
    """
    from .access_cache import AccessTokenCache
    from .entra import EntraIdentityProvider
    from .http import Api
    from .keys import KeyVaultKeys, LocalKeyring
    from .ports import SystemClock
    from .queues import StorageQueue
    from .records import TableRecords
    from .sweep import Planner, SweepHandler, Worker
    from .tokens import TokenValidator
    from .vault import Vault

    needs_credential = settings.key_vault_url or settings.storage.connection_string is None \
        or settings.queue_storage.connection_string is None
    if credential is None and needs_credential:
        credential = _azure_credential(settings)
    if settings.key_vault_url:
        keys = KeyVaultKeys(settings.key_vault_url, credential, ttl=settings.key_cache_ttl,
                            **(key_vault_options or {}))
    else:
        keys = LocalKeyring(settings.local_keyring, ttl=settings.key_cache_ttl,
                            in_azure=settings.in_azure)
    storage_options = storage_options or {}
    if settings.storage.connection_string is not None:
        records = TableRecords.from_connection_string(
            settings.storage.connection_string.reveal(), settings.table, **storage_options)
    else:
        records = TableRecords.from_endpoint(settings.storage.table_endpoint, settings.table,
                                             credential, **storage_options)
    if settings.queue_storage.connection_string is not None:
        queue = StorageQueue.from_connection_string(
            settings.queue_storage.connection_string.reveal(), settings.refresh_queue,
            **storage_options)
    else:
        queue = StorageQueue.from_endpoint(settings.queue_storage.queue_endpoint,
                                           settings.refresh_queue, credential, **storage_options)
    if not settings.in_azure:
        # In Azure the infrastructure creates the table and the queues (infra/app/storage.bicep)
        # and the app's roles are scoped to them; a cold start there makes no extra calls.
        records.ensure_table()
        queue.ensure_queue()

    clock = clock or SystemClock()
    vault = Vault(client_id=settings.client_id, keys=keys, records=records,
                  identity=EntraIdentityProvider.from_settings(settings, session=session),
                  clock=clock, access_tokens=AccessTokenCache())
    api = Api(vault=vault, authenticate=TokenValidator.from_settings(settings, session=session),
              redeem_callers=settings.redeem_callers, clock=clock)
    planner = Planner(records=records, keys=keys, queue=queue, clock=clock,
                      refresh_after=settings.refresh_after)
    worker = Worker(vault=vault, queue=queue, clock=clock, refresh_after=settings.refresh_after)
    return App(settings=settings, vault=vault, api=api, keys=keys, records=records, clock=clock,
               sweep=SweepHandler(planner=planner, worker=worker),
               clients=tuple(c for c in (keys, records, queue) if hasattr(c, "close")))


def _azure_credential(settings: "Settings"):
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if settings.in_azure and settings.managed_identity_client_id:
        # The user-assigned identity the infrastructure grants Key Vault and storage roles to;
        # DefaultAzureCredential's chain would only add start-up probes in Azure.
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    return DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)


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

            try:
                settings = Settings.from_environ()
                if settings.in_azure:
                    # The worker ships message text alone to Application Insights.
                    from . import logfields

                    logfields.install()
                _app = compose(settings)
            except SettingError as error:
                log.error("configuration error: %s", error.message)
                raise
    return _app


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
