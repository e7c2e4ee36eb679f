"""Fixtures for the client, the credential and the samples: TokenVault served over HTTP
(``served_vault``), clients of it, and the app credential a web API's background job uses.

App callers: ``app_credential`` is the ONE place that says who the app caller is and how it
gets its token — azure-identity's ``ClientSecretCredential`` against the Entra fake, for the app
``CALLER_APP`` registered in its home tenant ``CALLER_TENANT`` with both roles — the pair the
stack lists in ``TOKENVAULT_REDEEM_CALLERS`` (``stack_fixtures``).
"""

from __future__ import annotations

import secrets

import pytest
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential

from tests.support.leaks import remember
from tests.support.served_vault import ServedVault
from tests.support.stack_fixtures import CALLER_APP, CALLER_TENANT
from tokenvault_client import TokenVaultClient

__all__ = ["CALLER_TENANT", "CALLER_ROLES", "register_app_caller", "app_credential_kwargs"]

CALLER_ROLES = ("TokenVault.Redeem", "TokenVault.Admin")


def register_app_caller(entra, *, app_id: str = CALLER_APP, roles=CALLER_ROLES) -> str:
    """Register ``app_id`` with a fresh secret and ``roles`` in the Entra fake; the secret."""
    secret = "caller-secret-" + secrets.token_urlsafe(24)
    remember(secret)
    entra.register_client(app_id, secret=secret, roles=roles)
    return secret


def app_credential_kwargs(entra, ca, *, app_id: str = CALLER_APP, roles=CALLER_ROLES) -> dict:
    """What ``ClientSecretCredential`` (sync or ``.aio``) needs to get app tokens from the fake."""
    return {"tenant_id": CALLER_TENANT, "client_id": app_id,
            "client_secret": register_app_caller(entra, app_id=app_id, roles=roles),
            "authority": entra.authority_host, "disable_instance_discovery": True,
            "connection_verify": str(ca.bundle)}


@pytest.fixture
def served_vault(stack, monkeypatch):
    """The stack's app, served over HTTP on a free port for this test."""
    # The dev host reads the timer's schedule when it indexes the app (its timers never run here).
    monkeypatch.setenv("TOKENVAULT_REFRESH_SCHEDULE", "0 0 */6 * * *")
    with ServedVault() as vault:
        yield vault


@pytest.fixture
def app_credential(entra, ca):
    credential = ClientSecretCredential(**app_credential_kwargs(entra, ca))
    yield credential
    credential.close()


@pytest.fixture
def async_app_credential_kwargs(entra, ca) -> dict:
    """For ``azure.identity.aio.ClientSecretCredential``, built inside the test's event loop."""
    return app_credential_kwargs(entra, ca)


@pytest.fixture
def vault_client(served_vault, client_id, app_credential) -> TokenVaultClient:
    """A client with the function key and an app credential: user and app calls."""
    with TokenVaultClient(served_vault.url, client_id=client_id, credential=app_credential,
                          function_key=served_vault.function_key) as client:
        yield client


def async_client_credential(kwargs: dict) -> AsyncClientSecretCredential:
    return AsyncClientSecretCredential(**kwargs)
