"""Per-tenant data keys, write side: what the ops CLI and the rotation pipeline do.

Create a tenant's key, rotate it (a new version; old versions stay readable so old records
still decrypt), list tenants and versions, revoke (soft delete: from then on nothing of the
tenant decrypts, within the readers' cache TTL), recover, and purge (the shred made final).
``KeyVaultKeyAdmin`` does it on Key Vault, ``LocalKeyringAdmin`` on the local keyring file,
with the same semantics, soft delete included.
"""

from __future__ import annotations

import secrets
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

from ..errors import KeyDeleted, KeyExists, TenantNotOnboarded, VaultError
from ..ports import Clock, SystemClock
from .key_format import new_key_value, secret_name, tenant_of
from .keyvault_errors import OFFICER_ROLE, translate
from .local_keyring import read_keyring, write_keyring
from .transport import azure_client_options

__all__ = ["KeyAdmin", "KeyVersionInfo", "DeletedKeyInfo", "KeyVaultKeyAdmin", "LocalKeyringAdmin"]


@dataclass(frozen=True)
class KeyVersionInfo:
    """One version of a tenant's key, without the key."""

    tenant_id: str
    version: str
    created: datetime | None
    enabled: bool = True


@dataclass(frozen=True)
class DeletedKeyInfo:
    """A revoked (soft-deleted) tenant key: when, and when the store will purge it by itself."""

    tenant_id: str
    deleted_on: datetime | None
    scheduled_purge: datetime | None = None


def _deleted(tenant_id: str) -> KeyDeleted:
    return KeyDeleted(f"The key of tenant {tenant_id} is revoked (soft-deleted): recover it to undo the "
                      "revocation, or purge it to make it final, before using the name again.")


def _exists(tenant_id: str) -> KeyExists:
    return KeyExists(f"Tenant {tenant_id} already has a key; rotate it to add a version.")


def _not_deleted(tenant_id: str) -> KeyExists:
    return KeyExists(f"The key of tenant {tenant_id} is not revoked; revoke it first.")


def _none(tenant_id: str) -> TenantNotOnboarded:
    return TenantNotOnboarded(f"Tenant {tenant_id} has no key, active or revoked.")


class KeyAdmin(ABC):
    @abstractmethod
    def create(self, tenant_id: str) -> KeyVersionInfo:
        """Onboard a tenant: its first key version.

        :raises KeyExists: the tenant has a key. :raises KeyDeleted: it has a revoked one.
        """

    @abstractmethod
    def rotate(self, tenant_id: str) -> KeyVersionInfo:
        """Add a new latest version.

        :raises TenantNotOnboarded: no key. :raises KeyDeleted: the key is revoked.
        """

    @abstractmethod
    def tenants(self) -> list[str]:
        """Tenants with an active key, sorted."""

    @abstractmethod
    def versions(self, tenant_id: str) -> list[KeyVersionInfo]:
        """The tenant's key versions, oldest first.

        :raises TenantNotOnboarded: no key. :raises KeyDeleted: the key is revoked.
        """

    @abstractmethod
    def revoke(self, tenant_id: str) -> DeletedKeyInfo:
        """Soft-delete every version: the tenant's records no longer decrypt.

        :raises TenantNotOnboarded: no key. :raises KeyDeleted: already revoked.
        """

    @abstractmethod
    def recover(self, tenant_id: str) -> KeyVersionInfo:
        """Undo a revocation; returns the latest version.

        :raises KeyExists: the key is not revoked. :raises TenantNotOnboarded: no key at all.
        """

    @abstractmethod
    def purge(self, tenant_id: str) -> None:
        """Delete a revoked key for good: the shred is final.

        :raises KeyExists: the key is not revoked. :raises TenantNotOnboarded: no key at all.
        """

    @abstractmethod
    def is_deleted(self, tenant_id: str) -> bool:
        """Whether the tenant's key is revoked and not yet purged."""


def _translate(exc: AzureError) -> VaultError:
    return translate(exc, role=OFFICER_ROLE)


