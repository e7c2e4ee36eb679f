"""How a tenant's key is kept, wherever it is kept (Key Vault or the local keyring).

The secret is named ``tenant-<tenant_id>``; its value is base64 of 32 random bytes, and each
version of the secret is a version of the key (docs/design.md "Keys").
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from datetime import datetime

from ..errors import TenantKeyInvalid
from ..model import TenantKey, is_valid_id, valid_id
from ..sensitive import Sensitive

__all__ = ["secret_name", "tenant_of", "decode_key", "new_key_value", "KEY_BYTES"]

_log = logging.getLogger(__name__)

KEY_BYTES = 32
_PREFIX = "tenant-"


def secret_name(tenant_id: str) -> str:
    return _PREFIX + valid_id(tenant_id, "tenant_id")


def tenant_of(name: str) -> str | None:
    """The tenant id of a secret name, or None for a secret that is not a tenant key."""
    tenant = name[len(_PREFIX):] if name.startswith(_PREFIX) else ""
    return tenant if is_valid_id(tenant) else None


def decode_key(tenant_id: str, version: str, value: object, created: datetime | None) -> TenantKey:
    """The key from a secret's value; anything but base64 of 32 bytes is ``TenantKeyInvalid``."""
    try:
        material = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        material = b""
    if len(material) != KEY_BYTES:
        # The value itself is never logged: a near-miss of a key is still most of a key.
        _log.error("tenant key invalid: code=tenant_key_invalid tenant=%s version=%s "
                   "(not base64 of 32 bytes)", tenant_id, version)
        raise TenantKeyInvalid()
    return TenantKey(tenant_id, version, Sensitive(material), created)


def new_key_value() -> str:
    """A fresh key, as the secret's value."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")
