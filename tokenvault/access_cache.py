"""An in-process cache of access tokens. Never persisted, never past a safety margin before
the token's expiry, bounded in size.

The vault consults it only after it has re-read the record and checked the tenant's key, so a
cached token is never handed out for a record that is gone or a tenant that is revoked.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime

from .model import TokenGrant

__all__ = ["AccessTokenCache"]


class AccessTokenCache:
    def __init__(self, *, margin_seconds: int = 300, max_entries: int = 10_000) -> None:
        # The margin covers clock skew and the caller's own use of the token: one handed out
        # must stay valid long enough to be used.
        self._margin = margin_seconds
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, TokenGrant] = OrderedDict()

    @staticmethod
    def key(tenant_id: str, user_id: str, client_id: str, scopes: Iterable[str]) -> tuple:
        return (tenant_id, user_id, client_id, frozenset(s.lower() for s in scopes))

    def get(self, key: tuple, now: datetime) -> TokenGrant | None:
        with self._lock:
            grant = self._entries.get(key)
            if grant is None:
                return None
            if grant.expires_on - self._margin <= now.timestamp():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return grant

    def put(self, key: tuple, grant: TokenGrant, now: datetime) -> None:
        if grant.expires_on - self._margin <= now.timestamp():
            return  # too short-lived to be worth keeping
        with self._lock:
            self._entries[key] = grant
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget_user(self, tenant_id: str, user_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == tenant_id and k[1] == user_id]:
                del self._entries[key]

    def forget_tenant(self, tenant_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == tenant_id]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