class KeyVaultKeyAdmin(KeyAdmin):
    """Tenant keys as Key Vault secrets ``tenant-<tenant_id>``.

    Every method needs the **Key Vault Secrets Officer** role on the vault. ``client_options``
    go to the ``SecretClient``; ``client`` replaces it outright.
    """

    def __init__(self, vault_url: str, credential: TokenCredential, *,
                 client: SecretClient | None = None, **client_options: Any) -> None:
        self._client = client or SecretClient(vault_url, credential,
                                              **azure_client_options(client_options))
        self._vault_url = vault_url

    def __repr__(self) -> str:
        return f"KeyVaultKeyAdmin({self._vault_url!r})"

    def close(self) -> None:
        self._client.close()

    def create(self, tenant_id: str) -> KeyVersionInfo:
        """Role: Key Vault Secrets Officer (secrets/list, secrets/set)."""
        name = secret_name(tenant_id)
        if self._has_versions(name):
            raise _exists(tenant_id)
        return self._set(tenant_id, name)

    def rotate(self, tenant_id: str) -> KeyVersionInfo:
        """Role: Key Vault Secrets Officer (secrets/list, secrets/set)."""
        name = secret_name(tenant_id)
        if not self._has_versions(name):
            raise _deleted(tenant_id) if self.is_deleted(tenant_id) else _none(tenant_id)
        return self._set(tenant_id, name)

    def tenants(self) -> list[str]:
        """Role: Key Vault Secrets Officer (secrets/list)."""
        try:
            names = [p.name or "" for p in self._client.list_properties_of_secrets()]
        except AzureError as exc:
            raise _translate(exc) from exc
        return sorted(t for t in map(tenant_of, names) if t is not None)

    def versions(self, tenant_id: str) -> list[KeyVersionInfo]:
        """Role: Key Vault Secrets Officer (secrets/list)."""
        name = secret_name(tenant_id)
        try:
            found = list(self._client.list_properties_of_secret_versions(name))
        except AzureError as exc:
            raise _translate(exc) from exc
        if not found:
            raise _deleted(tenant_id) if self.is_deleted(tenant_id) else _none(tenant_id)
        # Key Vault lists versions in no promised order; their creation time is their order.
        found.sort(key=lambda p: p.created_on.timestamp() if p.created_on else 0.0)
        return [KeyVersionInfo(tenant_id, p.version or "", p.created_on, bool(p.enabled)) for p in found]

    def revoke(self, tenant_id: str) -> DeletedKeyInfo:
        """Soft delete, waiting until Key Vault lists it as deleted.
        Role: Key Vault Secrets Officer (secrets/delete, secrets/get)."""
        name = secret_name(tenant_id)
        try:
            poller = self._client.begin_delete_secret(name)
            poller.wait()
            deleted = poller.result()
        except ResourceNotFoundError as exc:
            raise (_deleted(tenant_id) if self.is_deleted(tenant_id) else _none(tenant_id)) from exc
        except AzureError as exc:
            raise _translate(exc) from exc
        return DeletedKeyInfo(tenant_id, deleted.deleted_date, deleted.scheduled_purge_date)

    def recover(self, tenant_id: str) -> KeyVersionInfo:
        """Role: Key Vault Secrets Officer (secrets/recover, secrets/get, secrets/list)."""
        name = secret_name(tenant_id)
        try:
            self._client.begin_recover_deleted_secret(name).wait()
        except ResourceNotFoundError as exc:
            raise (_not_deleted(tenant_id) if self._has_versions(name) else _none(tenant_id)) from exc
        except AzureError as exc:
            raise _translate(exc) from exc
        return self.versions(tenant_id)[-1]

    def purge(self, tenant_id: str) -> None:
        """Role: Key Vault Secrets Officer (secrets/purge)."""
        name = secret_name(tenant_id)
        try:
            self._client.purge_deleted_secret(name)
        except ResourceNotFoundError as exc:
            raise (_not_deleted(tenant_id) if self._has_versions(name) else _none(tenant_id)) from exc
        except AzureError as exc:
            raise _translate(exc) from exc

    def is_deleted(self, tenant_id: str) -> bool:
        """Role: Key Vault Secrets Officer (secrets/get on deleted secrets)."""
        try:
            self._client.get_deleted_secret(secret_name(tenant_id))
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise _translate(exc) from exc
        return True

    def _has_versions(self, name: str) -> bool:
        # Listing (not getting) keeps the key's value off this process.
        try:
            return any(True for _ in self._client.list_properties_of_secret_versions(name))
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise _translate(exc) from exc

    def _set(self, tenant_id: str, name: str) -> KeyVersionInfo:
        try:
            props = self._client.set_secret(name, new_key_value()).properties
        except ResourceExistsError as exc:
            raise _deleted(tenant_id) from exc
        except AzureError as exc:
            raise _translate(exc) from exc
        return KeyVersionInfo(tenant_id, props.version or "", props.created_on, bool(props.enabled))


