"""TableRecords against a real Azurite: the Records port's contract, docs/design.md's entity layout,
ETag concurrency, the projection scan and the ops methods (edges and errors: *_errors.py)."""

from __future__ import annotations

import base64
import logging
import threading
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.data.tables import TableClient

from tests.support.leaks import remember
from tests.support.storage_fixtures import (
    bulk_insert,
    make_record,
    new_id,
    new_key_material,
    new_secret_token,
    raw_entity,
)
from tokenvault.adapters.key_admin import LocalKeyringAdmin
from tokenvault.adapters.local_keyring import LocalKeyring
from tokenvault.adapters.table_records import TableRecords
from tokenvault.envelope import Binding, seal, unseal
from tokenvault.errors import NotFound, RecordConflict
from tokenvault.model import RecordSummary, Status, TokenRecord

# --- the record and its entity ------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {},
    {"status": Status.REAUTH_REQUIRED, "ciphertext": b"", "scopes": (), "failure_count": 3,
     "last_error": "invalid_grant"},
    {"status": Status.REVOKED, "last_error": None,
     "refreshed_at": datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)},
], ids=["active", "reauth-empty-ciphertext", "revoked"])
def test_every_column_round_trips(records, changes):
    record = make_record(**changes)
    created = records.create(record)
    read = records.get(record.key)
    assert read == record and read.etag == created.etag and read.etag
    assert type(read.created_at) is datetime and read.created_at.tzinfo == timezone.utc
    assert type(read.ciphertext) is bytes


def test_entity_has_the_design_layout(records, table_client):
    record = make_record(last_error="invalid_grant", failure_count=2)
    records.create(record)
    entity = table_client.get_entity(record.tenant_id, record.user_id)
    assert dict(entity) == {
        "PartitionKey": record.tenant_id, "RowKey": record.user_id, "ClientId": record.client_id,
        "KeyVersion": record.key_version, "Ciphertext": record.ciphertext, "Status": "active",
        "Scopes": "https://graph.microsoft.com/User.Read offline_access",
        "CreatedAt": record.created_at, "RefreshedAt": record.refreshed_at, "FailureCount": 2,
        "LastError": "invalid_grant"}


def test_update_replaces_every_column_and_drops_cleared_ones(records, table_client):
    stored = records.create(make_record(last_error="temporarily_unavailable", failure_count=1))
    cleared = stored.evolve(ciphertext=b"", last_error=None, failure_count=0,
                            status=Status.REAUTH_REQUIRED)
    updated = records.update(cleared)
    assert records.get(stored.key) == cleared and updated.etag != stored.etag
    assert {"Ciphertext", "LastError"}.isdisjoint(table_client.get_entity(stored.tenant_id,
                                                                          stored.user_id))


# --- ETags ----------------------------------------------------------------------------------

