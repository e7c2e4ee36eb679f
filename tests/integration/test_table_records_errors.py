"""TableRecords' edges against a real Azurite: ids and continuation tokens that are input,
storage that is down, refuses us or lacks the table, and the one mapping of Azure errors."""

from __future__ import annotations

import base64
import time

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from tests.support.storage_fixtures import closed_port_connection_string, make_record, new_id
from tokenvault.adapters.table_entity import decode_continuation, encode_continuation
from tokenvault.adapters.table_errors import translate as _translate
from tokenvault.adapters.table_records import TableRecords
from tokenvault.errors import BadRequest, InternalError, NotFound, RecordConflict, UpstreamUnavailable
from tokenvault.model import RecordKey

# --- ids ------------------------------------------------------------------------------------

HOSTILE = ["' or ''='", "a'b", "tenant/../x", "a#b", "a?b", "a\\b", "a\x00b", "a\nb", "",
           "6F9619FF-8B86-D011-B42D-00C04FC964FF", "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
           "6f9619ff-8b86-d011-b42d-00c04fc964ff\n", "6f9619ff8b86d011b42d00c04fc964ff"]


class ForgedKey:
    """A key that skipped RecordKey's checks, as a careless caller might build one."""

    def __init__(self, tenant_id, user_id):
        self.tenant_id, self.user_id = tenant_id, user_id


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_ids_are_bad_requests_before_any_call(azurite, bad):
    # Storage is unreachable: a call that got through would fail as UpstreamUnavailable.
    records = TableRecords.from_connection_string(closed_port_connection_string(azurite), "tokens")
    good = new_id()
    with pytest.raises(BadRequest):
        RecordKey(bad, good)
    with pytest.raises(BadRequest):
        RecordKey(good, bad)
    calls = [lambda: records.get(ForgedKey(bad, good)), lambda: records.get(ForgedKey(good, bad)),
             lambda: records.delete(ForgedKey(bad, good)), lambda: records.scan(bad),
             lambda: records.tenant_has_records(bad), lambda: records.delete_tenant(bad),
             lambda: records.count_by_key_version(bad)]
    for call in calls:
        with pytest.raises(BadRequest):
            call()


# --- errors ---------------------------------------------------------------------------------

def test_unreachable_storage_is_upstream_unavailable_within_seconds(azurite):
    records = TableRecords.from_connection_string(closed_port_connection_string(azurite), "tokens")
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable) as raised:
        records.get(RecordKey(new_id(), new_id()))
    assert time.monotonic() - started < 5
    assert raised.value.upstream == "storage" and raised.value.retry_after >= 1


def test_a_wrong_key_is_internal_and_the_log_names_the_role(azurite, table_name, table_client, caplog):
    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
    records = TableRecords.from_connection_string(wrong, table_name)
    with pytest.raises(InternalError):
        records.get(RecordKey(new_id(), new_id()))
    assert "Storage Table Data Contributor" in caplog.text


def test_a_missing_table_is_internal_not_not_found(azurite, caplog):
    records = TableRecords.from_connection_string(azurite.connection_string, "tmissing" + new_id()[:8])
    with pytest.raises(InternalError):
        records.get(RecordKey(new_id(), new_id()))
    with pytest.raises(InternalError):
        records.create(make_record())
    assert "ensure_table" in caplog.text
    records.ensure_table()
    records.ensure_table()
    with pytest.raises(NotFound):
        records.get(RecordKey(new_id(), new_id()))


class FakeResponse:
    def __init__(self, status: int, headers: dict | None = None, code: str = "") -> None:
        self.status_code, self.reason, self.headers = status, "reason", headers or {}
        self._body = ('{"odata.error":{"code":"%s","message":{"value":"m"}}}' % code) if code else ""

    def text(self, encoding=None):
        return self._body


def http(cls, status, headers=None, code=""):
    return cls(response=FakeResponse(status, headers, code))


@pytest.mark.parametrize("exc, expected", [
    (ResourceNotFoundError("gone"), NotFound),
    (http(ResourceNotFoundError, 404), NotFound),
    (http(HttpResponseError, 404, {"x-ms-error-code": "TableNotFound"}), InternalError),
    (http(ResourceModifiedError, 412), RecordConflict),
    (http(HttpResponseError, 412), RecordConflict),
    (http(ResourceExistsError, 409), RecordConflict),
    (http(HttpResponseError, 409), RecordConflict),
    (http(HttpResponseError, 403), InternalError),
    (http(HttpResponseError, 401), InternalError),
    (http(HttpResponseError, 400), InternalError),
    (http(HttpResponseError, 429, {"Retry-After": "17"}), UpstreamUnavailable),
    (http(HttpResponseError, 503), UpstreamUnavailable),
    (http(HttpResponseError, 500), UpstreamUnavailable),
    (http(HttpResponseError, 408), UpstreamUnavailable),
    (ServiceRequestError("connection refused"), UpstreamUnavailable),
    (ServiceResponseError("connection reset"), UpstreamUnavailable),
], ids=lambda v: getattr(v, "__name__", None) or f"{type(v).__name__}-{getattr(v, 'status_code', '')}")
def test_azure_errors_map_to_vault_errors(exc, expected):
    translated = _translate(exc)
    assert type(translated) is expected
    if expected is UpstreamUnavailable:
        assert translated.upstream == "storage"
        assert translated.retry_after == (17 if getattr(exc, "status_code", None) == 429 else 2)


# --- continuation tokens --------------------------------------------------------------------

@pytest.mark.parametrize("token", ["", "not base64!", base64.urlsafe_b64encode(b"[1]").decode(),
                                   base64.urlsafe_b64encode(b'{"Table":"x"}').decode(),
                                   base64.urlsafe_b64encode(b'{"RowKey":"a\\u0000"}').decode()])
def test_a_forged_continuation_is_a_bad_request(records, token):
    with pytest.raises(BadRequest) as raised:
        records.scan(continuation=token)
    assert raised.value.field == "continuation"


@pytest.mark.parametrize("token", [{"PartitionKey": "1!48!abc", "RowKey": "1!48!def"},
                                   {"PartitionKey": "1!48!abc", "RowKey": None}])
def test_continuation_tokens_round_trip(token):
    encoded = encode_continuation(token)
    assert encoded.isascii() and "=" not in encoded and "/" not in encoded
    assert decode_continuation(encoded) == {k: v for k, v in token.items() if v is not None}
