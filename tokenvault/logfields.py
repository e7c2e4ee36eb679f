"""Log fields into the message text, for hosts that ship only the text.

The code logs its fields as ``extra`` attributes (``tenant_id``, ``user_id``, ``code``,
``correlation_id``...), which local handlers and tests read. The Azure Functions Python worker
forwards a record's message text to Application Insights and drops those attributes, so in
Azure (and in the dev host's console) this filter appends them to the text as JSON:
``redeemed {"rotated": true, "tenant_id": "...", "user_id": "..."}``.

Only the named fields are copied: they are ids, codes and counts, never a secret (tokens and
keys never reach a log call at all; the suite's leak check holds the code to that).
"""

from __future__ import annotations

import json
import logging

__all__ = ["FieldsInMessage", "install"]

FIELDS = ("tenant_id", "user_id", "code", "correlation_id", "route", "status", "reason",
          "key_version", "rotated")


class FieldsInMessage(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
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
