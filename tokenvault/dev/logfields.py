"""Log fields into the message text, for the dev host's console.

The code logs its fields as ``extra`` attributes (``tenant_id``, ``user_id``, ``code``,
``correlation_id``...). Where an OpenTelemetry log exporter ships the records (Application
Insights, through the Azure Monitor distro) each attribute is a custom dimension of its own;
on a console they would be invisible, so the dev host adds this filter to its handler and the
named fields are appended to the text as JSON: ``redeemed {"rotated": true, "tenant_id": ...}``.

(Until issue 16 the app installed this in Azure too: the Functions worker forwarded only a
record's text to the host. With the app exporting its own telemetry — ``telemetryMode``
``OpenTelemetry``, docs/design.md "Observability" — the attributes arrive as attributes.)

Only the named fields are copied: they are ids, codes and counts, never a secret (tokens and
keys never reach a log call at all; the suite's leak check holds the code to that). Audit
records are left alone: their message is their JSON already.
"""

from __future__ import annotations

import json
import logging

__all__ = ["FieldsInMessage", "install"]

FIELDS = ("tenant_id", "user_id", "code", "correlation_id", "route", "status", "reason",
          "key_version", "rotated")


class FieldsInMessage(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "tokenvault.audit":
            return True
        fields = {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}
        if fields and not getattr(record, "_fields_in_message", False):
            record.msg = f"{record.getMessage()} {json.dumps(fields, sort_keys=True, default=str)}"
            record.args = ()
            record._fields_in_message = True  # a second handler must not append them again
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of ``logger`` (default: the root logger), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, FieldsInMessage) for f in handler.filters):
            handler.addFilter(FieldsInMessage())
