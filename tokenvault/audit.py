"""The audit trail: one record per audited operation, allowed or refused.

Audited are the data routes (store, redeem, describe, forget) and every ops CLI key or record
command. Each writes exactly one log record at INFO on the logger ``tokenvault.audit``, whose
message is ``audit `` followed by one JSON object (docs/design.md "Audit record"):

    audit {"action":"redeem","cached":false,"caller":"app:<app id>@<tid>","correlation_id":"...",
           "outcome":"ok","scopes":["..."],"tenant_id":"...","user_id":"..."}

The same fields are the record's attributes, so where an OpenTelemetry log exporter ships the
record (Application Insights) each is a custom dimension of its own. ``scopes`` is a JSON list
in the message and one space-separated string as an attribute (OAuth's own form).

What goes in is decided here, not at the call sites: ids, codes, scope names and booleans.
Never a token, key, assertion or ciphertext — the ``Audit`` takes no value that could hold one.
``caller`` is what was *established*: a caller whose token failed validation is
``unauthenticated``, whatever its token claimed; ``tenant_id``/``user_id`` are the record the
request named (validated GUIDs) or, for a user storing, the validated token's own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from .model import Caller

__all__ = ["Audit", "caller_name", "UNAUTHENTICATED", "log"]

log = logging.getLogger("tokenvault.audit")

UNAUTHENTICATED = "unauthenticated"


def caller_name(caller: Caller) -> str:
    """``user:<oid>@<tid>`` or ``app:<app id>@<tid>`` of a validated caller."""
    if caller.is_user:
        return f"user:{caller.object_id}@{caller.tenant_id}"
    return f"app:{caller.app_id}@{caller.tenant_id}"


@dataclass
class Audit:
    """One audited operation, filled in as it is established, written once by ``write``."""

    action: str
    correlation_id: str
    caller: str = UNAUTHENTICATED
    tenant_id: str | None = None
    user_id: str | None = None
    scopes: tuple[str, ...] | None = None
    #: redeem only: whether the access token came from the in-memory cache.
    cached: bool | None = None
    #: command-specific facts (ops CLI): names and counts only.
    details: dict[str, str | int | bool | None] = field(default_factory=dict)
    _written: bool = field(default=False, repr=False)

    def authenticated(self, caller: Caller) -> None:
        self.caller = caller_name(caller)

    def target(self, tenant_id: str | None, user_id: str | None = None) -> None:
        self.tenant_id, self.user_id = tenant_id, user_id

    def asked_for(self, scopes: Sequence[str]) -> None:
        self.scopes = tuple(scopes)

    def fields(self, outcome: str) -> dict:
        fields: dict = {"action": self.action, "outcome": outcome, "caller": self.caller,
                        "tenant_id": self.tenant_id, "user_id": self.user_id,
                        "correlation_id": self.correlation_id}
        if self.action in ("store", "redeem"):
            fields["scopes"] = None if self.scopes is None else list(self.scopes)
        if self.action == "redeem":
            fields["cached"] = bool(self.cached)
        fields.update(self.details)
        return fields

    def write(self, outcome: str) -> str | None:
        """Write the record and return its message (once: a second call writes nothing and
        returns None, so a path that audits early is never audited twice)."""
        if self._written:
            return None
        self._written = True
        fields = self.fields(outcome)
        message = "audit " + json.dumps(fields, sort_keys=True, separators=(",", ":"))
        attributes = {**fields, "audit": True}
        if fields.get("scopes") is not None:
            attributes["scopes"] = " ".join(fields["scopes"])
        log.info("%s", message, extra=attributes)
        return message
