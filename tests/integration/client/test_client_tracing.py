"""Distributed tracing, as azure-core does it for every Azure SDK client: with a tracing plugin
set (``settings.tracing_implementation``), each call of the client is a span named after the
method, and each HTTP attempt a client span inside it, whose trace context goes out as headers.
The plugin here records spans instead of exporting them; the served app's own Azure SDK
clients run in the same process and are traced too, on their threads.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
from azure.core.settings import settings

from tests.support.stack_fixtures import SCOPES, new_id
from tokenvault_client import NotFound

pytestmark = pytest.mark.integration


class RecordingSpan:
    """The azure-core span plugin interface, keeping every span it made."""

    made: list["RecordingSpan"] = []
    _current = threading.local()

    def __init__(self, name: str = "span", kind=None, **kwargs) -> None:
        self.name, self.kind, self.attributes = name, kind, {}
        self.parent = getattr(self._current, "span", None)
        self.finished = False
        self.made.append(self)

    @property
    def span_instance(self) -> "RecordingSpan":
        return self

    def __enter__(self) -> "RecordingSpan":
        self._saved, self._current.span = getattr(self._current, "span", None), self
        return self

    def __exit__(self, *exc) -> None:
        self._current.span = getattr(self, "_saved", None)
        self.finished = True

    def finish(self) -> None:
        self.finished = True

    def add_attribute(self, key: str, value) -> None:
        self.attributes[key] = value

    def set_http_attributes(self, request, response=None) -> None:
        self.attributes.update({"http.method": request.method,
                                "http.status_code": getattr(response, "status_code", None)})

    def to_header(self) -> dict:
        return {"traceparent": f"00-{id(self):032x}-{id(self):016x}-01"}

    @classmethod
    @contextlib.contextmanager
    def change_context(cls, span):
        saved, cls._current.span = getattr(cls._current, "span", None), span
        try:
            yield
        finally:
            cls._current.span = saved

    @classmethod
    def get_current_span(cls):
        return getattr(cls._current, "span", None)


@pytest.fixture
def spans():
    RecordingSpan.made = []
    settings.tracing_implementation.set_value(RecordingSpan)
    yield RecordingSpan.made
    settings.tracing_implementation.unset_value()


def test_each_call_is_a_span_around_its_http_spans(stack, vault_client, spans):
    tenant, user = stack.onboard(), new_id()
    token = stack.user_token(tenant, user)
    vault_client.store(SCOPES, user_token=token)
    stranger = new_id()
    with pytest.raises(NotFound):
        vault_client.describe(tenant, stranger, user_token=stack.user_token(tenant, stranger))

    calls = [s for s in spans if s.name.startswith("TokenVaultClient.")]
    assert [s.name for s in calls] == ["TokenVaultClient.store", "TokenVaultClient.describe"]
    # (The served app's own SDK clients trace in the same process, on their threads.)
    network = [s for s in spans if s.parent in calls]
    assert [(s.parent, s.attributes["http.method"], s.attributes["http.status_code"]) for s in network] \
        == [(calls[0], "POST", 201), (calls[1], "GET", 404)]
    assert all(s.finished for s in spans)
    assert all(s.attributes["http.url"].startswith("http://127.0.0.1:") for s in network)

