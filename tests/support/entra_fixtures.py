"""Fixtures of the Entra fake: one server per session, reset before every test.

``entra_session`` is the ``requests.Session`` our adapters get (``session=``): it trusts the
session's test CA explicitly and ignores the environment, so no fixture has to set
``REQUESTS_CA_BUNDLE`` for the whole process.
"""

from __future__ import annotations

import secrets
import uuid

import pytest
import requests

from tokenvault.dev.entra_fake import FakeEntra
from tokenvault.dev.tls import TestCA

#: The app registration TokenVault runs as, in tests (``TOKENVAULT_CLIENT_ID``).
CLIENT_ID = "3b9f0c1e-5d7a-4e2b-9c8d-0a1b2c3d4e5f"


@pytest.fixture(scope="session")
def client_id() -> str:
    return CLIENT_ID


@pytest.fixture(scope="session")
def client_secret() -> str:
    return "fake-secret-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def entra_server(ca: TestCA, client_id: str, client_secret: str):
    with FakeEntra(ca, client_id=client_id, client_secret=client_secret) as entra:
        yield entra


@pytest.fixture
def entra(entra_server: FakeEntra) -> FakeEntra:
    """The session's fake, with no faults, zero counters and default modes."""
    entra_server.reset()
    yield entra_server
    entra_server.reset()


@pytest.fixture
def entra_session(ca: TestCA):
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca.bundle)
    yield session
    session.close()


@pytest.fixture
def tenant() -> str:
    """A fresh tenant id (the fake serves any)."""
    return str(uuid.uuid4())


@pytest.fixture
def oid() -> str:
    """A fresh user object id."""
    return str(uuid.uuid4())
