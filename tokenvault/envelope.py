"""The AEAD envelope a refresh token is stored in.

Layout (a contract: an independent implementation holding the key must decrypt it)::

    0x01 ‖ nonce (12 bytes, random) ‖ AES-256-GCM ciphertext of the UTF-8 token ‖ tag (16 bytes)

with associated data, UTF-8, ids lower-case, ``\\n`` between fields::

    tokenvault.v1\\n<tenant_id>\\n<user_id>\\n<client_id>\\n<key_version>

Binding the record's identity as associated data means a ciphertext copied to another row,
tenant, client or key version does not decrypt. Every failure to open an envelope raises one
``CiphertextInvalid`` with a fixed message, so neither a log nor a caller learns which check
failed, and no crypto exception text or ciphertext byte is echoed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import CiphertextInvalid, TenantKeyInvalid
from .sensitive import Sensitive

__all__ = ["Binding", "seal", "unseal", "FORMAT", "NONCE_SIZE", "TAG_SIZE"]

FORMAT = 0x01
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32
_AAD_LABEL = "tokenvault.v1"
_MIN_SIZE = 1 + NONCE_SIZE + TAG_SIZE


@dataclass(frozen=True)
class Binding:
    """The identity a ciphertext belongs to; it is authenticated, not encrypted."""

    tenant_id: str
    user_id: str
    client_id: str
    key_version: str

    def associated_data(self) -> bytes:
        fields = (_AAD_LABEL, self.tenant_id.lower(), self.user_id.lower(),
                  self.client_id.lower(), self.key_version.lower())
        return "\n".join(fields).encode("utf-8")


def seal(key: Sensitive[bytes], token: Sensitive[str], binding: Binding) -> bytes:
    """Encrypt ``token`` for ``binding`` under ``key``, with a fresh random nonce."""
    return _seal_with_nonce(key, token, binding, os.urandom(NONCE_SIZE))


def _seal_with_nonce(key: Sensitive[bytes], token: Sensitive[str], binding: Binding,
                     nonce: bytes) -> bytes:
    """``seal`` with a given nonce, so a known-answer test reproduces a blob exactly. Private:
    a nonce used twice under one key breaks GCM, so no caller of ours chooses one."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("nonce must be 12 bytes")
    body = _aead(key).encrypt(nonce, token.reveal().encode("utf-8"), binding.associated_data())
    return bytes([FORMAT]) + nonce + body


def unseal(key: Sensitive[bytes], blob: bytes, binding: Binding) -> Sensitive[str]:
    """Decrypt an envelope sealed for ``binding``.

    :raises CiphertextInvalid: for every failure: empty, truncated, unknown format, tampered,
        or sealed for another binding or key.
    """
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < _MIN_SIZE or blob[0] != FORMAT:
        raise CiphertextInvalid()
    nonce, body = bytes(blob[1:1 + NONCE_SIZE]), bytes(blob[1 + NONCE_SIZE:])
    try:
        plaintext = _aead(key).decrypt(nonce, body, binding.associated_data())
        return Sensitive(plaintext.decode("utf-8"))
    except (InvalidTag, UnicodeDecodeError):
        pass
    # Raised outside the except block so the crypto exception is not chained into tracebacks.
    raise CiphertextInvalid()


def _aead(key: Sensitive[bytes]) -> AESGCM:
    material = key.reveal()
    if len(material) != KEY_SIZE:
        # A key of another size would silently select AES-128/192.
        raise TenantKeyInvalid()
    return AESGCM(material)
