"""StorageQueue against a real Azurite: what the Functions host's queue trigger will read, the
delay, the poison count, and the mapping of Azure errors."""

from __future__ import annotations

import base64
import json
import time

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.storage.queue import QueueClient

from tests.support.storage_fixtures import closed_port_connection_string
from tokenvault.adapters.storage_queue import StorageQueue, _translate
from tokenvault.errors import InternalError, UpstreamUnavailable

MESSAGE = {"v": 1, "tenant_id": "0b7e5c4a-1d2f-4a3b-9c8d-7e6f5a4b3c2d",
           "users": ["1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"], "note": "é"}


@pytest.fixture
def raw(azurite, queue_name) -> QueueClient:
    """A plain client with no decoding, to see the bytes the host's trigger would see."""
    client = QueueClient.from_connection_string(azurite.connection_string, queue_name)
    yield client
    client.close()


def test_a_sent_message_is_base64_of_compact_json(storage_queue, raw):
    storage_queue.send(MESSAGE)
    [received] = raw.receive_messages(max_messages=32)
    text = base64.b64decode(received.content, validate=True).decode("utf-8")
    assert json.loads(text) == MESSAGE
    assert text == json.dumps(MESSAGE, separators=(",", ":"), ensure_ascii=False)


def test_a_delay_hides_the_message_until_it_passes(storage_queue, raw):
    storage_queue.send(MESSAGE, delay=1)
    assert list(raw.receive_messages()) == []
    assert raw.get_queue_properties().approximate_message_count == 1
    time.sleep(1.2)
    [received] = raw.receive_messages()
    assert json.loads(base64.b64decode(received.content)) == MESSAGE


def test_poisoned_counts_the_poison_queue_and_is_zero_without_one(azurite, queue_name):
    queue = StorageQueue.from_connection_string(azurite.connection_string, queue_name)
    poison = QueueClient.from_connection_string(azurite.connection_string, queue_name + "-poison")
    try:
        assert queue.poisoned() == 0  # no poison queue at all
        queue.ensure_queue()  # makes the poison queue too
        assert queue.poisoned() == 0
        for n in range(3):
            poison.send_message(f"m{n}")
        assert queue.poisoned() == 3
    finally:
        queue.close()
        poison.close()


def test_a_poisoned_body_lands_in_the_poison_queue_as_the_host_would_put_it(
        azurite, storage_queue, queue_name):
    body = b"\xff not json \x00"
    storage_queue.poison(body)

    poison = QueueClient.from_connection_string(azurite.connection_string, queue_name + "-poison")
    with poison:
        [received] = poison.receive_messages()
    # The host moves a message's original (base64) content; the trigger decodes it to body.
    assert base64.b64decode(received.content, validate=True) == body
    assert storage_queue.poisoned() == 1


def test_ensure_queue_creates_the_queue_and_a_repeat_keeps_what_it_holds(azurite, queue_name, raw):
    queue = StorageQueue.from_connection_string(azurite.connection_string, queue_name)
    try:
        queue.ensure_queue()
        queue.send(MESSAGE)
        queue.ensure_queue()  # every local start of the app ensures it: no failure, nothing lost

        [received] = raw.receive_messages()
        assert json.loads(base64.b64decode(received.content)) == MESSAGE
    finally:
        queue.close()


def test_unreachable_storage_is_upstream_unavailable_within_seconds(azurite, queue_name):
    queue = StorageQueue.from_connection_string(closed_port_connection_string(azurite), queue_name)
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable) as raised:
        queue.send(MESSAGE)
    assert time.monotonic() - started < 6
    assert raised.value.upstream == "storage"


def test_sending_to_a_missing_queue_is_internal(azurite, queue_name, caplog):
    queue = StorageQueue.from_connection_string(azurite.connection_string, queue_name)
    with pytest.raises(InternalError):
        queue.send(MESSAGE)
    assert "ensure_queue" in caplog.text


def test_a_wrong_key_is_internal_and_the_log_names_the_role(azurite, storage_queue, queue_name, caplog):
    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
    with pytest.raises(InternalError):
        StorageQueue.from_connection_string(wrong, queue_name).send(MESSAGE)
    assert "Storage Queue Data Message Sender" in caplog.text


class FakeResponse:
    def __init__(self, status: int, headers: dict | None = None) -> None:
        self.status_code, self.reason, self.headers = status, "reason", headers or {}

    def text(self, encoding=None):
        return ""


@pytest.mark.parametrize("exc, expected, retry_after", [
    (HttpResponseError(response=FakeResponse(503, {"Retry-After": "9"})), UpstreamUnavailable, 9),
    (HttpResponseError(response=FakeResponse(500)), UpstreamUnavailable, 2),
    (HttpResponseError(response=FakeResponse(429)), UpstreamUnavailable, 2),
    (HttpResponseError(response=FakeResponse(408)), UpstreamUnavailable, 2),
    (ServiceRequestError("refused"), UpstreamUnavailable, 2),
    (ServiceResponseError("reset"), UpstreamUnavailable, 2),
    (HttpResponseError(response=FakeResponse(403)), InternalError, None),
    (HttpResponseError(response=FakeResponse(401)), InternalError, None),
    (HttpResponseError(response=FakeResponse(404)), InternalError, None),
    (HttpResponseError(response=FakeResponse(400)), InternalError, None),
], ids=lambda v: f"{type(v).__name__}-{getattr(v, 'status_code', '')}" if isinstance(v, Exception)
    else None)
def test_azure_errors_map_to_vault_errors(exc, expected, retry_after):
    translated = _translate(exc)
    assert type(translated) is expected
    if expected is UpstreamUnavailable:
        assert translated.upstream == "storage" and translated.retry_after == retry_after