def test_two_writers_with_one_etag_one_wins_and_the_ciphertext_still_decrypts(records):
    key_material = new_key_material()
    base = records.create(make_record())
    binding = Binding(base.tenant_id, base.user_id, base.client_id, base.key_version)
    tokens = [new_secret_token() for _ in range(2)]
    start, outcomes = threading.Barrier(2), {}

    def write(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = records.update(base.evolve(ciphertext=seal(key_material, tokens[i], binding)))
        except Exception as failure:  # noqa: BLE001 - judged below, not lost in the thread
            outcomes[i] = failure

    writers = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    winners = [i for i, outcome in outcomes.items() if isinstance(outcome, TokenRecord)]
    losers = [i for i, outcome in outcomes.items() if isinstance(outcome, RecordConflict)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    stored = records.get(base.key)
    assert stored.etag == outcomes[winners[0]].etag
    assert unseal(key_material, stored.ciphertext, binding) == tokens[winners[0]]


def test_update_of_a_deleted_row_is_not_found_and_does_not_recreate_it(records):
    stored = records.create(make_record())
    records.delete(stored.key)
    with pytest.raises(NotFound):
        records.update(stored.evolve(status=Status.REVOKED))
    with pytest.raises(NotFound):
        records.get(stored.key)


def test_create_on_an_existing_row_conflicts_and_keeps_it(records):
    stored = records.create(make_record())
    with pytest.raises(RecordConflict):
        records.create(make_record(stored.tenant_id, stored.user_id))
    assert records.get(stored.key) == stored


def test_delete_is_conditional_on_the_etag_when_given(records):
    stored = records.create(make_record())
    newer = records.update(stored.evolve(failure_count=1))
    with pytest.raises(RecordConflict):
        records.delete(stored.key, etag=stored.etag)
    assert records.get(stored.key) == newer
    records.delete(stored.key, etag=newer.etag)
    with pytest.raises(NotFound):
        records.delete(stored.key)


# --- scan -----------------------------------------------------------------------------------

def test_scan_pages_every_row_exactly_once(records, table_client):
    tenants = [new_id() for _ in range(3)]
    keys = {(tenants[i % 3], new_id()) for i in range(2503)}
    bulk_insert(table_client, (raw_entity(t, u) for t, u in keys))
    seen, pages, continuation = [], 0, None
    while True:
        page = records.scan(page_size=1000, continuation=continuation)
        seen += [(item.tenant_id, item.user_id) for item in page]
        pages += 1
        continuation = page.continuation
        if continuation is None:
            break
        assert isinstance(continuation, str)
    assert len(seen) == len(keys) and set(seen) == keys and pages == 3


def test_scan_is_a_projection_without_ciphertext(azurite, table_name, table_client):
    bodies, urls = [], []

    def capture(response):
        urls.append(response.http_request.url)
        bodies.append(response.http_response.text())

    spied = TableClient.from_connection_string(azurite.connection_string, table_name,
                                               raw_response_hook=capture)
    records = TableRecords(spied)
    records.create(make_record())
    bodies.clear(), urls.clear()
    [item] = records.scan()
    assert isinstance(item, RecordSummary) and not hasattr(item, "ciphertext")
    select = parse_qs(urlsplit(urls[0]).query)["$select"]
    assert select == ["PartitionKey,RowKey,KeyVersion,RefreshedAt,Status"]
    assert "Ciphertext" not in bodies[0] and "KeyVersion" in bodies[0]


def test_scan_filters_by_tenant_and_tenant_has_records(records, table_client):
    mine, other, empty = new_id(), new_id(), new_id()
    bulk_insert(table_client, [raw_entity(mine, new_id(), key_version="v7") for _ in range(5)]
                + [raw_entity(other, new_id()) for _ in range(4)])
    page = records.scan(mine)
    assert len(page.items) == 5 and {i.tenant_id for i in page} == {mine}
    assert {i.key_version for i in page} == {"v7"} and page.continuation is None
    assert records.tenant_has_records(mine) and not records.tenant_has_records(empty)


# --- ops ------------------------------------------------------------------------------------

def test_delete_tenant_deletes_only_that_tenant_and_can_repeat(records, table_client):
    doomed, kept = new_id(), new_id()
    bulk_insert(table_client, [raw_entity(doomed, new_id()) for _ in range(250)]
                + [raw_entity(kept, new_id()) for _ in range(3)])
    assert records.delete_tenant(doomed) == 250
    assert not records.tenant_has_records(doomed) and len(records.scan(kept).items) == 3
    assert records.delete_tenant(doomed) == 0


def test_delete_tenant_batch_survives_a_row_deleted_meanwhile(records, table_client):
    tenant, present = new_id(), new_id()
    bulk_insert(table_client, [raw_entity(tenant, present)])
    assert records._delete_batch(tenant, [present, new_id()]) == 1
    assert not records.tenant_has_records(tenant)


def test_count_by_key_version(records, table_client):
    a, b = new_id(), new_id()
    bulk_insert(table_client, [raw_entity(a, new_id(), key_version=v) for v in ("v1", "v1", "v1", "v2", "v2")]
                + [raw_entity(b, new_id(), key_version="v1")])
    assert records.count_by_key_version() == {a: Counter(v1=3, v2=2), b: Counter(v1=1)}
    assert records.count_by_key_version(b) == {b: Counter(v1=1)}


# --- secrets --------------------------------------------------------------------------------

def test_no_repr_or_log_line_shows_ciphertext_or_plaintext(records, secret_token, caplog):
    caplog.set_level(logging.DEBUG)
    key_material = new_key_material()
    record = make_record()
    binding = Binding(record.tenant_id, record.user_id, record.client_id, record.key_version)
    ciphertext = seal(key_material, secret_token, binding)
    remember(ciphertext)
    stored = records.create(record.evolve(ciphertext=ciphertext))
    shown = [repr(stored), str(stored), repr(records), repr(records.get(stored.key)),
             repr(records.scan().items)]
    records.update(stored.evolve(failure_count=1))
    with pytest.raises(RecordConflict) as conflict:
        records.update(stored)
    shown += [repr(conflict.value), str(conflict.value), str(conflict.value.__cause__), caplog.text]
    forms = [secret_token.reveal(), ciphertext.hex(), base64.b64encode(ciphertext).decode(),
             repr(ciphertext)]
    assert unseal(key_material, records.get(stored.key).ciphertext, binding) == secret_token
    assert not [form for form in forms for text in shown if form in text]



# --- the round trip of docs/design.md's local set-up ------------------------------------------

def test_a_record_stored_in_azurite_decrypts_with_the_key_from_the_local_keyring(records, tmp_path):
    tenant = new_id()
    keyring = tmp_path / "keyring.json"
    LocalKeyringAdmin(keyring).create(tenant)
    key = LocalKeyring(keyring).latest(tenant)
    token = new_secret_token()
    record = make_record(tenant, key_version=key.version)
    binding = Binding(record.tenant_id, record.user_id, record.client_id, record.key_version)
    records.create(record.evolve(ciphertext=seal(key.material, token, binding)))

    stored = records.get(record.key)

    # A fresh reader of the keyring file, as another process (the sweep, ops) would be.
    reread = LocalKeyring(keyring).get(tenant, stored.key_version)
    assert unseal(reread.material, stored.ciphertext, binding) == token
