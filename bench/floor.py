"""The floor: what any vault of encrypted refresh tokens must do per redeem, and nothing more.

With the raw SDK calls, in a plain loop:

1. one Table point read (``TableClient.get_entity``);
2. AES-256-GCM decrypt of the stored refresh token under the record's own key (HKDF-SHA256 of
   the tenant key, already in memory as a warm cache holds it, and the record's salt; the
   associated data is the record's identity: docs/design.md "Ciphertext", version 2);
3. the IdP refresh call: a plain ``requests`` POST of ``grant_type=refresh_token`` to the
   tenant's token endpoint — the rawest client there is. The form asks for the same scopes
   msal sends (``<scopes> offline_access openid profile``, ``client_info=1``), so the
   identity provider does the same work for every variant and only the client side differs;
4. AES-256-GCM encrypt of the rotated refresh token under a fresh salt's key and nonce;
5. one conditional Table write (``update_entity`` REPLACE with the ETag, ``IfNotModified``).

No error handling, no validation, no logging, no object model: a floor, not a product. The
rows use the record layout of docs/design.md so the payloads match the vault's byte for byte in
size.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import requests
from azure.core import MatchConditions
from azure.data.tables import TableClient, UpdateMode
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["Floor"]

_EXTRA_SCOPES = "offline_access openid profile"


def _aad(tenant_id: str, user_id: str, client_id: str, key_version: str) -> bytes:
    return f"tokenvault.v2\n{tenant_id}\n{user_id}\n{client_id}\n{key_version}".encode()


def _record_aead(material: bytes, salt: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                       info=b"tokenvault.v2 record key").derive(material))


def _sealed(material: bytes, token: str, aad: bytes) -> bytes:
    salt, nonce = os.urandom(16), os.urandom(12)
    return b"\x02" + salt + nonce + _record_aead(material, salt).encrypt(nonce, token.encode(), aad)


class Floor:
    def __init__(self, table: TableClient, session: requests.Session, *, authority_host: str,
                 client_id: str, client_secret: str, scopes: tuple[str, ...]) -> None:
        self._table, self._session = table, session
        self._host, self._client_id, self._secret = authority_host, client_id, client_secret
        self._scope = " ".join(scopes) + " " + _EXTRA_SCOPES
        self._keys: dict[str, tuple[str, bytes]] = {}

    def use_key(self, tenant_id: str, version: str, material: bytes) -> None:
        self._keys[tenant_id] = (version, material)

    def seal(self, tenant_id: str, user_id: str, token: str) -> tuple[str, bytes]:
        version, material = self._keys[tenant_id]
        return version, _sealed(material, token, _aad(tenant_id, user_id, self._client_id, version))

    def redeem(self, tenant_id: str, user_id: str) -> str:
        """One redeem; returns the access token."""
        entity = self._table.get_entity(tenant_id, user_id)
        version, material = self._keys[tenant_id]
        blob = entity["Ciphertext"]
        aad = _aad(tenant_id, user_id, self._client_id, entity["KeyVersion"])
        refresh_token = _record_aead(material, blob[1:17]).decrypt(blob[17:29], blob[29:], aad).decode()
        answer = self._session.post(
            f"{self._host}/{tenant_id}/oauth2/v2.0/token",
            data={"client_id": self._client_id, "client_secret": self._secret,
                  "grant_type": "refresh_token", "refresh_token": refresh_token,
                  "scope": self._scope, "client_info": "1"},
            timeout=10).json()
        entity["Ciphertext"] = _sealed(material, answer["refresh_token"],
                                       _aad(tenant_id, user_id, self._client_id, version))
        entity["KeyVersion"] = version
        entity["RefreshedAt"] = datetime.now(timezone.utc)
        self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"],
                                  match_condition=MatchConditions.IfNotModified)
        return answer["access_token"]
