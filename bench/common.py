"""What the benchmarks share: the local real parts, the app composed on them, and statistics.

``Services`` starts Azurite (node) and, in a child process of its own, the HTTPS fakes of
Entra ID and Key Vault from ``tests/support`` — the fakes' CPU (they sign a JWT or two per
token answer) then stays out of the measured process, as Entra's stays out of a real one.
The child answers a few commands over a pipe: mint a user token, issue a refresh token, set
the token endpoint's added latency, read the request counters.

``compose_app`` builds the app exactly as ``tests/support/stack_fixtures.py`` does — through
``bootstrap.compose`` with the real adapters — without pytest. Nothing of ours is replaced.

Timing helpers give medians and p99 in milliseconds; ratios are computed by the callers from
figures measured side by side in one run.
"""

from __future__ import annotations

import dataclasses
import datetime
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from tokenvault.dev.azurite import Azurite  # noqa: E402

__all__ = ["ROOT", "RESULTS", "CLIENT_ID", "CLIENT_SECRET", "SCOPES", "Services", "new_id",
           "http_session", "environ", "compose_app", "cache_free_vault", "key_admin",
           "bulk_clone", "entity_size", "plain_entity", "summary", "rss_kib", "machine",
           "Spawned", "DevHostProcess", "utc_now", "scan", "paired"]

RESULTS = ROOT / "bench" / "results"
#: The app registration TokenVault runs as in the benchmarks (a fake one).
CLIENT_ID = "3b9f0c1e-5d7a-4e2b-9c8d-0a1b2c3d4e5f"
CLIENT_SECRET = "bench-client-secret-0123456789abcdef"
SCOPES = ("https://graph.microsoft.com/User.Read",)
_SPAWN = multiprocessing.get_context("spawn")


def new_id() -> str:
    return str(uuid.uuid4())


# --- the fakes, in a child process ----------------------------------------------------------

def _receive(conn, process, timeout: float = 120):
    """The child's answer, or an error naming the child if it died or hung."""
    deadline = time.monotonic() + timeout
    while not conn.poll(0.2):
        if not process.is_alive():
            raise RuntimeError(f"{process.name} exited with {process.exitcode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not answer in {timeout:.0f} s")
    return conn.recv()


