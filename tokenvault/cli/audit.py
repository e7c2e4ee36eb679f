"""The ops CLI's audit records: one per ``keys`` or ``records`` command, allowed or failed.

The record is the app's (``tokenvault.audit``, docs/design.md "Audit record") with ``action``
``keys.<command>`` or ``records.<command>`` and ``caller`` ``ops:<who>``, where *who* is, in
order: ``TOKENVAULT_OPERATOR`` when set (a pipeline can name itself); in a GitHub Actions run
``github:<actor>`` (``GITHUB_ACTOR``, with the run id in ``run``); in an Azure DevOps run
``ado:<requested for>`` (``BUILD_REQUESTEDFOR``, with ``BUILD_BUILDID`` in ``run``); else the
local user and machine, ``<user>@<host>``. That says who ran the command; the Entra principal
that Key Vault and Storage saw is in their own logs (Key Vault's AZKVAuditLogs name it for
every key operation: docs/operations.md).

The CLI also prints each record on stderr (stdout stays the command's output), after the
command's error line if it failed.
"""

from __future__ import annotations

import getpass
import logging
import os
import platform
import uuid
from collections.abc import Mapping

from ..audit import Audit
from ..audit import log as audit_log

__all__ = ["operator", "start"]


def operator(environ: Mapping[str, str] = os.environ) -> tuple[str, str | None]:
    """``ops:<who>`` and the pipeline run id, if any."""
    if environ.get("TOKENVAULT_OPERATOR"):
        return f"ops:{environ['TOKENVAULT_OPERATOR']}", None
    if environ.get("GITHUB_ACTIONS") == "true" and environ.get("GITHUB_ACTOR"):
        return f"ops:github:{environ['GITHUB_ACTOR']}", environ.get("GITHUB_RUN_ID")
    if environ.get("TF_BUILD") and environ.get("BUILD_REQUESTEDFOR"):
        return f"ops:ado:{environ['BUILD_REQUESTEDFOR']}", environ.get("BUILD_BUILDID")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        user = "unknown"
    return f"ops:{user}@{platform.node() or 'unknown'}", None


def start(action: str, *, tenant_id: str | None, user_id: str | None,
          details: dict | None = None) -> Audit:
    """The audit record of one command, to be written once with its outcome."""
    caller, run = operator()
    if audit_log.getEffectiveLevel() > logging.INFO:
        audit_log.setLevel(logging.INFO)  # whatever logging is set up gets the records
    return Audit(action, uuid.uuid4().hex, caller=caller, tenant_id=tenant_id, user_id=user_id,
                 details={**(details or {}), **({"run": run} if run else {})})
