"""The whole app composed with its real adapters against the local real parts: Azurite (table
and queue), the Key Vault fake (through the real SecretClient) and the Entra fake (through the
real msal and PyJWT). Nothing of ours is replaced: ``bootstrap.compose`` builds it exactly as
in Azure, given only what differs locally (the Key Vault credential and the CA to trust).

``stack`` also installs the app as the process's app, so the functions of ``function_app``
(found through ``app.get_functions()``, as the worker indexes them) serve with it.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

import azure.functions as func
import pytest

import function_app
from tests.fakes import FixedClock
from tests.support import telemetry
from tests.support.keyvault import ManualMonotonic
from tokenvault import bootstrap
from tokenvault.adapters.key_admin import KeyVaultKeyAdmin
from tokenvault.dev.devhost import index_functions
from tokenvault.envelope import Binding, unseal
from tokenvault.model import RecordKey
from tokenvault.settings import Settings

#: An app allowed to redeem (listed in TOKENVAULT_REDEEM_CALLERS with its home tenant) and one
#: that is not.
CALLER_APP = "c0ffee00-0000-4000-8000-0000000000c1"
CALLER_TENANT = "c0ffee00-0000-4000-8000-00000000cafe"
CALLERS = f"{CALLER_APP}@{CALLER_TENANT}"
STRANGER_APP = "c0ffee00-0000-4000-8000-0000000000c2"
SCOPES = ["https://graph.microsoft.com/User.Read"]
#: What ``Stack.store`` grants by default: SCOPES and more of the same resource, so a test can
#: redeem "other scopes" (another request to msal, no cached access token) within the grant.
MORE_SCOPES = ["https://graph.microsoft.com/Mail.Read", "https://graph.microsoft.com/Files.Read",
               "https://graph.microsoft.com/Calendars.Read", "https://graph.microsoft.com/Tasks.Read"]
GRANT = SCOPES + MORE_SCOPES
FUNCTIONS = {f.get_function_name(): f for f in index_functions(function_app.app)}


def new_id() -> str:
    return str(uuid.uuid4())


class Stack:
    """The composed app and handles on every part around it."""

    def __init__(self, app, *, entra, keyvault, admin, clock, monotonic, azurite) -> None:
        self.app, self.entra, self.keyvault, self.admin = app, entra, keyvault, admin
        self.clock, self.monotonic, self.azurite = clock, monotonic, azurite
        self.settings = app.settings
        self.records = app.records

    # --- people and tenants ------------------------------------------------------------

    def onboard(self, tenant_id: str | None = None) -> str:
        tenant_id = tenant_id or new_id()
        self.admin.create(tenant_id)
        return tenant_id

    def user_token(self, tenant_id: str, user_id: str, **options) -> str:
        return self.entra.user_token(tenant_id, user_id, **options)

    def app_token(self, roles=("TokenVault.Redeem",), app_id: str = CALLER_APP,
                  tenant_id: str = CALLER_TENANT, **options) -> str:
        """A client-credentials token of ``app_id`` from its home tenant ``tenant_id``."""
        return self.entra.app_token(tenant_id, app_id, roles=roles, **options)

    def expire_key_cache(self) -> None:
        """Move the key cache's clock past the TTL, as time would."""
        self.monotonic.advance(self.settings.backend.key_cache_ttl + 1)

    # --- the functions, as the worker calls them ---------------------------------------

    def call(self, function: str, *, method: str = "POST", body: object = b"",
             token: str | None = None, route_params: dict | None = None,
             headers: dict | None = None) -> func.HttpResponse:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        request = func.HttpRequest(method=method, url=f"http://localhost/api/{function}",
                                   headers=all_headers, body=body,
                                   route_params=route_params or {})
        return FUNCTIONS[function].get_user_function()(request)

    def store(self, tenant_id: str, user_id: str, scopes=GRANT) -> func.HttpResponse:
        return self.call("store_token", body={"scopes": list(scopes)},
                         token=self.user_token(tenant_id, user_id))

    def redeem(self, tenant_id: str, user_id: str, scopes=SCOPES) -> func.HttpResponse:
        return self.call("redeem_token", body={"scopes": list(scopes)},
                         token=self.user_token(tenant_id, user_id))

    # --- looking inside ----------------------------------------------------------------

    def stored_refresh_token(self, tenant_id: str, user_id: str) -> str:
        """Decrypt the stored record with the key from Key Vault, as an auditor could."""
        record = self.records.get(RecordKey(tenant_id, user_id))
        key = self.app.keys.get(tenant_id, record.key_version)
        binding = Binding(record.tenant_id, record.user_id, record.client_id, record.key_version)
        return unseal(key.material, record.ciphertext, binding).reveal()


@pytest.fixture
def stack(azurite, entra, keyvault, keyvault_credential, keyvault_options, entra_session,
          client_id, client_secret, table_name) -> Stack:
    environ = {
        "TOKENVAULT_CLIENT_ID": client_id,
        "TOKENVAULT_CLIENT_SECRET": client_secret,
        "TOKENVAULT_AUTHORITY_HOST": entra.authority_host,
        "TOKENVAULT_KEY_VAULT_URL": keyvault.url,
        "TOKENVAULT_KEY_CACHE_TTL": "300",
        "TOKENVAULT_REDEEM_CALLERS": CALLERS,
        "TOKENVAULT_REFRESH_AFTER": "P7D",
        "TOKENVAULT_TABLE": table_name,
        "AzureWebJobsStorage": azurite.connection_string,
    }
    # A queue of its own per test: the sweep's messages must not reach another test.
    settings = Settings.from_environ(environ).with_backend(refresh_queue="q" + uuid.uuid4().hex[:20])
    clock = FixedClock(datetime.now(timezone.utc).replace(microsecond=0))
    monotonic = ManualMonotonic()
    app = bootstrap.compose(settings, credential=keyvault_credential, session=entra_session,
                            key_vault_options={**keyvault_options, "monotonic": monotonic},
                            clock=clock, observer=telemetry.observer())
    admin = KeyVaultKeyAdmin(keyvault.url, keyvault_credential, **keyvault_options)
    bootstrap.install(app)
    try:
        yield Stack(app, entra=entra, keyvault=keyvault, admin=admin, clock=clock,
                    monotonic=monotonic, azurite=azurite)
    finally:
        bootstrap.reset()
        app.close()
        admin.close()


@pytest.fixture
def onboarded_tenant(stack) -> str:
    """A fresh tenant with a key in Key Vault, so the stack serves it (``tenant``, from the
    Entra fixtures, is only a fresh id)."""
    return stack.onboard()


def days_ago(clock: FixedClock, days: float) -> datetime:
    return clock.now() - timedelta(days=days)


class StorageRequests:
    """A request hook for the storage clients (``raw_request_hook``): every request attempt
    the table or queue client sends, as (method, path)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []

    def __call__(self, request) -> None:
        with self._lock:
            self.seen.append((request.http_request.method, request.http_request.url.split("?")[0]))

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()


@pytest.fixture
def recompose(stack, keyvault_credential, keyvault_options, entra_session):
    """Compose and install the app again as the stack fixture does, with other settings or
    storage client options; the stack fixture uninstalls it at the end."""
    built = []

    def build(settings=None, **options):
        options.setdefault("observer", telemetry.observer())
        app = bootstrap.compose(settings or stack.settings, credential=keyvault_credential,
                                session=entra_session, clock=stack.clock,
                                key_vault_options={**keyvault_options, "monotonic": stack.monotonic},
                                **options)
        built.append(app)
        bootstrap.install(app)
        return app

    yield build
    for app in built:
        app.close()
