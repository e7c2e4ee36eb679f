"""An HTTPS fake of the Key Vault secrets REST API, real enough for the unmodified SecretClient.

It serves what ``azure-keyvault-secrets`` calls: set, get (latest or one version), update,
list secrets and versions (paged through ``nextLink``), soft delete (the name then refuses a
set with 409 until it is recovered or purged), get and list deleted, recover, purge. It runs
Key Vault's challenge: a request without ``Authorization`` gets 401 with a ``WWW-Authenticate``
naming a tenant (``challenge_tenant``, settable) and ``https://vault.azure.net``; any bearer
token is accepted after that, and kept (``bearer_tokens``) for a test to check who it was for.

Tests steer it directly: ``put_secret``/``soft_delete`` seed state without HTTP,
``fail_next`` makes the next requests fail (429 with Retry-After, 500, 403, ...), ``latency``
slows every answer, and ``requests`` counts the requests it served by kind (``get``,
``get_version``, ``set``, ...), so a test can assert how many Key Vault calls a scenario made.
Challenges are counted apart (``challenges``): the SDK's first request to a vault is always
one, and it says nothing about caching.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken

from tests.support.leaks import remember
from tokenvault.dev.tls import HTTPSServer, TestCA

__all__ = ["FakeKeyVault", "StaticTokenCredential", "ManualMonotonic", "FAKE_VAULT_TENANT"]

FAKE_VAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}\Z")
_PAGE = 25
_RETENTION_DAYS = 90


class StaticTokenCredential:
    """A TokenCredential that hands out one fixed fake token and remembers what was asked."""

    def __init__(self, token: str = "fake-key-vault-access-token") -> None:
        remember(token)
        self._token = token
        self.requests: list[tuple[tuple[str, ...], str | None]] = []

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs) -> AccessToken:
        self.requests.append((scopes, tenant_id))
        return AccessToken(self._token, int(time.time()) + 3600)


@dataclass
class _Version:
    version: str
    value: str
    created: int
    enabled: bool = True
    content_type: str | None = None
    tags: dict[str, str] | None = None
    updated: int = 0


@dataclass
class _Deleted:
    versions: list[_Version]
    deleted_date: int


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    code: str


class _Reply(Exception):
    """Raised inside a handler to answer with ``status`` and ``body`` at once."""

    def __init__(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, code: str, message: str, inner: str | None = None) -> _Reply:
    body: dict = {"error": {"code": code, "message": message}}
    if inner:
        body["error"]["innererror"] = {"code": inner}
    return _Reply(status, body)


@dataclass
class _State:
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    live: dict[str, list[_Version]] = field(default_factory=dict)
    deleted: dict[str, _Deleted] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    requests: Counter = field(default_factory=Counter)
    challenges: int = 0
    latency: float = 0.0
    challenge_tenant: str = FAKE_VAULT_TENANT
    bearer_tokens: list = field(default_factory=list)
    last_created: int = 0

    def clock(self) -> int:
        # Strictly increasing even within one second: the order of versions is their meaning.
        self.last_created = max(int(time.time()), self.last_created + 1)
        return self.last_created


class FakeKeyVault:
    """``with FakeKeyVault(ca) as vault: SecretClient(vault.url, credential, ...)``"""

    def __init__(self, ca: TestCA) -> None:
        self._state = _State()
        self._server = HTTPSServer(_Handler, ca, self._state)
        self.url = self._state.url = self._server.url

    def start(self) -> "FakeKeyVault":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "FakeKeyVault":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every secret, fault and count."""
        state = self._state
        with state.lock:
            state.live.clear()
            state.deleted.clear()
            state.faults.clear()
            state.requests.clear()
            state.challenges = 0
            state.latency = 0.0
            state.challenge_tenant = FAKE_VAULT_TENANT
            state.bearer_tokens.clear()

    # -- steering, without HTTP -------------------------------------------------------------
    def put_secret(self, name: str, value: str, *, enabled: bool = True) -> str:
        """Add a version as ``set_secret`` would; returns the version id. Not counted."""
        with self._state.lock:
            if name in self._state.deleted:
                raise ValueError(f"{name} is soft-deleted")
            return _add_version(self._state, name, value, enabled=enabled).version

    def soft_delete(self, name: str) -> None:
        with self._state.lock:
            self._state.deleted[name] = _Deleted(self._state.live.pop(name), self._state.clock())

    def versions(self, name: str) -> list[str]:
        with self._state.lock:
            return [v.version for v in self._state.live.get(name, [])]

    def fail_next(self, status: int, *, times: int = 1, retry_after: int | None = None,
                  code: str | None = None) -> None:
        """Answer the next ``times`` authorized requests with ``status`` (and Retry-After)."""
        default = {403: "Forbidden", 429: "Throttled"}.get(status, "InternalServerError")
        with self._state.lock:
            self._state.faults.extend(_Fault(status, retry_after, code or default)
                                      for _ in range(times))

    @property
    def latency(self) -> float:
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._state.latency = seconds

    @property
    def requests(self) -> Counter:
        """Authorized requests served, by kind (faulted ones included). A copy."""
        with self._state.lock:
            return Counter(self._state.requests)

    @property
    def challenges(self) -> int:
        return self._state.challenges

    @property
    def challenge_tenant(self) -> str:
        """The tenant the challenge names: the SDK asks its credential for a token there."""
        return self._state.challenge_tenant

    @challenge_tenant.setter
    def challenge_tenant(self, tenant_id: str) -> None:
        self._state.challenge_tenant = tenant_id

    @property
    def bearer_tokens(self) -> list[str]:
        """The bearer tokens of the authorized requests served, in order. Secrets: compare
        or decode them, never print them."""
        with self._state.lock:
            return list(self._state.bearer_tokens)


