"""The API's four calls without I/O: requests to send, answers to read. Shared by the sync and
the async client, so the two cannot differ in what they send or how they read it."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any, Dict, Iterable, List, Optional, Union
from urllib.parse import quote

from azure.core.credentials import AccessToken
from azure.core.rest import HttpRequest

from ._errors import error_from_response
from ._models import StoredRecord, access_token_from, record_from
from ._policies import USER_TOKEN

__all__ = ["store_request", "redeem_request", "record_request", "read_record",
           "read_access_token", "read_no_content", "call_options", "normalize_endpoint"]

Scopes = Union[str, Iterable[str]]
_JSON = {"Accept": "application/json"}


def normalize_endpoint(endpoint: str) -> str:
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise ValueError("endpoint must be the function app's base URL, e.g. "
                         "https://tokenvault.azurewebsites.net")
    return endpoint.rstrip("/")


def _scope_list(scopes: Scopes) -> List[str]:
    # A lone string is one scope, not a sequence of one-letter scopes.
    return [scopes] if isinstance(scopes, str) else [str(s) for s in scopes]


def store_request(endpoint: str, scopes: Scopes) -> HttpRequest:
    return HttpRequest("POST", f"{endpoint}/api/tokens", headers=_JSON,
                       json={"scopes": _scope_list(scopes)})


def redeem_request(endpoint: str, scopes: Scopes, tenant_id: Optional[str],
                   user_id: Optional[str]) -> HttpRequest:
    body: Dict[str, Any] = {"scopes": _scope_list(scopes)}
    if tenant_id is not None:
        body["tenant_id"] = tenant_id
    if user_id is not None:
        body["user_id"] = user_id
    return HttpRequest("POST", f"{endpoint}/api/tokens/redeem", headers=_JSON, json=body)


def record_request(endpoint: str, method: str, tenant_id: str, user_id: str) -> HttpRequest:
    # Quoted whole: an id is one path segment whatever it holds (the vault refuses non-GUIDs).
    path = f"/api/tokens/{quote(str(tenant_id), safe='')}/{quote(str(user_id), safe='')}"
    return HttpRequest(method, endpoint + path, headers=_JSON)


def call_options(user_token: Optional[str], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The pipeline keywords of one call: the user's token (for the authentication policy)
    and the caller's own per-call options (``retry_total``, ``headers``, ...)."""
    if user_token is not None:
        if not isinstance(user_token, str) or not user_token:
            raise ValueError("user_token must be the user's access token as received")
        kwargs[USER_TOKEN] = user_token
    return kwargs


def _check(response: Any, expected: int) -> None:
    if response.status_code != expected:
        raise error_from_response(response, retry_after=retry_after(response))


def read_record(response: Any, expected: int = 200) -> StoredRecord:
    _check(response, expected)
    return record_from(response.json())


def read_access_token(response: Any, now: Optional[float] = None) -> AccessToken:
    _check(response, 200)
    return access_token_from(response.json(), time.time() if now is None else now)


def read_no_content(response: Any) -> None:
    _check(response, 204)


def retry_after(response: Any) -> Optional[int]:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int(moment.timestamp() - time.time()))
