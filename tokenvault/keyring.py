"""The local keyring file (DESIGN.md "Local keyring"): reading, and replacing it atomically.

``{"secrets": {"tenant-<tid>": [{"version": "<32 hex>", "value": "<base64 of 32 bytes>"}, ...]},
"deleted": {"tenant-<tid>": {"deleted_on": "<ISO 8601>", "versions": [...]}}}`` — versions
oldest first. ``deleted`` mirrors Key Vault's soft delete: the ops commands move a revoked
tenant's versions there, so it can be recovered or purged; readers ignore it.
``keys.LocalKeyring`` reads the file, ``key_admin.LocalKeyringAdmin`` writes it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .errors import TenantKeyInvalid

__all__ = ["read_keyring", "write_keyring", "position_created"]

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
