"""What the sweep's planner and worker share: the queue messages (their format, and how a
body is read back), a record's due time, and the summary lines both log."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from .errors import BadRequest
from .model import is_valid_id

__all__ = ["MESSAGE_VERSION", "BATCH_SIZE", "due_before", "decode_message", "parse_batch",
           "log_summary"]

log = logging.getLogger("tokenvault.sweep")

MESSAGE_VERSION = 1
#: Users per batch message: one entity-group transaction's worth (the service's limit is 100).
BATCH_SIZE = 100


def due_before(user_id: str, now: datetime, refresh_after: timedelta) -> datetime:
    """A record last refreshed before this moment is due.

    Each user gets a fixed offset within the last tenth of ``refresh_after``, so records
    stored together are not all refreshed in the same run (jitter), and the plan and the
    worker — which decide separately — agree on it.
    """
    spread = int(user_id[:8], 16) / 0xFFFFFFFF
    return now - refresh_after + refresh_after * 0.1 * spread


def decode_message(body: bytes | str) -> dict:
    """A sweep message as JSON; anything else is BadRequest (and is poisoned at once)."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("malformed sweep message") from None
    if not isinstance(message, dict) or message.get("v") != MESSAGE_VERSION \
            or message.get("kind") not in ("plan", "batch"):
        raise BadRequest("malformed sweep message")
    if message["kind"] == "plan" and not isinstance(message.get("continuation"), str):
        raise BadRequest("malformed sweep message")
    tenant = message.get("tenant_id")
    if tenant is not None and not is_valid_id(tenant):
        raise BadRequest("malformed sweep message")
    return message


def parse_batch(message: dict) -> tuple[str, list[str]]:
    """The tenant and users of a batch message; anything malformed is BadRequest."""
    tenant_id, users = message.get("tenant_id"), message.get("users")
    if not is_valid_id(tenant_id) or not isinstance(users, list) or len(users) > BATCH_SIZE:
        raise BadRequest("malformed sweep batch message")
    if not all(is_valid_id(u) for u in users):
        raise BadRequest("malformed sweep batch message")
    return tenant_id, users


def log_summary(event: str, fields: dict) -> None:
    """One summary line: the fields in the message text itself — what the runbook's queries parse,
    and what a host without OpenTelemetry export ships — and as the record's ``sweep`` attribute
    (custom dimensions under OpenTelemetry; local handlers and tests)."""
    log.info("%s %s", event, json.dumps(fields, sort_keys=True, separators=(",", ":")),
             extra={"sweep": fields, "event": event})
