"""The suite-wide leak check: no secret a fake ever issued may show up in what the code logged
or what a test printed or reported.

Every fake that issues a secret (refresh and access tokens, assertions, client secrets, key
material) calls ``remember``. A handler on the root logger keeps every log record of the
session, formatted with its ``extra`` fields; each test report adds its captured output and
failure text; after each test, what the OpenTelemetry exporters got (``tests/support/
telemetry.py``: spans with their attributes and events, exported log records with theirs) is
added, and at the end every metric data point's attributes. At the end of the session all of
it is searched for every remembered secret (and its base64 form for binary keys); a hit fails
the run and names only where it was found, never the secret itself.
"""

from __future__ import annotations

import base64
import logging
import re
import threading

import pytest

_secrets: set[str] = set()
_lock = threading.Lock()
_texts: list[tuple[str, str]] = []  # (where, text)
_MIN_LENGTH = 12  # shorter values would match by chance (and are not secrets we issue)


def remember(value: str | bytes) -> None:
    """Note a secret that must never appear in logs or test output."""
    with _lock:
        if isinstance(value, bytes):
            _secrets.add(base64.b64encode(value).decode())
            _secrets.add(value.hex())
            try:
                _secrets.add(value.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        elif len(value) >= _MIN_LENGTH:
            _secrets.add(value)


def remembered() -> int:
    return len(_secrets)


def _note(where: str, text: str) -> None:
    if text:
        with _lock:
            _texts.append((where, text))


def note_all(texts: list[tuple[str, str]]) -> None:
    """Add (where, text) pairs to what is searched."""
    for where, text in texts:
        _note(where, text)


class _Recorder(logging.Handler):
    """Keeps every record as the message plus every attribute a formatter or a log shipper
    (Application Insights takes ``extra`` fields as custom dimensions) could print."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [record.getMessage()]
        except Exception:  # noqa: BLE001 - a broken format string is not our concern here
            parts = [str(record.msg)]
        parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in self._STANDARD]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(logging.Formatter().formatException(record.exc_info))
        _note(f"log record of {record.name}", " ".join(parts))


_recorder = _Recorder(level=logging.DEBUG)


def pytest_sessionstart(session) -> None:
    from tokenvault.dev.entra_fake import FakeEntra

    FakeEntra.on_issue = remember  # every token the Entra fake issues is searched for
    root = logging.getLogger()
    root.addHandler(_recorder)
    # Records below the root's level never reach a handler; the code under test logs at
    # DEBUG too and those lines must be clean as well.
    root.setLevel(logging.DEBUG)
    for noisy in ("urllib3", "azure.core.pipeline.policies.http_logging_policy", "msal",
                  "azure.identity", "hpack", "asyncio", "hypothesis", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report) -> None:
    where = f"output of {report.nodeid} ({report.when})"
    for _, content in report.sections:
        _note(where, content)
    if report.longrepr is not None:
        _note(where, report.longreprtext)
    if report.when == "teardown":
        from tests.support import telemetry

        note_all([(f"{w} in {report.nodeid}", t) for w, t in telemetry.drain()])


# Secrets we issue are runs of these characters (random strings, JWTs, base64, hex), and
# every place that prints one starts it at a boundary of such a run.
_RUN = re.compile(r"[A-Za-z0-9_\-.~+/=]{%d,}" % _MIN_LENGTH)


def leaks_in(texts: list[tuple[str, str]], secrets: list[str]) -> list[str]:
    """Where (by name) any of ``secrets`` appears in ``texts``.

    Tens of thousands of secrets against every log record of the suite: instead of searching
    each text for each secret, secrets are indexed by their first characters and each run of
    token characters in a text is looked up by its own first characters, then confirmed.
    """
    by_prefix: dict[str, list[str]] = {}
    for secret in secrets:
        by_prefix.setdefault(secret[:_MIN_LENGTH], []).append(secret)
    found = set()
    for where, text in texts:
        for run in _RUN.findall(text):
            for start in range(len(run) - _MIN_LENGTH + 1):
                # Runs may glue a prefix to the secret ("token=rt-..."): try each offset
                # after a punctuation character, and the run's start.
                if start and run[start - 1].isalnum():
                    continue
                candidates = by_prefix.get(run[start:start + _MIN_LENGTH])
                if candidates and any(c in run[start:] for c in candidates):
                    found.add(where)
                    break
    return sorted(found)


def find_leaks() -> list[str]:
    with _lock:
        return leaks_in(list(_texts), list(_secrets))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus) -> None:
    from tests.support import telemetry

    logging.getLogger().removeHandler(_recorder)
    note_all(telemetry.drain() + telemetry.metric_texts())
    leaks = find_leaks()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"LEAK CHECK FAILED: a secret issued by the fakes appears in "
                                f"{len(leaks)} place(s):", red=True)
            for where in leaks[:20]:
                reporter.write_line(f"  {where}", red=True)
    elif reporter:
        reporter.write_line(f"leak check: {len(_texts)} log records and outputs searched for "
                            f"{len(_secrets)} issued secrets; none found")
