"""The AEAD envelope a refresh token is stored in.

Layout (a contract: an independent implementation holding the key must decrypt it). Written
today, version 2, with a key of its own for every ciphertext::

    0x02 ‖ salt (16 bytes, random) ‖ nonce (12 bytes, random) ‖ AES-256-GCM ciphertext ‖ tag (16 bytes)
    record key = HKDF-SHA256(input key = the tenant key, salt, info = "tokenvault.v2 record key", 32 bytes)

still read, version 1, the tenant key itself::

    0x01 ‖ nonce (12 bytes, random) ‖ AES-256-GCM ciphertext of the UTF-8 token ‖ tag (16 bytes)

with associated data, UTF-8, ids lower-case, ``\\n`` between fields (``v2`` or ``v1`` as the
envelope's version)::

    tokenvault.v2\\n<tenant_id>\\n<user_id>\\n<client_id>\\n<key_version>

Why version 2: with random 96-bit nonces one AES-GCM key may seal at most 2^32 messages (NIST
SP 800-38D, 8.3). Every store, every redeem that rotates the refresh token and every sweep step
seals again under the tenant key version of the day; for a tenant of a million users who
redeem through many instances, a month's version can come within a few times of that bound
(docs/capacity.md, "AES-GCM"). A fresh 128-bit salt per seal gives each ciphertext a key of its
own, so the tenant key is never the GCM key and the bound no longer depends on traffic.

Binding the record's identity as associated data means a ciphertext copied to another row,
tenant, client or key version does not decrypt. Every failure to open an envelope raises one
``CiphertextInvalid`` with a fixed message, so neither a log nor a caller learns which check
failed, and no crypto exception text or ciphertext byte is echoed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import CiphertextInvalid, TenantKeyInvalid
from .sensitive import Sensitive

__all__ = ["Binding", "seal", "unseal", "FORMAT", "FORMAT_V1", "SALT_SIZE", "NONCE_SIZE",
           "TAG_SIZE"]

FORMAT = 0x02  # what seal writes
FORMAT_V1 = 0x01  # still opened: records sealed before version 2, until the sweep reseals them
SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32
_HKDF_INFO = b"tokenvault.v2 record key"
_MIN_SIZE = {FORMAT_V1: 1 + NONCE_SIZE + TAG_SIZE, FORMAT: 1 + SALT_SIZE + NONCE_SIZE + TAG_SIZE}


@dataclass(frozen=True)
class Binding:
    """The identity a ciphertext belongs to; it is authenticated, not encrypted."""

    tenant_id: str
    user_id: str
    client_id: str
    key_version: str

    def associated_data(self, version: int = FORMAT) -> bytes:
        fields = (f"tokenvault.v{version}", self.tenant_id.lower(), self.user_id.lower(),
                  self.client_id.lower(), self.key_version.lower())
        return "\n".join(fields).encode("utf-8")


def seal(key: Sensitive[bytes], token: Sensitive[str], binding: Binding) -> bytes:
    """Encrypt ``token`` for ``binding`` under a key derived from ``key`` with a fresh random
    salt, with a fresh random nonce (version 2)."""
    return _seal_v2(key, token, binding, os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE))


def _seal_v2(key: Sensitive[bytes], token: Sensitive[str], binding: Binding, salt: bytes,
             nonce: bytes) -> bytes:
    """``seal`` with a given salt and nonce, so a known-answer test reproduces a blob exactly.
    Private: no caller of ours chooses either."""
    if len(salt) != SALT_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError("salt must be 16 bytes and nonce 12 bytes")
    body = AESGCM(_record_key(key, salt)).encrypt(
        nonce, token.reveal().encode("utf-8"), binding.associated_data(FORMAT))
    return bytes([FORMAT]) + salt + nonce + body


def _seal_v1(key: Sensitive[bytes], token: Sensitive[str], binding: Binding,
             nonce: bytes) -> bytes:
    """A version-1 envelope, as written before version 2: for tests of the readers only."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("nonce must be 12 bytes")
    body = _aead(key).encrypt(nonce, token.reveal().encode("utf-8"),
                              binding.associated_data(FORMAT_V1))
    return bytes([FORMAT_V1]) + nonce + body


def unseal(key: Sensitive[bytes], blob: bytes, binding: Binding) -> Sensitive[str]:
    """Decrypt an envelope (version 2 or 1) sealed for ``binding``.

    :raises CiphertextInvalid: for every failure: empty, truncated, unknown format, tampered,
        or sealed for another binding or key.
    """
    if not isinstance(blob, (bytes, bytearray)) or not blob or blob[0] not in _MIN_SIZE \
            or len(blob) < _MIN_SIZE[blob[0]]:
        raise CiphertextInvalid()
    version, blob = blob[0], bytes(blob)
    if version == FORMAT:
        header = 1 + SALT_SIZE + NONCE_SIZE
        salt, nonce, body = blob[1:1 + SALT_SIZE], blob[1 + SALT_SIZE:header], blob[header:]
        aead = AESGCM(_record_key(key, salt))
    else:
        nonce, body = blob[1:1 + NONCE_SIZE], blob[1 + NONCE_SIZE:]
        aead = _aead(key)
    try:
        plaintext = aead.decrypt(nonce, body, binding.associated_data(version))
        return Sensitive(plaintext.decode("utf-8"))
    except (InvalidTag, UnicodeDecodeError):
        pass
    # Raised outside the except block so the crypto exception is not chained into tracebacks.
    raise CiphertextInvalid()


def _record_key(key: Sensitive[bytes], salt: bytes) -> bytes:
    material = key.reveal()
    if len(material) != KEY_SIZE:
        raise TenantKeyInvalid()  # as in _aead: the input key of every version is 32 bytes
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt,
                info=_HKDF_INFO).derive(material)


def _aead(key: Sensitive[bytes]) -> AESGCM:
    material = key.reveal()
    if len(material) != KEY_SIZE:
        # A key of another size would silently select AES-128/192.
        raise TenantKeyInvalid()
    return AESGCM(material)
