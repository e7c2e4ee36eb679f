"""The one translation of Table Storage errors (azure-core exceptions) into ``VaultError``s,
for ``TableRecords``.

    Table Storage answers                               VaultError
    TableNotFound                                       InternalError, logged: deploy the table
    404                                                 NotFound
    409, 412                                            RecordConflict
    401, 403                                            InternalError, the log naming the role needed
    no answer, 408, 429, 5xx                            UpstreamUnavailable (its Retry-After, else 2 s)
    anything else                                       InternalError
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from ..errors import InternalError, NotFound, RecordConflict, UpstreamUnavailable, VaultError
from .upstream import retry_after_of

__all__ = ["translate", "translated", "error_code", "WRITE_ROLE"]

log = logging.getLogger("tokenvault.adapters.table_records")

_DEFAULT_RETRY_AFTER = 2
WRITE_ROLE = "Storage Table Data Contributor"


@contextmanager
def translated(passthrough: type[Exception] | tuple = ()) -> Iterator[None]:
    """Azure exceptions raised inside become their ``VaultError`` (``passthrough`` ones stay)."""
    try:
        yield
    except passthrough:
        raise
    except AzureError as exc:
        raise translate(exc) from exc


def translate(exc: AzureError) -> VaultError:
    """The one mapping of Azure exceptions to ``VaultError`` for table storage."""
    status = getattr(exc, "status_code", None)
    code = error_code(exc)
    if code == "TableNotFound":
        log.error("storage table is missing: deploy it or run ensure_table",
                  extra={"code": "table_missing"})
        return InternalError()
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return NotFound()
    if isinstance(exc, (ResourceModifiedError, ResourceExistsError)) or status in (409, 412):
        return RecordConflict()
    if status in (401, 403):
        log.error("storage refused the request (HTTP %s): the app's identity needs the %s role "
                  "on the storage account", status, WRITE_ROLE, extra={"code": "storage_forbidden"})
        return InternalError()
    if status is None or status in (408, 429) or status >= 500:
        # No status: the request never got an answer (refused, reset, timed out).
        return UpstreamUnavailable(retry_after=retry_after_of(exc, default=_DEFAULT_RETRY_AFTER),
                                   upstream="storage")
    log.error("storage rejected the request (HTTP %s, %s)", status, code or "no code",
              extra={"code": "storage_rejected"})
    return InternalError()


def error_code(exc: AzureError) -> str:
    """The service's error code (``TableNotFound``, ...), or empty."""
    code = getattr(exc, "error_code", None) or _header(exc, "x-ms-error-code") or ""
    return str(getattr(code, "value", code))


def _header(exc: AzureError, name: str) -> str | None:
    response = getattr(exc, "response", None)
    return response.headers.get(name) if response is not None else None
