"""TokenVault served over real HTTP in the test process: ``function_app`` behind the dev host's
HTTP server, with the ``stack`` fixture's composed app (Azurite, the Key Vault fake, the Entra
fake) installed behind it — so a client test reaches the real handlers through a socket, and
the test still steers every part (faults, clocks, key cache).

Two things the dev host does not do are added here, as the Functions host does them in Azure:
the data routes require the function key (``x-functions-key``; without it, 401 and an empty
body), and every request is counted, with when it came, so a test can say how often the
client reached the vault and how long it waited in between.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import azure.functions as func

import function_app
from tests.support.leaks import remember
from tokenvault.dev import devhost
from tokenvault.dev.devhost import DevHost

__all__ = ["ServedVault", "Served"]


@dataclass(frozen=True)
class Served:
    method: str
    path: str
    at: float  # time.monotonic() when the request arrived
    status: int


class _CountingHost(DevHost):
    def __init__(self, function_key: str) -> None:
        super().__init__(function_app.app)
        self.function_key = function_key
        self.served: list[Served] = []
        self.user_agents: Counter[str] = Counter()
        self._lock = threading.Lock()

    def http(self, method: str, target: str, headers: dict, body: bytes) -> func.HttpResponse:
        arrived = time.monotonic()
        path = urlsplit(target).path
        given = {k.lower(): v for k, v in headers.items()}.get("x-functions-key", "")
        if path.startswith("/api/tokens") and not hmac.compare_digest(
                given.encode(), self.function_key.encode()):
            response = func.HttpResponse(status_code=401)
        else:
            response = super().http(method, target, headers, body)
        with self._lock:
            self.served.append(Served(method, path, arrived, response.status_code))
            self.user_agents[{k.lower(): v for k, v in headers.items()}.get("user-agent", "")] += 1
        return response


class ServedVault:
    """``with ServedVault() as vault: TokenVaultClient(vault.url, function_key=vault.function_key)``"""

    def __init__(self) -> None:
        self.function_key = "fk-" + secrets.token_urlsafe(24)
        remember(self.function_key)
        self._host = _CountingHost(self.function_key)
        self._server = devhost._serve(self._host, 0)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="served-vault",
                                        daemon=True)

    def start(self) -> "ServedVault":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "ServedVault":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def served(self) -> list[Served]:
        with self._host._lock:
            return list(self._host.served)

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.served if (s.method, s.path) == (method, path))

    @property
    def user_agents(self) -> Counter[str]:
        with self._host._lock:
            return Counter(self._host.user_agents)
