"""How a ``TokenRecord`` is laid out as a Table entity (docs/design.md "Record layout"), and the scan's
continuation token. No I/O here: ``records.TableRecords`` does the talking to the service.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import datetime, timezone

from azure.data.tables import TableEntity

from ..errors import BadRequest, InternalError
from ..model import RecordKey, RecordSummary, Status, TokenRecord, valid_id

__all__ = ["ids", "to_entity", "to_record", "to_summary", "encode_continuation", "decode_continuation"]

log = logging.getLogger(__name__)


def ids(key: RecordKey | TokenRecord) -> tuple[str, str]:
    """The (PartitionKey, RowKey) of a key, checked again where ids become table keys: a key
    object that skipped ``RecordKey``'s check must still not reach the service."""
    return valid_id(key.tenant_id, "tenant_id"), valid_id(key.user_id, "user_id")


def to_entity(record: TokenRecord) -> dict[str, str | int | datetime | bytes]:
    tenant, user = ids(record)
    entity: dict[str, str | int | datetime | bytes] = {
        "PartitionKey": tenant,
        "RowKey": user,
        "ClientId": record.client_id,
        "KeyVersion": record.key_version,
        "Status": record.status.value,
        "Scopes": " ".join(record.scopes),
        "CreatedAt": _utc(record.created_at),
        "RefreshedAt": _utc(record.refreshed_at),
        "FailureCount": int(record.failure_count),
    }
    # Absent rather than empty: the service may drop an empty binary property anyway, and a
    # REPLACE then removes a previous value.
    if record.ciphertext:
        entity["Ciphertext"] = bytes(record.ciphertext)
    if record.last_error is not None:
        entity["LastError"] = record.last_error
    return entity


def to_record(entity: TableEntity) -> TokenRecord:
    try:
        return TokenRecord(
            tenant_id=entity["PartitionKey"],
            user_id=entity["RowKey"],
            client_id=entity["ClientId"],
            key_version=entity["KeyVersion"],
            ciphertext=bytes(entity.get("Ciphertext") or b""),
            status=Status(entity["Status"]),
            scopes=tuple((entity.get("Scopes") or "").split()),
            created_at=_moment(entity["CreatedAt"]),
            refreshed_at=_moment(entity["RefreshedAt"]),
            failure_count=int(entity.get("FailureCount") or 0),
            last_error=entity.get("LastError"),
            etag=entity.metadata["etag"],
        )
    except (KeyError, TypeError, ValueError, AttributeError, BadRequest):
        pass
    # Outside the except block: the cause may quote a stored value.
    log.error("stored record is malformed", extra={"code": "record_malformed"})
    raise InternalError("A stored record is malformed.")


def to_summary(entity: TableEntity) -> RecordSummary | None:
    try:
        return RecordSummary(
            tenant_id=valid_id(entity["PartitionKey"], "tenant_id"),
            user_id=valid_id(entity["RowKey"], "user_id"),
            key_version=entity["KeyVersion"],
            status=Status(entity["Status"]),
            refreshed_at=_moment(entity["RefreshedAt"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError, BadRequest):
        pass
    # A row the vault did not write (or cannot read) must not stop the sweep over the others.
    log.warning("scan skipped a malformed row", extra={"code": "record_malformed"})
    return None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        # The SDK would read a naive datetime as local time.
        raise ValueError("record datetimes must be timezone-aware")
    return moment.astimezone(timezone.utc)


def _moment(value: datetime) -> datetime:
    """A plain aware UTC datetime from the SDK's ``TablesEntityDatetime``, which would
    otherwise write back its original service string instead of its value."""
    value = value.astimezone(timezone.utc)
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                    value.microsecond, tzinfo=timezone.utc)


# --- continuation tokens --------------------------------------------------------------------

_TOKEN_FIELDS = frozenset({"PartitionKey", "RowKey"})
_TOKEN_MAX = 4096


def encode_continuation(token: dict) -> str:
    """The SDK's continuation (next partition and row key) as an opaque URL-safe string."""
    # A key the service did not send is None in the SDK's token; absent reads back the same.
    text = json.dumps({k: token[k] for k in sorted(_TOKEN_FIELDS & token.keys()) if token[k] is not None},
                      separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_continuation(value: str) -> dict:
    """The SDK's continuation from ``encode_continuation``'s output; ``BadRequest`` for
    anything else (it comes back from a caller, so it is input like any other)."""
    try:
        if not isinstance(value, str) or len(value) > _TOKEN_MAX:
            raise ValueError
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        token = json.loads(raw.decode("utf-8"))
        if not (isinstance(token, dict) and token and token.keys() <= _TOKEN_FIELDS
                and all(isinstance(v, str) and v.isprintable() for v in token.values())):
            raise ValueError
        return token
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise BadRequest("continuation is not a token this service issued.", field="continuation")