def _add_version(state: _State, name: str, value: str, *, enabled: bool = True,
                 content_type: str | None = None, tags: dict | None = None) -> _Version:
    # Whatever a vault holds is a secret the code under test must never show.
    remember(value)
    try:
        remember(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        pass
    created = state.clock()
    version = _Version(uuid.uuid4().hex, value, created, enabled, content_type, tags, created)
    state.live.setdefault(name, []).append(version)
    return version


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    # Headers and body go out in separate writes; with Nagle on, each answer waits ~40 ms for
    # the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "FakeKeyVault/1.0"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's signature
        pass

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_PATCH = do_DELETE = do_POST = do_GET

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        state: _State = self.server.state  # type: ignore[attr-defined]
        try:
            self._answer(state, raw)
        except _Reply as reply:
            self._send(reply.status, reply.body, reply.headers)

    def _answer(self, state: _State, raw: bytes) -> None:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            with state.lock:
                state.challenges += 1
            raise _Reply(401, {"error": {"code": "Unauthorized",
                                         "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                         {"WWW-Authenticate": f'Bearer authorization="https://login.microsoftonline.com/'
                                              f'{state.challenge_tenant}", resource="https://vault.azure.net"'})
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        kind, handler, args = _route(self.command, parts.path)
        with state.lock:
            state.bearer_tokens.append(self.headers["Authorization"][len("Bearer "):])
            state.requests[kind] += 1
            fault = state.faults.pop(0) if state.faults else None
        if state.latency:
            time.sleep(state.latency)
        if fault:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            raise _Reply(fault.status, {"error": {"code": fault.code,
                                                  "message": f"Fault injected: {fault.status}."}}, headers)
        if "api-version" not in query:
            raise _error(400, "BadParameter", "The request is missing api-version.")
        body = json.loads(raw) if raw else {}
        with state.lock:
            status, payload = handler(state, query, body, *args)
        self._send(status, payload, {})

    def _send(self, status: int, body: dict | None, headers: dict) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _route(method: str, path: str):
    segments = [s for s in path.split("/") if s]
    shape = (method, len(segments), segments[0] if segments else "")
    name = segments[1] if len(segments) > 1 else ""
    last = segments[2] if len(segments) > 2 else ""
    if shape == ("PUT", 2, "secrets"):
        return "set", _set, (name,)
    if shape == ("GET", 1, "secrets"):
        return "list", _list, ()
    if shape == ("GET", 3, "secrets") and last == "versions":
        return "list_versions", _list_versions, (name,)
    if shape == ("GET", 2, "secrets"):
        return "get", _get, (name, "")
    if shape == ("GET", 3, "secrets"):
        return "get_version", _get, (name, last)
    if method == "PATCH" and shape[1:] in ((2, "secrets"), (3, "secrets")):
        return "update", _update, (name, last)
    if shape == ("DELETE", 2, "secrets"):
        return "delete", _delete, (name,)
    if shape == ("GET", 1, "deletedsecrets"):
        return "list_deleted", _list_deleted, ()
    if shape == ("GET", 2, "deletedsecrets"):
        return "get_deleted", _get_deleted, (name,)
    if shape == ("DELETE", 2, "deletedsecrets"):
        return "purge", _purge, (name,)
    if shape == ("POST", 3, "deletedsecrets") and last == "recover":
        return "recover", _recover, (name,)
    raise _error(404, "NotFound", f"No route for {method} {path}.")


# -- the operations; each runs under the state lock and returns (status, body) ----------------

def _attributes(version: _Version) -> dict:
    return {"enabled": version.enabled, "created": version.created, "updated": version.updated,
            "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": _RETENTION_DAYS}


def _item(state: _State, name: str, version: _Version, *, with_version: bool) -> dict:
    item = {"id": f"{state.url}/secrets/{name}" + (f"/{version.version}" if with_version else ""),
            "attributes": _attributes(version)}
    if version.content_type:
        item["contentType"] = version.content_type
    if version.tags:
        item["tags"] = version.tags
    return item


def _bundle(state: _State, name: str, version: _Version) -> dict:
    return {**_item(state, name, version, with_version=True), "value": version.value}


def _deleted_fields(state: _State, name: str, deleted: _Deleted) -> dict:
    return {"recoveryId": f"{state.url}/deletedsecrets/{name}", "deletedDate": deleted.deleted_date,
            "scheduledPurgeDate": deleted.deleted_date + _RETENTION_DAYS * 86400}


def _not_found(name: str) -> _Reply:
    return _error(404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault.")


def _live(state: _State, name: str) -> list[_Version]:
    versions = state.live.get(name)
    if not versions:
        raise _not_found(name)
    return versions


def _page(state: _State, path: str, items: list[dict], query: dict) -> dict:
    size = min(int(query.get("maxresults") or _PAGE), _PAGE)
    start = int(query.get("$skiptoken") or 0)
    page: dict = {"value": items[start:start + size], "nextLink": None}
    if start + size < len(items):
        page["nextLink"] = (f"{state.url}{path}?api-version={query['api-version']}"
                            f"&$skiptoken={start + size}&maxresults={size}")
    return page


def _set(state, query, body, name):
    if not _NAME.match(name):
        raise _error(400, "BadParameter", "The secret name is invalid.")
    if name in state.deleted:
        raise _error(409, "Conflict", f"Secret {name} is currently in a deleted but recoverable state, "
                                      "and its name cannot be reused; in this state, the secret can only "
                                      "be recovered or purged.")
    if not isinstance(body.get("value"), str):
        raise _error(400, "BadParameter", "The secret value is required.")
    attributes = body.get("attributes") or {}
    version = _add_version(state, name, body["value"], enabled=attributes.get("enabled", True),
                           content_type=body.get("contentType"), tags=body.get("tags"))
    return 200, _bundle(state, name, version)


def _find(state: _State, name: str, version_id: str) -> _Version:
    versions = _live(state, name)
    if not version_id:
        return versions[-1]
    for version in versions:
        if version.version == version_id.lower():
            return version
    raise _not_found(f"{name}/{version_id}")


def _get(state, query, body, name, version_id):
    version = _find(state, name, version_id)
    if not version.enabled:
        raise _error(403, "Forbidden", "Operation get is not allowed on a disabled secret.",
                     inner="SecretDisabled")
    return 200, _bundle(state, name, version)


def _update(state, query, body, name, version_id):
    version = _find(state, name, version_id)
    attributes = body.get("attributes") or {}
    if "enabled" in attributes:
        version.enabled = bool(attributes["enabled"])
    if "contentType" in body:
        version.content_type = body["contentType"]
    if "tags" in body:
        version.tags = body["tags"]
    version.updated = state.clock()
    return 200, _item(state, name, version, with_version=True)


def _list(state, query, body):
    items = [_item(state, name, versions[-1], with_version=False)
             for name, versions in sorted(state.live.items())]
    return 200, _page(state, "/secrets", items, query)


def _list_versions(state, query, body, name):
    items = [_item(state, name, v, with_version=True) for v in state.live.get(name, [])]
    return 200, _page(state, f"/secrets/{name}/versions", items, query)


def _delete(state, query, body, name):
    versions = _live(state, name)
    deleted = state.deleted[name] = _Deleted(state.live.pop(name), state.clock())
    return 200, {**_bundle(state, name, versions[-1]), **_deleted_fields(state, name, deleted)}


def _deleted(state: _State, name: str) -> _Deleted:
    if name not in state.deleted:
        raise _error(404, "SecretNotFound", f"Deleted Secret not found: {name}")
    return state.deleted[name]


def _get_deleted(state, query, body, name):
    deleted = _deleted(state, name)
    latest = deleted.versions[-1]
    return 200, {**_item(state, name, latest, with_version=True), **_deleted_fields(state, name, deleted)}


def _list_deleted(state, query, body):
    items = [{**_item(state, name, d.versions[-1], with_version=False), **_deleted_fields(state, name, d)}
             for name, d in sorted(state.deleted.items())]
    return 200, _page(state, "/deletedsecrets", items, query)


def _purge(state, query, body, name):
    _deleted(state, name)
    del state.deleted[name]
    return 204, None


def _recover(state, query, body, name):
    deleted = _deleted(state, name)
    state.live[name] = deleted.versions
    del state.deleted[name]
    return 200, _bundle(state, name, deleted.versions[-1])


class ManualMonotonic:
    """A monotonic clock that moves only when told: caches' TTLs are tested without sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
