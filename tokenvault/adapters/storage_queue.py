"""The sweep's work queue on Azure Queue Storage.

Messages are compact JSON, base64-encoded: the Functions host's queue trigger decodes base64
by default (``messageEncoding``), so the handler receives the JSON text. Azure exceptions
become ``VaultError``s in one place, ``_translate``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import LinearRetry, QueueClient, TextBase64EncodePolicy

from ..errors import InternalError, UpstreamUnavailable, VaultError
from ..ports import Queue
from .transport import azure_client_options
from .upstream import retry_after_of

__all__ = ["StorageQueue", "client_options", "wire_text", "POISON_SUFFIX"]

log = logging.getLogger(__name__)

#: The host moves a message that failed ``maxDequeueCount`` times to ``<queue>-poison``.
POISON_SUFFIX = "-poison"
_DEFAULT_RETRY_AFTER = 2


def client_options() -> dict:
    """Client options: the SDK's default retry waits 15 s and more between attempts and its
    timeouts are a minute; the sweep would rather fail a batch fast and let the host retry it.
    A function, because a retry policy object belongs to one client. The SDK takes whole
    seconds for the backoff and its jitter and waits uniformly within backoff ± jitter (never
    below 0): here 0 to 2 s, 1 s on average."""
    return {"retry_policy": LinearRetry(backoff=1, retry_total=2, random_jitter_range=1),
            "connection_timeout": 3, "read_timeout": 10}


class StorageQueue(Queue):
    """``Queue`` over one Storage queue and its poison queue.

    ``queue`` must encode messages with ``TextBase64EncodePolicy`` (the factories here do);
    ``poison`` is the queue ``poisoned`` counts (None: nothing is ever reported poisoned).
    """

    def __init__(self, queue: QueueClient, poison: QueueClient | None = None) -> None:
        self._queue = queue
        self._poison = poison

    @classmethod
    def from_connection_string(cls, conn: str, queue_name: str, **options: Any) -> "StorageQueue":
        """``options`` override ``client_options()`` (and may add any azure-core client option)."""
        def client(name: str, **encoding: Any) -> QueueClient:
            return QueueClient.from_connection_string(
                conn, name, **encoding, **azure_client_options({**client_options(), **options}))
        return cls(client(queue_name, message_encode_policy=TextBase64EncodePolicy()),
                   client(queue_name + POISON_SUFFIX))

    @classmethod
    def from_endpoint(cls, endpoint: str, queue_name: str, credential: TokenCredential,
                      **options: Any) -> "StorageQueue":
        """Identity-based access: ``credential`` is an azure-identity credential."""
        def client(name: str, **encoding: Any) -> QueueClient:
            return QueueClient(endpoint, name, credential=credential, **encoding,
                               **azure_client_options({**client_options(), **options}))
        return cls(client(queue_name, message_encode_policy=TextBase64EncodePolicy()),
                   client(queue_name + POISON_SUFFIX))

    def __repr__(self) -> str:
        return f"StorageQueue(queue={self._queue.queue_name!r})"

    def close(self) -> None:
        self._queue.close()
        if self._poison is not None:
            self._poison.close()

    def ensure_queue(self) -> None:
        """Create the queue and its poison queue if they are missing (deployment and local
        runs). Needs Storage Queue Data Contributor."""
        with _translated():
            for client in (self._queue, self._poison):
                if client is None:
                    continue
                try:
                    client.create_queue()
                except ResourceExistsError:
                    pass

    def send(self, message: dict, *, delay: int = 0) -> None:
        """Enqueue ``message`` as compact JSON, invisible for ``delay`` seconds (at most 7 days,
        the service's limit). Needs Storage Queue Data Message Sender."""
        if not 0 <= delay <= 7 * 24 * 3600:
            raise ValueError("delay must be between 0 seconds and 7 days")
        with _translated():
            self._queue.send_message(wire_text(message), visibility_timeout=int(delay))

    def poison(self, body: bytes) -> None:
        """Put ``body`` on the poison queue base64-encoded, as the host itself moves a message
        there (the trigger decodes base64, so this is the message's original content). Needs
        Storage Queue Data Message Sender."""
        if self._poison is None:
            raise InternalError("this queue has no poison queue")
        with _translated():
            self._poison.send_message(base64.b64encode(body).decode("ascii"))

    def poisoned(self) -> int:
        """The poison queue's approximate length; 0 when it does not exist (nothing was ever
        poisoned). Needs Storage Queue Data Reader."""
        if self._poison is None:
            return 0
        with _translated():
            try:
                return self._poison.get_queue_properties().approximate_message_count or 0
            except ResourceNotFoundError:
                return 0


def wire_text(message: dict) -> str:
    """A message as the queue holds it before base64: compact JSON. The service's limit
    (64 KiB) counts the base64 text, 4/3 of this encoded as UTF-8."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except AzureError as exc:
        raise _translate(exc) from exc


def _translate(exc: AzureError) -> VaultError:
    """The one mapping of Azure exceptions to ``VaultError`` for queue storage."""
    status = getattr(exc, "status_code", None)
    if status is None or status in (408, 429) or status >= 500:
        # No status: the request never got an answer (refused, reset, timed out).
        return UpstreamUnavailable(retry_after=retry_after_of(exc, default=_DEFAULT_RETRY_AFTER),
                                   upstream="storage")
    if status in (401, 403):
        log.error("storage refused the queue request (HTTP %s): the app's identity needs the Storage "
                  "Queue Data Message Sender and Reader roles (Contributor to create queues)",
                  status, extra={"code": "storage_forbidden"})
    elif status == 404:
        log.error("storage queue is missing: deploy it or run ensure_queue",
                  extra={"code": "queue_missing"})
    else:
        code = getattr(exc, "error_code", None)
        log.error("storage rejected the queue request (HTTP %s, %s)", status,
                  getattr(code, "value", code) or "no code", extra={"code": "storage_rejected"})
    return InternalError()

