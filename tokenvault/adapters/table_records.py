"""The record store on Azure Table Storage: one entity per (tenant, user), every write
conditional on the ETag it was read with.

The entity layout (docs/design.md "Record layout") lives in ``table_entity``. Ids are checked as lower-case
GUIDs here again, although ``RecordKey`` and ``TokenRecord`` already check them, because this is
where an id becomes a table key or a filter value: nothing else may reach either. Azure
exceptions become ``VaultError``s in one place, ``table_errors.translate``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, cast

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.core.paging import ItemPaged
from azure.data.tables import TableClient, TableEntity, TableTransactionError, UpdateMode

from ..errors import InternalError, NotFound, RecordConflict
from ..model import RecordKey, TokenRecord, valid_id
from ..ports import Page, Records
from .table_entity import decode_continuation, encode_continuation, ids, to_entity, to_record, to_summary
from .table_errors import error_code, translate, translated
from .transport import azure_client_options

__all__ = ["TableRecords", "CLIENT_OPTIONS"]


#: Client options for the redeem hot path. The SDK's defaults (10 retries, exponential backoff
#: up to 2 minutes, 300 s timeouts) would hold a user's request for minutes while storage is
#: down; failing within seconds lets the caller see 503 + Retry-After and retry on its own.
#: (azure-core still sleeps for a Retry-After the service sends; Table Storage rarely does.)
CLIENT_OPTIONS = {
    "retry_total": 2,
    "retry_backoff_factor": 0.25,
    "retry_backoff_max": 2,
    "connection_timeout": 3,
    "read_timeout": 5,
}
#: What the sweep's plan reads of a record: never the ciphertext.
PROJECTION = ("PartitionKey", "RowKey", "KeyVersion", "RefreshedAt", "Status")
#: What the sweep's worker reads of a batch: the record's own columns and nothing else (not the
#: service's Timestamp). All of them, ciphertext included: a rewrap opens the ciphertext, and
#: its write is a REPLACE of the whole entity, which would drop any column it did not carry.
RECORD_COLUMNS = ("PartitionKey", "RowKey", "ClientId", "KeyVersion", "Ciphertext", "Status",
                  "Scopes", "CreatedAt", "RefreshedAt", "FailureCount", "LastError")
_BY_TENANT = "PartitionKey eq @tenant"
_RANGE = "PartitionKey eq @tenant and RowKey ge @first and RowKey le @last"
# Users read by key in one query: a filter may hold 15 comparisons, one is the PartitionKey's.
# https://learn.microsoft.com/rest/api/storageservices/querying-tables-and-entities
_BY_KEY = 14
#: The service's limit of operations in one entity-group transaction; the SDK does not check it
#: (past it the service drops the connection), so this module does.
_BATCH = 100
# A transaction refused for one operation names it as the message's prefix ("37:...").
# https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions
_FAILED_INDEX = re.compile(r"(\d+):")


class TableRecords(Records):
    """``Records`` over one table. Build it once per process: the client pools connections."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    @classmethod
    def from_connection_string(cls, conn: str, table_name: str, *, pool: int | None = None,
                               **options: Any) -> "TableRecords":
        """``options`` override ``CLIENT_OPTIONS`` (and may add any azure-core client option);
        ``pool``: connections to keep (``transport.pool_size``; None: the SDK's 10)."""
        return cls(TableClient.from_connection_string(
            conn, table_name, **azure_client_options({**CLIENT_OPTIONS, **options}, pool=pool)))

    @classmethod
    def from_endpoint(cls, endpoint: str, table_name: str, credential: TokenCredential, *,
                      pool: int | None = None, **options: Any) -> "TableRecords":
        """Identity-based access: ``credential`` is an azure-identity credential."""
        return cls(TableClient(endpoint, table_name, credential=credential,
                               **azure_client_options({**CLIENT_OPTIONS, **options}, pool=pool)))

    def __repr__(self) -> str:
        return f"TableRecords(table={self._table.table_name!r})"

    def close(self) -> None:
        self._table.close()

    def ensure_table(self) -> None:
        """Create the table if it is missing (deployment and local runs; not per call).
        Needs Storage Table Data Contributor."""
        with translated():
            try:
                self._table.create_table()
            except ResourceExistsError:
                pass

    # --- the port ------------------------------------------------------------------------

    def get(self, key: RecordKey) -> TokenRecord:
        """Point read. Needs Storage Table Data Reader (or Contributor)."""
        tenant, user = ids(key)
        with translated():
            entity = self._table.get_entity(tenant, user)
        return to_record(entity)

    def get_many(self, tenant_id: str, user_ids: Sequence[str]) -> dict[str, TokenRecord]:
        """``RECORD_COLUMNS`` of the users' rows. First one range query from the lowest user
        id to the highest, of which one page of twice as many rows as users is read: a dense
        batch (a rewrap after a rotation) is all there. What a sparse batch (refreshes spread
        over a tenant) leaves is then read by key, 14 users a query — never a whole range of
        rows nobody asked for. Rows not asked for are dropped unread. Needs Storage Table Data
        Reader."""
        tenant = valid_id(tenant_id, "tenant_id")
        wanted = {valid_id(user, "user_id") for user in user_ids}
        if not wanted:
            return {}
        found: dict[str, TokenRecord] = {}
        pager = self._table.query_entities(
            _RANGE, parameters={"tenant": tenant, "first": min(wanted), "last": max(wanted)},
            select=list(RECORD_COLUMNS), results_per_page=min(1000, 2 * len(wanted)))
        with translated():
            pages = cast(Any, pager).by_page()  # the Tables SDK's page iterator has a token
            first = list(next(pages, ()))
            more = pages.continuation_token is not None
        _let_go(pages)
        _keep(first, wanted, found)
        rest = sorted(wanted - found.keys()) if more else []
        for start in range(0, len(rest), _BY_KEY):
            group = rest[start:start + _BY_KEY]
            keys = " or ".join(f"RowKey eq @u{n}" for n in range(len(group)))
            parameters = {"tenant": tenant, **{f"u{n}": user for n, user in enumerate(group)}}
            _keep(_entities(self._table.query_entities(
                # Spaces around the parentheses: the SDK finds parameters between spaces.
                f"PartitionKey eq @tenant and ( {keys} )", parameters=parameters,
                select=list(RECORD_COLUMNS), results_per_page=len(group))), wanted, found)
        return found

    def create(self, record: TokenRecord) -> TokenRecord:
        """Insert; ``RecordConflict`` if the row exists. Needs Storage Table Data Contributor."""
        entity = to_entity(record)
        with translated():
            written = self._table.create_entity(entity)
        return record.evolve(etag=written["etag"])

    def update(self, record: TokenRecord) -> TokenRecord:
        """Replace the row if its ETag is still ``record.etag``. A PUT with ``If-Match`` never
        inserts, so a deleted row stays deleted (``NotFound``). Needs Storage Table Data
        Contributor."""
        if not record.etag:
            raise ValueError("update needs the ETag the record was read with")
        entity = to_entity(record)
        with translated():
            written = self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=record.etag,
                                                match_condition=MatchConditions.IfNotModified)
        return record.evolve(etag=written["etag"])

    def update_many(self, records: Sequence[TokenRecord]) -> list[TokenRecord | None]:
        """Entity-group transactions of at most 100 replaces, each with ``If-Match`` on its own
        record's ETag. The service applies a transaction whole or not at all, and names the
        operation that failed it: a 412 (changed) or 404 (deleted) drops that record — someone
        else wrote it, so it is their turn — and the rest is sent again. Needs Storage Table
        Data Contributor."""
        if len({record.tenant_id for record in records}) > 1:
            raise ValueError("update_many takes records of one tenant (one partition)")
        if not all(record.etag for record in records):
            raise ValueError("update_many needs the ETag each record was read with")
        written: list[TokenRecord | None] = [None] * len(records)
        for start in range(0, len(records), _BATCH):
            pending = list(range(start, min(start + _BATCH, len(records))))
            while pending:
                pending = self._transact(records, pending, written)
        return written

    def _transact(self, records: Sequence[TokenRecord], pending: list[int],
                  written: list[TokenRecord | None]) -> list[int]:
        """Submit one transaction of ``pending`` (indexes into ``records``); note what was
        written and return what is left to send again (nothing, or ``pending`` less the
        record that failed it)."""
        operations = [("update", to_entity(records[i]),
                       {"mode": UpdateMode.REPLACE, "etag": records[i].etag,
                        "match_condition": MatchConditions.IfNotModified}) for i in pending]
        try:
            with translated(passthrough=TableTransactionError):
                answers = self._table.submit_transaction(operations)
        except TableTransactionError as exc:
            if exc.status_code not in (404, 412) or error_code(exc) == "TableNotFound":
                raise translate(exc) from exc
            failed = _FAILED_INDEX.match(str(getattr(exc, "message", "") or ""))
            if failed is None or int(failed.group(1)) >= len(pending):
                # No operation named: find the stale ones one conditional write at a time.
                for i in pending:
                    written[i] = self._update_or_none(records[i])
                return []
            return pending[:int(failed.group(1))] + pending[int(failed.group(1)) + 1:]
        for i, answer in zip(pending, answers, strict=True):
            written[i] = records[i].evolve(etag=answer["etag"])
        return []

    def _update_or_none(self, record: TokenRecord) -> TokenRecord | None:
        try:
            return self.update(record)
        except (RecordConflict, NotFound):
            return None

    def delete(self, key: RecordKey, etag: str | None = None) -> None:
        """Delete the row (only that version of it when ``etag`` is given). Needs Storage Table
        Data Contributor."""
        tenant, user = ids(key)
        # The SDK swallows a 404 on delete; the port reports it, so look at the status.
        statuses: list[int] = []
        condition = MatchConditions.IfNotModified if etag else MatchConditions.Unconditionally
        with translated():
            self._table.delete_entity(
                tenant, user, etag=etag, match_condition=condition,
                raw_response_hook=lambda response: statuses.append(response.http_response.status_code))
        if statuses and statuses[-1] == 404:
            raise NotFound()

    def scan(self, tenant_id: str | None = None, *, page_size: int = 1000,
             continuation: str | None = None) -> Page:
        """One service page of the projection ``PROJECTION``. A page may hold fewer than
        ``page_size`` rows (even none) and still have a continuation. Needs Storage Table Data
        Reader."""
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000 (the service's page limit)")
        resume = decode_continuation(continuation) if continuation is not None else None
        pager = self._query(tenant_id, PROJECTION, page_size)
        with translated():
            # azure-core annotates continuation tokens as str and by_page as a plain iterator;
            # the Tables SDK's tokens are dicts and its page iterator has continuation_token.
            pages = cast(Any, pager).by_page(continuation_token=resume)
            entities = list(next(pages, ()))
        items = [summary for summary in map(to_summary, entities) if summary is not None]
        token = pages.continuation_token
        _let_go(pages)
        return Page(items, encode_continuation(token) if token else None)

    def tenant_has_records(self, tenant_id: str) -> bool:
        """A query for at most one row key of the tenant. Needs Storage Table Data Reader."""
        pager = self._query(valid_id(tenant_id, "tenant_id"), ("RowKey",), 1)
        with translated():
            return next(iter(pager), None) is not None

    # --- ops -----------------------------------------------------------------------------

    def delete_tenant(self, tenant_id: str) -> int:
        """Delete every record of the tenant; return how many this call deleted. Safe to repeat
        and to run beside other writers. Needs Storage Table Data Contributor."""
        tenant = valid_id(tenant_id, "tenant_id")
        deleted = 0
        while True:
            # Re-query from the start each round: the rows just deleted are gone from it, and
            # no continuation has to survive deletes.
            with translated():
                users = [e["RowKey"] for e in islice(self._query(tenant, ("RowKey",), 1000), 1000)]
            if not users:
                return deleted
            for start in range(0, len(users), _BATCH):
                deleted += self._delete_batch(tenant, users[start:start + _BATCH])

    def count_by_key_version(self, tenant_id: str | None = None) -> dict[str, Counter[str]]:
        """Records per tenant per key version, from a projection scan. Needs Storage Table Data
        Reader."""
        counts: dict[str, Counter[str]] = {}
        with translated():
            for entity in self._query(tenant_id, ("PartitionKey", "KeyVersion"), 1000):
                counts.setdefault(entity["PartitionKey"], Counter())[entity.get("KeyVersion", "")] += 1
        return counts

    # --- helpers -------------------------------------------------------------------------

    def _query(self, tenant_id: str | None, select: Iterable[str],
               page_size: int) -> ItemPaged[TableEntity]:
        if tenant_id is None:
            return self._table.list_entities(results_per_page=page_size, select=list(select))
        return self._table.query_entities(
            _BY_TENANT, parameters={"tenant": valid_id(tenant_id, "tenant_id")},
            results_per_page=page_size, select=list(select))

    def _delete_batch(self, tenant: str, users: list[str]) -> int:
        try:
            with translated(passthrough=TableTransactionError):
                self._table.submit_transaction(
                    [("delete", {"PartitionKey": tenant, "RowKey": user}) for user in users])
            return len(users)
        except TableTransactionError as exc:
            if exc.status_code != 404:
                raise translate(exc) from exc
        # A row vanished meanwhile and failed the whole transaction: go one by one.
        deleted = 0
        for user in users:
            try:
                self.delete(RecordKey(tenant, user))
                deleted += 1
            except NotFound:
                pass
        return deleted


def _keep(entities: Iterable[TableEntity], wanted: set[str], found: dict[str, TokenRecord]) -> None:
    for entity in entities:
        if entity.get("RowKey") not in wanted:
            continue
        try:
            found[entity["RowKey"]] = to_record(entity)
        except InternalError:
            continue  # logged by to_record; the rest of the batch goes on


def _entities(pager: ItemPaged[TableEntity]) -> Iterator[TableEntity]:
    """Every entity of a query, page by page, letting go of each page when done with it."""
    with translated():
        pages = pager.by_page()
        for page in pages:
            yield from list(page)
            _let_go(pages)


def _let_go(pages: Any) -> None:
    """azure-core's page iterator keeps bound methods of itself (a reference cycle), so the
    page it holds would wait for a full garbage collection: the sweep's memory would grow with
    the record count between collections. Let go of the page now."""
    pages._current_page = pages._response = None
