"""The local keyring: a file that plays Key Vault for local runs and tests (docs/design.md
"Local keyring"). Its format, read and replaced atomically, and ``LocalKeyring``, the ``Keys``
port over it (refused in Azure).

``{"secrets": {"tenant-<tid>": [{"version": "<32 hex>", "value": "<base64 of 32 bytes>"}, ...]},
"deleted": {"tenant-<tid>": {"deleted_on": "<ISO 8601>", "versions": [...]}}}`` — versions
oldest first. ``deleted`` mirrors Key Vault's soft delete: the ops commands move a revoked
tenant's versions there, so it can be recovered or purged; readers ignore it.
``LocalKeyring`` reads the file, ``key_admin.LocalKeyringAdmin`` writes it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..errors import SettingError, TenantKeyInvalid, TenantNotOnboarded, TenantRevoked, VaultError
from ..model import TenantKey
from ..ports import Keys
from .key_format import decode_key, secret_name

__all__ = ["LocalKeyring", "read_keyring", "write_keyring", "position_created"]

_log = logging.getLogger(__name__)
_POSITION_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _versions_ok(versions: object) -> bool:
    return isinstance(versions, list) and all(
        isinstance(v, dict) and isinstance(v.get("version"), str) for v in versions)


def read_keyring(path: Path) -> dict:
    """The keyring document; a missing file is an empty keyring.

    :raises TenantKeyInvalid: the file is not a keyring (the log says why, never what it holds).
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"secrets": {}, "deleted": {}}
    except (OSError, ValueError) as exc:
        _log.error("local keyring unreadable: code=tenant_key_invalid path=%s error=%s",
                   path, type(exc).__name__)
        raise TenantKeyInvalid("The local keyring file is unreadable.") from None
    secrets = document.get("secrets") if isinstance(document, dict) else None
    deleted = document.setdefault("deleted", {}) if isinstance(document, dict) else None
    if not (isinstance(secrets, dict) and isinstance(deleted, dict)
            and all(_versions_ok(versions) for versions in secrets.values())
            and all(isinstance(d, dict) and _versions_ok(d.get("versions")) for d in deleted.values())):
        _log.error("local keyring malformed: code=tenant_key_invalid path=%s", path)
        raise TenantKeyInvalid("The local keyring file is malformed.")
    return document


def write_keyring(path: Path, document: dict) -> None:
    """Replace the file in one step, so a reader sees the old keyring or the new, never half.

    The temporary file is created owner-only (``mkstemp``): it holds keys.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2, sort_keys=True)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def position_created(index: int) -> datetime:
    """The ``created`` of the keyring's ``index``-th version: list order is age order."""
    return _POSITION_EPOCH + timedelta(seconds=index)


_INVALID = "invalid"


class LocalKeyring(Keys):
    """Tenant keys from the local keyring file, for local runs and tests; refused in Azure.

    The file is re-read when it changes (checked at most once a second, and at least once per
    ``ttl``), so an edit — or the ops CLI — takes effect like a Key Vault change.
    """

    def __init__(self, path: Path, *, ttl: float = 300, monotonic: Callable[[], float] = time.monotonic,
                 in_azure: bool = False) -> None:
        if in_azure:
            raise SettingError("TOKENVAULT_LOCAL_KEYRING",
                               "refused when running in Azure; set TOKENVAULT_KEY_VAULT_URL")
        self._path = Path(path)
        self._interval = min(ttl, 1.0)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stamp: tuple | None = ()
        self._tenants: dict[str, list[TenantKey] | str] | None = {}
        self._next_check = -math.inf

    def __repr__(self) -> str:
        return f"LocalKeyring({str(self._path)!r})"

    def latest(self, tenant_id: str) -> TenantKey:
        return self._versions(tenant_id, TenantNotOnboarded)[-1]

    def get(self, tenant_id: str, version: str) -> TenantKey:
        for key in self._versions(tenant_id, TenantRevoked):
            if key.version == version:
                return key
        raise TenantRevoked()

    def _versions(self, tenant_id: str, missing: type[VaultError]) -> list[TenantKey]:
        name = secret_name(tenant_id)
        now = self._monotonic()
        if now >= self._next_check:
            with self._lock:
                if now >= self._next_check:
                    self._reload_if_changed()
                    self._next_check = now + self._interval
        tenants = self._tenants
        if tenants is None:
            raise TenantKeyInvalid("The local keyring file is malformed.")
        keys = tenants.get(name)
        if isinstance(keys, str):  # _INVALID, the one string a tenant's entry can be
            raise TenantKeyInvalid()
        if not keys:
            raise missing()
        return keys

    def _reload_if_changed(self) -> None:
        try:
            info = os.stat(self._path)
            stamp: tuple | None = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            document = read_keyring(self._path)
        except TenantKeyInvalid:
            self._tenants = None
            return
        tenants: dict[str, list[TenantKey] | str] = {}
        for name, versions in document["secrets"].items():
            tenant_id = name.removeprefix("tenant-")
            try:
                tenants[name] = [decode_key(tenant_id, v["version"], v.get("value"), position_created(i))
                                 for i, v in enumerate(versions)]
            except TenantKeyInvalid:
                tenants[name] = _INVALID
        self._tenants = tenants
