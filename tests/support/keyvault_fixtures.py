"""Fixtures of the Key Vault part: one HTTPS fake per session, emptied for every test.

``keyvault`` is the fake, reset before each test that asks for it; ``keyvault_options`` are
the client options a SecretClient (or ``KeyVaultKeys``) needs to reach it: trust the session's
test CA through ``connection_verify`` (never process-wide through ``REQUESTS_CA_BUNDLE``) and
skip the check that the challenge's resource matches the vault's host, which ``127.0.0.1``
cannot.
"""

from __future__ import annotations

import pytest
from azure.keyvault.secrets import SecretClient

from tests.support.keyvault import FakeKeyVault, StaticTokenCredential
from tokenvault.dev.tls import TestCA


def keyvault_client_options(ca: TestCA, **extra) -> dict:
    return {"verify_challenge_resource": False, "connection_verify": str(ca.bundle), **extra}


@pytest.fixture(scope="session")
def keyvault_service(ca) -> FakeKeyVault:
    with FakeKeyVault(ca) as vault:
        yield vault


@pytest.fixture
def keyvault(keyvault_service) -> FakeKeyVault:
    keyvault_service.reset()
    return keyvault_service


@pytest.fixture
def keyvault_credential() -> StaticTokenCredential:
    return StaticTokenCredential()


@pytest.fixture
def keyvault_options(ca) -> dict:
    return keyvault_client_options(ca)


@pytest.fixture
def secret_client(keyvault, keyvault_credential, keyvault_options) -> SecretClient:
    """The unmodified SecretClient, pointed at the fake. No retries, so faults show at once."""
    with SecretClient(keyvault.url, keyvault_credential, retry_total=0, **keyvault_options) as client:
        yield client
