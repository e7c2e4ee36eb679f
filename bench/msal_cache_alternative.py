"""The usual alternative: Microsoft's token-cache serialization guidance, as a team writes it.

"For web apps or web APIs ... there should be one token cache per user (per account), so
ensure that you serialize the token cache per account" (MSAL Python, custom token cache
serialization). The samples (Azure-Samples/ms-identity-python-webapp and its derivatives)
load the user's ``SerializableTokenCache``, build a ``ConfidentialClientApplication`` per
request with ``token_cache=`` that cache, call msal, and save the cache back when
``cache.has_state_changed``. Here, as a careful team would:

- the cache lives in a Table row per user (``PartitionKey`` tenant, ``RowKey`` user), in one
  binary column ``Cache``: the serialized cache encrypted with AES-256-GCM (random nonce,
  the row's identity as associated data) under an app key held in memory;
- the app objects share one ``requests`` session (``http_client``) and one msal
  ``http_cache``, so the tenant's OpenID discovery is fetched once per process, not per
  request — "discovery cached", the cheapest faithful setup;
- the cache is filled by a real OBO through msal (``acquire_token_on_behalf_of``), so it
  holds what it really would: access token, refresh token, ID token, account, app metadata;
- redeem is ``acquire_token_silent(scopes, account, force_refresh=True)`` (a real refresh,
  like the vault's cache-off rows); the write-back is conditional on the ETag, like ours.
  ``redeem(..., force_refresh=False)`` is the alternative's own hot path: an access token
  served from the stored cache.
"""

from __future__ import annotations

import os

import msal
import requests
from azure.core import MatchConditions
from azure.data.tables import TableClient, UpdateMode
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["MsalCacheAlternative"]


class MsalCacheAlternative:
    def __init__(self, table: TableClient, session: requests.Session, *, authority_host: str,
                 client_id: str, client_secret: str, key: bytes) -> None:
        self._table, self._session = table, session
        self._host, self._client_id, self._secret = authority_host, client_id, client_secret
        self._aead = AESGCM(key)
        self._http_cache: dict = {}

    # --- the per-user cache in its row ------------------------------------------------------

    def _app(self, tenant_id: str, cache: msal.SerializableTokenCache):
        return msal.ConfidentialClientApplication(
            self._client_id, client_credential=self._secret,
            authority=f"{self._host}/{tenant_id}", token_cache=cache,
            http_client=self._session, http_cache=self._http_cache, instance_discovery=False)

    def _encrypt(self, tenant_id: str, user_id: str, cache: msal.SerializableTokenCache) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, cache.serialize().encode(),
                                          f"{tenant_id}/{user_id}".encode())

    def _decrypt(self, tenant_id: str, user_id: str, blob: bytes) -> msal.SerializableTokenCache:
        cache = msal.SerializableTokenCache()
        cache.deserialize(self._aead.decrypt(blob[:12], blob[12:],
                                             f"{tenant_id}/{user_id}".encode()).decode())
        return cache

    # --- the two flows ----------------------------------------------------------------------

    def store(self, tenant_id: str, user_id: str, assertion: str, scopes) -> None:
        """OBO with the user's token; the whole resulting cache is kept."""
        cache = msal.SerializableTokenCache()
        result = self._app(tenant_id, cache).acquire_token_on_behalf_of(assertion, list(scopes))
        if "access_token" not in result:
            raise RuntimeError(f"OBO failed: {result.get('error')}")
        self._table.upsert_entity({"PartitionKey": tenant_id, "RowKey": user_id,
                                   "Cache": self._encrypt(tenant_id, user_id, cache)},
                                  mode=UpdateMode.REPLACE)

    def redeem(self, tenant_id: str, user_id: str, scopes, *, force_refresh: bool = True) -> str:
        """Load the user's cache, acquire silently, save the cache if msal changed it."""
        entity = self._table.get_entity(tenant_id, user_id)
        cache = self._decrypt(tenant_id, user_id, entity["Cache"])
        app = self._app(tenant_id, cache)
        accounts = app.get_accounts()
        result = app.acquire_token_silent(list(scopes), account=accounts[0],
                                          force_refresh=force_refresh)
        if not result or "access_token" not in result:
            raise RuntimeError(f"silent acquisition failed: {(result or {}).get('error')}")
        if cache.has_state_changed:
            entity["Cache"] = self._encrypt(tenant_id, user_id, cache)
            self._table.update_entity(entity, mode=UpdateMode.REPLACE,
                                      etag=entity.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
        return result["access_token"]

    # --- looking inside ---------------------------------------------------------------------

    def contents(self, tenant_id: str, user_id: str) -> dict:
        """What the stored row holds, by msal credential type: {type: (count, bytes)}.
        Sizes only; no token leaves this method."""
        import json

        entity = self._table.get_entity(tenant_id, user_id)
        blob = entity["Cache"]
        state = json.loads(self._aead.decrypt(blob[:12], blob[12:],
                                              f"{tenant_id}/{user_id}".encode()))
        return {kind: {"entries": len(entries),
                       "secret_bytes": sum(len(e.get("secret", "")) for e in entries.values()),
                       "json_bytes": len(json.dumps(entries))}
                for kind, entries in state.items()}
