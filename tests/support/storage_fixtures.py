"""Fixtures for the table and queue adapters, over the session's Azurite.

Each test gets a table (or queue) of its own. Bulk rows are written as raw entities in the
layout docs/design.md "Record layout" gives, with transactions of 100, so the adapter is checked against
the contract rather than against its own writer.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import pytest
from azure.data.tables import TableClient

from tests.support.leaks import remember
from tokenvault.adapters.storage_queue import StorageQueue
from tokenvault.adapters.table_records import TableRecords
from tokenvault.dev.azurite import free_port
from tokenvault.model import Status, TokenRecord
from tokenvault.sensitive import Sensitive

__all__ = ["new_id", "new_secret_token", "new_key_material", "make_record", "raw_entity", "bulk_insert",
           "closed_port_connection_string"]

CLIENT_ID = "5d2b9c1e-8a4f-4e0b-9c6d-3f1a2b4c5d6e"
WHEN = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


def make_record(tenant_id: str | None = None, user_id: str | None = None, **changes) -> TokenRecord:
    record = TokenRecord(
        tenant_id=tenant_id or new_id(), user_id=user_id or new_id(), client_id=CLIENT_ID,
        key_version=secrets.token_hex(16), ciphertext=b"\x01" + os.urandom(60),
        status=Status.ACTIVE, scopes=("https://graph.microsoft.com/User.Read", "offline_access"),
        created_at=WHEN, refreshed_at=WHEN + timedelta(hours=1), failure_count=0, last_error=None)
    return record.evolve(**changes)


def raw_entity(tenant_id: str, user_id: str, *, key_version: str = "v1",
               status: str = "active") -> dict:
    return {"PartitionKey": tenant_id, "RowKey": user_id, "ClientId": CLIENT_ID,
            "KeyVersion": key_version, "Ciphertext": b"\x01" + bytes(40), "Status": status,
            "Scopes": "User.Read", "CreatedAt": WHEN, "RefreshedAt": WHEN, "FailureCount": 0}


def bulk_insert(table: TableClient, entities: Iterable[dict]) -> None:
    by_tenant: dict[str, list[dict]] = {}
    for entity in entities:
        by_tenant.setdefault(entity["PartitionKey"], []).append(entity)
    for rows in by_tenant.values():
        for start in range(0, len(rows), 100):
            table.submit_transaction([("create", row) for row in rows[start:start + 100]])


def closed_port_connection_string(azurite) -> str:
    """Azurite's connection string with every endpoint on a port nothing listens on."""
    dead = f"127.0.0.1:{free_port()}"
    return (azurite.connection_string
            .replace(f"127.0.0.1:{azurite.table_port}", dead)
            .replace(f"127.0.0.1:{azurite.queue_port}", dead)
            .replace(f"127.0.0.1:{azurite.blob_port}", dead))


@pytest.fixture
def table_client(azurite, table_name) -> TableClient:
    """A plain SDK client on the test's own (created) table, to look behind the adapter."""
    client = TableClient.from_connection_string(azurite.connection_string, table_name)
    client.create_table()
    yield client
    client.close()


@pytest.fixture
def records(azurite, table_name, table_client) -> TableRecords:
    """The adapter under test, built the way production builds it, on the test's table."""
    adapter = TableRecords.from_connection_string(azurite.connection_string, table_name)
    yield adapter
    adapter.close()


@pytest.fixture
def queue_name() -> str:
    return "q" + uuid.uuid4().hex[:20]


@pytest.fixture
def storage_queue(azurite, queue_name) -> StorageQueue:
    queue = StorageQueue.from_connection_string(azurite.connection_string, queue_name)
    queue.ensure_queue()
    yield queue
    queue.close()


def new_secret_token() -> Sensitive[str]:
    token = "rt-" + secrets.token_urlsafe(32)
    remember(token)
    return Sensitive(token)


def new_key_material() -> Sensitive[bytes]:
    material = os.urandom(32)
    remember(material)
    return Sensitive(material)


@pytest.fixture
def secret_token() -> Sensitive[str]:
    return new_secret_token()