def _serve_fakes(conn, folder: str) -> None:
    """The child process: the Entra and Key Vault fakes, steered over ``conn``."""
    from tests.support.keyvault import FakeKeyVault
    from tokenvault.dev.entra_fake import FakeEntra
    from tokenvault.dev.tls import TestCA

    ca = TestCA(Path(folder))
    with FakeEntra(ca, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as entra, \
            FakeKeyVault(ca) as keyvault:
        conn.send({"authority_host": entra.authority_host, "keyvault_url": keyvault.url,
                   "bundle": str(ca.bundle)})
        while True:
            command, *args = conn.recv()
            if command == "user_token":
                conn.send(entra.user_token(*args))
            elif command == "refresh_token":
                tenant, oid = args
                conn.send(entra.issue_refresh_token(tenant, oid, client_id=CLIENT_ID,
                                                    scopes=SCOPES))
            elif command == "latency":
                entra.latency = args[0]
                conn.send(None)
            elif command == "counts":
                conn.send({"entra": dict(entra.counts), "keyvault": dict(keyvault.requests)})
            else:
                conn.send(None)
                return


class InMemoryAzurite(Azurite):
    """Azurite with ``--inMemoryPersistence``: with 10^5 users of each kind the table holds
    ~600 MB, and Azurite's periodic save of it as one JSON string exceeds V8's limit on a
    string's length and kills the process. Nothing here needs the data after the run."""

    def start(self, *, timeout: float = 60) -> "InMemoryAzurite":
        import subprocess

        original = subprocess.Popen

        def popen(args, *rest, **options):
            # --location and --inMemoryPersistence exclude each other.
            where = args.index("--location")
            args = [*args[:where], *args[where + 2:], "--inMemoryPersistence"]
            return original(args, *rest, **options)

        subprocess.Popen = popen
        try:
            super().start(timeout=timeout)
        finally:
            subprocess.Popen = original
        return self


class Services:
    """``with Services() as services:`` Azurite plus the Entra and Key Vault fakes."""

    def __init__(self, *, latency: float = 0.020) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tokenvault-bench-"))
        self.latency = latency
        self.azurite = InMemoryAzurite(self.folder / "azurite")
        self._conn = None
        self._child = None

    def __enter__(self) -> "Services":
        self.azurite.start()
        parent, child = _SPAWN.Pipe()
        self._child = _SPAWN.Process(target=_serve_fakes, args=(child, str(self.folder / "tls")),
                                     daemon=True)
        self._child.start()
        self._conn = parent
        endpoints = _receive(parent, self._child)
        self.authority_host = endpoints["authority_host"]
        self.keyvault_url = endpoints["keyvault_url"]
        self.bundle = endpoints["bundle"]
        self.set_latency(self.latency)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._child.is_alive():
                self._ask("stop")
            self._child.join(timeout=10)
        finally:
            self.azurite.stop(grace=2)
            shutil.rmtree(self.folder, ignore_errors=True)

    def _ask(self, *command):
        self._conn.send(command)
        return _receive(self._conn, self._child)

    @property
    def connection_string(self) -> str:
        return self.azurite.connection_string

    def user_token(self, tenant_id: str, user_id: str) -> str:
        """A delegated access token for TokenVault's API, as Entra would issue it (1 h)."""
        return self._ask("user_token", tenant_id, user_id)

    def refresh_token(self, tenant_id: str, user_id: str) -> str:
        """A live refresh token of the user, as an earlier OBO would have returned."""
        return self._ask("refresh_token", tenant_id, user_id)

    def set_latency(self, seconds: float) -> None:
        """Added to every token-endpoint answer of the Entra fake."""
        self._ask("latency", seconds)

    def counts(self) -> dict:
        """Requests served so far: ``{"entra": {grant: n}, "keyvault": {kind: n}}``."""
        return self._ask("counts")

    def keyvault_gets(self) -> int:
        kinds = self.counts()["keyvault"]
        return kinds.get("get", 0) + kinds.get("get_version", 0)

    def endpoints(self) -> dict:
        """What another process needs to compose the app on the same parts."""
        return {"authority_host": self.authority_host, "keyvault_url": self.keyvault_url,
                "bundle": self.bundle, "connection_string": self.connection_string}


# --- the app, composed as the tests compose it ----------------------------------------------

def http_session(bundle: str) -> requests.Session:
    """What msal and the JWKS fetches use: trusts the fakes' CA, ignores the environment."""
    session = requests.Session()
    session.trust_env = False
    session.verify = bundle
    return session


def environ(endpoints: dict, table: str) -> dict:
    return {
        "TOKENVAULT_CLIENT_ID": CLIENT_ID,
        "TOKENVAULT_CLIENT_SECRET": CLIENT_SECRET,
        "TOKENVAULT_AUTHORITY_HOST": endpoints["authority_host"],
        "TOKENVAULT_KEY_VAULT_URL": endpoints["keyvault_url"],
        "TOKENVAULT_KEY_CACHE_TTL": "300",
        "TOKENVAULT_REFRESH_AFTER": "P7D",
        "TOKENVAULT_TABLE": table,
        "AzureWebJobsStorage": endpoints["connection_string"],
    }


def _keyvault_options(bundle: str) -> dict:
    return {"verify_challenge_resource": False, "connection_verify": bundle}


def compose_app(endpoints: dict, table: str, *, session: requests.Session | None = None):
    """``bootstrap.compose`` with the real adapters on the given parts (as ``stack`` does)."""
    from tests.support.keyvault import StaticTokenCredential
    from tokenvault import bootstrap
    from tokenvault.settings import Settings

    settings = Settings.from_environ(environ(endpoints, table))
    settings = settings.with_backend(refresh_queue="q" + uuid.uuid4().hex[:20])
    return bootstrap.compose(settings, credential=StaticTokenCredential(),
                             session=session or http_session(endpoints["bundle"]),
                             key_vault_options=_keyvault_options(endpoints["bundle"]))


def cache_free_vault(app, session: requests.Session):
    """The composed app's vault without the in-memory access-token cache: every redeem is a
    real refresh. Same keys and records adapters; the identity adapter built as compose
    builds it."""
    from tokenvault.adapters.entra import EntraIdentityProvider
    from tokenvault.ports import SystemClock
    from tokenvault.vault import Vault

    return Vault(client_id=app.settings.client_id, keys=app.keys, records=app.records,
                 identity=EntraIdentityProvider.from_settings(app.settings, session=session),
                 clock=SystemClock(), access_tokens=None)


def key_admin(endpoints: dict):
    from tests.support.keyvault import StaticTokenCredential
    from tokenvault.adapters.key_admin import KeyVaultKeyAdmin

    return KeyVaultKeyAdmin(endpoints["keyvault_url"], StaticTokenCredential(),
                            **_keyvault_options(endpoints["bundle"]))


# --- bulk rows ------------------------------------------------------------------------------

def plain_entity(entity) -> dict:
    """A stored entity as plain, picklable values (no SDK subclasses, no metadata)."""
    plain = {}
    for name, value in entity.items():
        if isinstance(value, datetime.datetime):
            value = datetime.datetime.fromisoformat(value.isoformat())
        elif isinstance(value, (bytes, bytearray)):
            value = bytes(value)
        plain[name] = value
    return plain


def _fill(connection_string: str, table: str, template: dict, tenants: list[str],
          count: int, workers: int) -> float:
    """Insert ``count`` clones of ``template`` with new user ids, spread over ``tenants``, in
    transactions of 100 (one partition each). Runs in a child process."""
    from concurrent.futures import ThreadPoolExecutor

    from azure.data.tables import TableClient

    client = TableClient.from_connection_string(connection_string, table, read_timeout=120)
    started = time.perf_counter()

    def batch(tenant: str, size: int) -> None:
        rows = [{**template, "PartitionKey": tenant, "RowKey": new_id()} for _ in range(size)]
        for attempt in range(4):
            try:
                # Upsert: a retried batch whose first try landed after all must not conflict.
                client.submit_transaction([("upsert", row) for row in rows])
                return
            except Exception as error:  # noqa: BLE001 - Azurite slows down as it fills up
                if attempt == 3:
                    # Azure's exceptions do not pickle back to the parent; their text does.
                    raise RuntimeError(f"bulk insert failed: {type(error).__name__}: {error}") from None
                time.sleep(1 + attempt)

    jobs = []
    for index in range(0, count, 100):
        jobs.append((tenants[(index // 100) % len(tenants)], min(100, count - index)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(lambda job: batch(*job), jobs):
            pass
    client.close()
    return time.perf_counter() - started


class Spawned:
    """Run a function in a spawned child process and wait for its result."""

    @staticmethod
    def run(target, *args):
        with _SPAWN.Pool(1) as pool:
            return pool.apply(target, args)


def _scan(connection_string: str, table: str, sizes: bool) -> dict[str, list[int]]:
    """Rows of each kind (ours carry ``KeyVersion``, the alternative's do not), with their
    sizes at rest when ``sizes``. Runs in a child process (a scan of 10^5 rows would leave
    its high-water mark in the measured process's RSS)."""
    from azure.data.tables import TableClient

    client = TableClient.from_connection_string(connection_string, table)
    found: dict[str, list[int]] = {"ours": [], "theirs": []}
    rows = client.list_entities() if sizes else client.list_entities(select=["PartitionKey",
                                                                              "KeyVersion"])
    for entity in rows:
        kind = "ours" if entity.get("KeyVersion") else "theirs"
        found[kind].append(entity_size(plain_entity(entity)) if sizes else 0)
    client.close()
    return found


def scan(connection_string: str, table: str, *, sizes: bool = False) -> dict[str, list[int]]:
    return Spawned.run(_scan, connection_string, table, sizes)


def bulk_clone(connection_string: str, table: str, template: dict, tenants: list[str],
               count: int, *, workers: int = 4) -> float:
    """Insert ``count`` clones of a real row, in a child process so that building a hundred
    thousand entities does not grow the measured process. Returns the seconds it took."""
    if count <= 0:
        return 0.0
    return Spawned.run(_fill, connection_string, table, template, tenants, count, workers)


def entity_size(entity: dict) -> int:
    """Bytes the entity takes at rest by the Azure Storage team's billing formula:
    4 + 2·len(PartitionKey + RowKey) + Σ over properties (8 + 2·len(name) + value), where a
    string takes 4 + 2·chars, binary 4 + bytes, datetime/int64/double 8, int32 4, bool 1,
    guid 16. ``Timestamp`` (the service's own column) is left out for both kinds alike."""
    size = 4 + 2 * (len(entity["PartitionKey"]) + len(entity["RowKey"]))
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey", "Timestamp"):
            continue
        if isinstance(value, str):
            value_size = 4 + 2 * len(value)
        elif isinstance(value, (bytes, bytearray)):
            value_size = 4 + len(value)
        elif isinstance(value, bool):
            value_size = 1
        elif isinstance(value, int):
            value_size = 4 if -2**31 <= value < 2**31 else 8
        elif isinstance(value, (float, datetime.datetime)):
            value_size = 8
        elif isinstance(value, uuid.UUID):
            value_size = 16
        else:
            raise TypeError(f"no size rule for {type(value).__name__} ({name})")
        size += 8 + 2 * len(name) + value_size
    return size


# --- figures --------------------------------------------------------------------------------

def summary(seconds: list[float]) -> dict:
    """Median, p99 (nearest rank) and count of a list of durations, in milliseconds."""
    ordered = sorted(seconds)
    rank = max(0, min(len(ordered) - 1, round(0.99 * len(ordered) + 0.5) - 1))
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[rank] * 1000, 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}


def paired(ours: list[float], theirs: list[float], *, resamples: int = 2000,
           seed: int = 7) -> dict:
    """Median of the per-round ratios ours[i] / theirs[i] (both measured in the same round),
    with a 95 % bootstrap interval: robust to drift that moves both alike."""
    import random

    ratios = sorted(a / b for a, b in zip(ours, theirs, strict=True))
    pick = random.Random(seed)
    medians = sorted(statistics.median(pick.choices(ratios, k=len(ratios)))
                     for _ in range(resamples))
    return {"median_ratio": round(statistics.median(ratios), 3),
            "ci95": [round(medians[int(0.025 * resamples)], 3),
                     round(medians[int(0.975 * resamples) - 1], 3)],
            "rounds": len(ratios)}


def rss_kib(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc status")


def machine() -> dict:
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return {"cores": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform(terse=True),
            "threads_at_start": threading.active_count()}


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --- the dev host, in a process of its own ---------------------------------------------------

def _serve_devhost(conn, endpoints: dict, table: str) -> None:
    """The child process: function_app served by tokenvault.dev.devhost's HTTP server, with the
    app composed on the same parts and the access-token cache off (every redeem refreshes)."""
    import function_app
    from tokenvault import bootstrap
    from tokenvault.adapters.caller_tokens import CallerTokenValidator
    from tokenvault.dev.devhost import DevHost, _serve
    from tokenvault.http import Api
    from tokenvault.ports import SystemClock

    session = http_session(endpoints["bundle"])
    app = compose_app(endpoints, table, session=session)
    vault = cache_free_vault(app, session)
    api = Api(vault=vault, authenticate=CallerTokenValidator.from_settings(app.settings, session=session),
              redeem_callers=app.settings.redeem_callers, clock=SystemClock())
    bootstrap.install(dataclasses.replace(app, vault=vault, api=api))
    # The host resolves the timer's %TOKENVAULT_REFRESH_SCHEDULE% from the app settings.
    os.environ.setdefault("TOKENVAULT_REFRESH_SCHEDULE", app.settings.refresh_schedule)
    server = _serve(DevHost(function_app.app), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn.send(server.server_address[1])
    while True:
        command = conn.recv()
        if command == "rss":
            conn.send(rss_kib())
        else:
            server.shutdown()
            conn.send(None)
            return


class DevHostProcess:
    """``with DevHostProcess(endpoints, table) as host: host.url`` — real HTTP to the dev host
    serving function_app in a separate process, as the Functions worker is one."""

    def __init__(self, endpoints: dict, table: str) -> None:
        self._args = (endpoints, table)

    def __enter__(self) -> "DevHostProcess":
        self._conn, child = _SPAWN.Pipe()
        self._process = _SPAWN.Process(target=_serve_devhost, args=(child, *self._args),
                                       daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{_receive(self._conn, self._process)}"
        self.pid = self._process.pid
        return self

    def rss_kib(self) -> int:
        self._conn.send("rss")
        return _receive(self._conn, self._process)

    def __exit__(self, *exc) -> None:
        if self._process.is_alive():
            self._conn.send("stop")
            _receive(self._conn, self._process)
        self._process.join(timeout=10)
