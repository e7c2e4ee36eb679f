"""What kind a test is, said by its folder, and what a unit test may not do.

Every test under ``tests/integration`` — and the samples' own tests under ``samples/``, which
serve a stand-in vault on a local socket — is marked ``integration``: the folder is the one place
that says it, so a new module cannot forget a ``pytestmark`` and slip into the unit run
(``pytest -m "not integration"``, ``scripts/test --unit``). Everything else (``tests/unit``,
and ``tests/infra``, which reads templates and pipelines as files) is a unit test: no Azurite,
no HTTPS fake, no subprocess, no socket, so the unit run needs no npm and takes seconds.

That is enforced twice, since a comment would not keep it true:

* at collection, a unit test that asks (directly or through other fixtures) for a fixture
  that starts a service is an error naming the test;
* while a unit test sets up and runs, an audit hook (PEP 578) refuses to start a process or
  to bind or connect a socket. The hook stays installed for the session (audit hooks cannot
  be removed) but does nothing outside a unit test's setup and call: integration tests, and
  the session-wide teardown of their services, are not watched.
"""

from __future__ import annotations

import platform
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).resolve().parent.parent / "integration"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"

#: Session fixtures that start something: Azurite (a node process), the test CA every HTTPS
#: fake needs, and the fakes of Entra ID and Key Vault.
SERVICE_FIXTURES = frozenset({"azurite", "ca", "entra_server", "keyvault_service"})

_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn",
                             "os.exec", "os.fork", "os.forkpty"})
# Sockets are watched on the main thread only: in a full run, threads of the session's
# servers (started by integration tests) keep serving while unit tests run.
_SOCKET_EVENTS = frozenset({"socket.bind", "socket.connect"})


class UnitTestBoundaryError(RuntimeError):
    """A unit test tried to start a process or open a socket."""


def is_integration(item: pytest.Item) -> bool:
    parents = Path(item.path).resolve().parents
    return INTEGRATION in parents or SAMPLES in parents


def pytest_collection_modifyitems(config, items) -> None:
    strays = []
    for item in items:
        if is_integration(item):
            item.add_marker(pytest.mark.integration)
        elif SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            strays.append(item.nodeid)
    if strays:
        raise pytest.UsageError(
            "unit tests asking for a service fixture (" + ", ".join(sorted(SERVICE_FIXTURES))
            + "); move them under tests/integration:\n  " + "\n  ".join(strays))


_watched: str | None = None  # the node id of the unit test being set up or run


def _audit(event: str, args: tuple) -> None:
    if _watched is None:
        return
    if event in _PROCESS_EVENTS or (event in _SOCKET_EVENTS
                                    and threading.current_thread() is threading.main_thread()):
        raise UnitTestBoundaryError(f"{_watched} is a unit test and may not {event}; "
                                    f"integration tests live under tests/integration")


def pytest_configure(config) -> None:
    # azure.identity builds its user agent when first imported, with platform.platform(),
    # which runs `uname -p` once per process and caches the answer. Ask now, so whichever unit
    # test happens to import azure.identity first is not taken for starting a process.
    platform.processor()
    sys.addaudithook(_audit)


@contextmanager
def _watching(item: pytest.Item):
    global _watched
    _watched = None if is_integration(item) else item.nodeid
    try:
        yield
    finally:
        _watched = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _watching(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _watching(item):
        return (yield)