class LocalKeyringAdmin(KeyAdmin):
    """Tenant keys in the local keyring file, rewritten atomically on every change.

    One process at a time: concurrent writers in other processes are not coordinated.
    """

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        self._path = Path(path)
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalKeyringAdmin({str(self._path)!r})"

    def create(self, tenant_id: str) -> KeyVersionInfo:
        name = secret_name(tenant_id)
        with self._lock:
            document = read_keyring(self._path)
            if document["secrets"].get(name):
                raise _exists(tenant_id)
            if name in document["deleted"]:
                raise _deleted(tenant_id)
            return self._add(document, tenant_id, name)

    def rotate(self, tenant_id: str) -> KeyVersionInfo:
        name = secret_name(tenant_id)
        with self._lock:
            document = read_keyring(self._path)
            self._active(document, tenant_id, name)
            return self._add(document, tenant_id, name)

    def tenants(self) -> list[str]:
        secrets_ = read_keyring(self._path)["secrets"]
        return sorted(t for t in (tenant_of(n) for n, v in secrets_.items() if v) if t is not None)

    def versions(self, tenant_id: str) -> list[KeyVersionInfo]:
        name = secret_name(tenant_id)
        versions = self._active(read_keyring(self._path), tenant_id, name)
        return [_info(tenant_id, v) for v in versions]

    def revoke(self, tenant_id: str) -> DeletedKeyInfo:
        name = secret_name(tenant_id)
        with self._lock:
            document = read_keyring(self._path)
            versions = self._active(document, tenant_id, name)
            now = self._clock.now()
            del document["secrets"][name]
            document["deleted"][name] = {"deleted_on": now.isoformat(), "versions": versions}
            write_keyring(self._path, document)
        return DeletedKeyInfo(tenant_id, now)

    def recover(self, tenant_id: str) -> KeyVersionInfo:
        name = secret_name(tenant_id)
        with self._lock:
            document = read_keyring(self._path)
            deleted = self._revoked(document, tenant_id, name)
            document["secrets"][name] = deleted["versions"]
            del document["deleted"][name]
            write_keyring(self._path, document)
        return _info(tenant_id, deleted["versions"][-1])

    def purge(self, tenant_id: str) -> None:
        name = secret_name(tenant_id)
        with self._lock:
            document = read_keyring(self._path)
            self._revoked(document, tenant_id, name)
            del document["deleted"][name]
            write_keyring(self._path, document)

    def is_deleted(self, tenant_id: str) -> bool:
        return secret_name(tenant_id) in read_keyring(self._path)["deleted"]

    def _active(self, document: dict, tenant_id: str, name: str) -> list[dict]:
        versions = document["secrets"].get(name)
        if not versions:
            raise _deleted(tenant_id) if name in document["deleted"] else _none(tenant_id)
        return versions

    def _revoked(self, document: dict, tenant_id: str, name: str) -> dict:
        if name not in document["deleted"]:
            raise _not_deleted(tenant_id) if document["secrets"].get(name) else _none(tenant_id)
        return document["deleted"][name]

    def _add(self, document: dict, tenant_id: str, name: str) -> KeyVersionInfo:
        # "created" is for people reading the file; readers order versions by position.
        entry = {"version": secrets.token_hex(16), "value": new_key_value(),
                 "created": self._clock.now().isoformat()}
        document["secrets"].setdefault(name, []).append(entry)
        write_keyring(self._path, document)
        return _info(tenant_id, entry)


def _info(tenant_id: str, entry: dict) -> KeyVersionInfo:
    try:
        created = datetime.fromisoformat(entry["created"]) if "created" in entry else None
    except (TypeError, ValueError):
        created = None
    return KeyVersionInfo(tenant_id, entry["version"], created, entry.get("enabled", True) is not False)
