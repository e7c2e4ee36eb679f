"""TableRecords' batch reads and writes against a real Azurite: one range query for a batch of
users, and conditional replaces in entity-group transactions — every operation with its own
``If-Match``, a transaction refused for one stale or deleted row sent again without it, at most
100 operations in one transaction."""

from __future__ import annotations

import re
import threading

import pytest

from tests.support.storage_fixtures import make_record, new_id
from tokenvault.adapters.table_records import RECORD_COLUMNS, TableRecords
from tokenvault.errors import NotFound
from tokenvault.model import RecordKey, Status


class Requests:
    """A hook on the client: every request's method, URL and body (a transaction's body holds
    each operation's request line and headers) and its status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str, str, int]] = []

    def __call__(self, pipeline_response) -> None:
        request, response = pipeline_response.http_request, pipeline_response.http_response
        body = request.body if isinstance(request.body, (bytes, str)) else b""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        with self._lock:
            self.seen.append((request.method, request.url, text, response.status_code))

    def transactions(self) -> list[tuple[str, int]]:
        return [(body, status) for method, url, body, status in self.seen
                if method == "POST" and url.endswith("$batch")]


@pytest.fixture
def hooked(azurite, table_name, table_client) -> tuple[TableRecords, Requests]:
    seen = Requests()
    adapter = TableRecords.from_connection_string(azurite.connection_string, table_name,
                                                  raw_response_hook=seen)
    yield adapter, seen
    adapter.close()


def stored(records: TableRecords, tenant: str, count: int) -> list:
    created = [records.create(make_record(tenant, new_id())) for _ in range(count)]
    return sorted(created, key=lambda r: r.user_id)


def selected(url: str) -> set[str]:
    return set(re.search(r"\$select=([^&]+)", url).group(1).replace("%2C", ",").split(","))


def test_a_dense_batch_is_read_with_one_range_query_of_the_record_columns(hooked, table_client):
    records, seen = hooked
    tenant = new_id()
    rows = stored(records, tenant, 30)
    stored(records, new_id(), 3)  # another tenant's rows stay out
    wanted = [r.user_id for r in rows[5:25]]
    seen.seen.clear()

    found = records.get_many(tenant, wanted)

    ((method, url, _, status),) = seen.seen
    assert (method, status) == ("GET", 200)
    assert "RowKey%20ge" in url and "RowKey%20le" in url and selected(url) == set(RECORD_COLUMNS)
    assert found == {r.user_id: r for r in rows[5:25]}
    assert all(found[r.user_id].etag == r.etag for r in rows[5:25])
    assert records.get_many(tenant, []) == {}


def test_a_sparse_batch_reads_what_the_first_page_lacks_by_key_not_the_whole_range(
        hooked, table_client):
    records, seen = hooked
    tenant = new_id()
    rows = stored(records, tenant, 120)
    wanted = [r.user_id for r in rows[::6]] + [new_id()]  # 20 stored, one never was
    seen.seen.clear()

    found = records.get_many(tenant, wanted)

    assert found == {r.user_id: r for r in rows[::6]}
    urls = [url for _, url, _, _ in seen.seen]
    # One page of the range (42 rows: twice the users), then the rest by key, at most 14 a
    # query (15 comparisons with the PartitionKey's) — not the 100-odd rows of the range.
    assert "RowKey%20ge" in urls[0] and "top=42" in urls[0].replace("%24", "$").replace("$", "")
    keyed = urls[1:]
    assert 1 <= len(keyed) <= 2 and all("RowKey%20ge" not in u for u in keyed)
    assert all(u.count("RowKey%20eq") <= 14 and selected(u) == set(RECORD_COLUMNS) for u in keyed)


def test_a_transaction_with_one_stale_and_one_deleted_row_writes_every_other_record(
        hooked, table_client):
    records, seen = hooked
    tenant = new_id()
    rows = stored(records, tenant, 10)
    stale, deleted = rows[3], rows[7]
    # Another writer changes one row and deletes another after our read.
    theirs = records.update(stale.evolve(last_error="theirs", failure_count=9))
    records.delete(deleted.key)
    ours = [r.evolve(key_version="v2", status=Status.REVOKED, last_error="ours") for r in rows]
    seen.seen.clear()

    written = records.update_many(ours)

    assert [w is None for w in written] == [i in (3, 7) for i in range(10)]
    for record, result in zip(ours, written, strict=True):
        if result is None:
            continue
        now = records.get(record.key)
        assert now == record and now.etag == result.etag != record.etag
    # The stale row keeps the other writer's version; the deleted one is not re-created.
    assert records.get(stale.key) == theirs and records.get(stale.key).etag == theirs.etag
    with pytest.raises(NotFound):
        records.get(deleted.key)
    # Three transactions: refused at the stale row (412), then at the deleted one (404), then
    # the eight others; every operation of every one conditional on its own record's ETag.
    transactions = seen.transactions()
    assert [status for _, status in transactions] == [202, 202, 202]
    bodies = [body for body, _ in transactions]
    assert [body.count("PUT ") for body in bodies] == [10, 9, 8]
    for body in bodies:
        assert body.count("If-Match: ") == body.count("PUT ")
        assert "If-Match: *" not in body
    assert 'If-Match: W/"' in bodies[0]


def test_more_than_a_hundred_records_go_in_transactions_of_at_most_a_hundred(hooked):
    records, seen = hooked
    tenant = new_id()
    rows = stored(records, tenant, 230)
    seen.seen.clear()

    written = records.update_many([r.evolve(failure_count=1) for r in rows])

    assert all(w is not None for w in written)
    assert [body.count("PUT ") for body, _ in seen.transactions()] == [100, 100, 30]
    assert all(records.get(r.key).failure_count == 1 for r in rows[::23])


def test_a_batch_write_takes_one_tenant_and_only_records_read_with_an_etag(records):
    a, b = make_record(), make_record()
    with pytest.raises(ValueError):
        records.update_many([a.evolve(etag='W/"1"'), b.evolve(etag='W/"1"')])
    with pytest.raises(ValueError):
        records.update_many([a])
    assert records.update_many([]) == []
    with pytest.raises(NotFound):
        records.get(RecordKey(a.tenant_id, a.user_id))
