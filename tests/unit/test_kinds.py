"""The folder says what a test is, and a unit test cannot start a service, a process or a socket
(tests/support/kinds.py). These run as unit tests, so the guard they check is the live one."""

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import kinds
from tests.support.kinds import UnitTestBoundaryError

TESTS = Path(__file__).resolve().parent.parent


class Item:
    """What the collection hook reads of a pytest item."""

    def __init__(self, path: Path, *fixturenames: str) -> None:
        self.path, self.fixturenames = path, fixturenames
        self.nodeid = str(path.relative_to(TESTS.parent)) + "::test"
        self.markers = []

    def add_marker(self, marker) -> None:
        self.markers.append(marker.name)


def test_every_test_under_tests_integration_is_marked_integration_and_no_other():
    items = [Item(TESTS / "integration" / "test_x.py", "azurite"),
             Item(TESTS / "integration" / "deeper" / "test_y.py"),
             Item(TESTS / "unit" / "test_z.py", "tmp_path"),
             Item(TESTS / "infra" / "test_integration_named.py")]

    kinds.pytest_collection_modifyitems(None, items)

    assert [item.markers for item in items] == [["integration"], ["integration"], [], []]


@pytest.mark.parametrize("fixture", sorted(kinds.SERVICE_FIXTURES))
def test_a_unit_test_asking_for_a_service_is_a_usage_error_naming_it(fixture):
    stray = Item(TESTS / "infra" / "test_stray.py", "tmp_path", fixture)

    with pytest.raises(pytest.UsageError, match="tests/infra/test_stray.py::test"):
        kinds.pytest_collection_modifyitems(None, [stray])


def test_this_unit_test_may_not_start_a_process():
    with pytest.raises(UnitTestBoundaryError, match="subprocess.Popen"):
        subprocess.run(["true"], check=False)
    with pytest.raises(UnitTestBoundaryError, match="os.system"):
        os.system("true")


@pytest.mark.parametrize("use", [lambda s: s.bind(("127.0.0.1", 0)),
                                 lambda s: s.connect(("127.0.0.1", 9))], ids=["bind", "connect"])
def test_this_unit_test_may_not_open_a_socket(use):
    with socket.socket() as sock, pytest.raises(UnitTestBoundaryError, match="socket"):
        use(sock)
