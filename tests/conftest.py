"""Session-wide test fixtures. Services (Azurite, the HTTPS fakes) are started here by the
fixtures themselves and stopped at the end of the session: no test assumes a running server.

Each local part keeps its fixtures in its own module under ``tests/support`` and is listed in
``pytest_plugins``; this file holds only what every part shares.

Which tests are integration tests is said by their folder, in ``tests.support.kinds`` (a
plugin here rather than a conftest.py in tests/integration, because it must also watch the
tests outside that folder: a unit test may not start a service, a process or a socket).
"""

import uuid
from pathlib import Path

import pytest

from tokenvault.dev.azurite import Azurite
from tokenvault.dev.tls import TestCA

pytest_plugins = [
    "tests.support.kinds",
    "tests.support.telemetry",
    "tests.support.leaks",
    "tests.support.keyvault_fixtures",
    "tests.support.entra_fixtures",
    "tests.support.stack_fixtures",
    "tests.support.storage_fixtures",
    "tests.support.client_fixtures",
]


@pytest.fixture(scope="session")
def ca(tmp_path_factory) -> TestCA:
    """The session's throwaway certificate authority for the local HTTPS fakes."""
    return TestCA(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Azurite:
    """One Azurite for the whole session, in a temp folder, on free ports."""
    storage = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield storage
    storage.stop(grace=1)


@pytest.fixture
def table_name() -> str:
    """A table of its own for each test, so tests never see each other's rows."""
    return "t" + uuid.uuid4().hex[:20]
