"""Session-wide test fixtures. Services (Azurite, the HTTPS fakes) are started here by the
fixtures themselves and stopped at the end of the session: no test assumes a running server."""

from pathlib import Path

import pytest

from tests.support.https import TestCA


@pytest.fixture(scope="session")
def ca(tmp_path_factory) -> TestCA:
    """The session's throwaway certificate authority for the local HTTPS fakes."""
    return TestCA(Path(tmp_path_factory.mktemp("tls")))
