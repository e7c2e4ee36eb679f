"""Benchmark: sweep throughput (records/s) for rewrap and for refresh on the old sequential
path and the new one, side by side in one run, and the new path's memory, at 1k and 10k
records.

Real parts throughout: Azurite (table and queue) in a temp folder, and — in a child process of
their own, so their CPU and memory stay out of the figures, as Entra's and Key Vault's stay out
of a real instance — the HTTPS fakes of Entra ID (50 ms added to every token answer) and Key
Vault (through the real SecretClient; not the local keyring). Each size runs in a fresh spawned
process that composes the app twice on two tables seeded alike (transactions of 100, sealed
under the tenant's key):

- **old**: the worker as it was before issue 15 (``bench/sequential_worker.py``: a point read
  and a conditional replace per record, one record after another, batches of 20), storage
  clients and msal's session reading the environment on every request, default pools;
- **new**: ``bootstrap.compose`` as in Azure: a batch read with one range query, rewraps in
  entity-group transactions, refreshes ``--concurrency`` at a time, batches of 100.

Then, on each: (1) refresh: a sample of the records (default 1,000) is due; one sweep — the
timer function's plan onto the real queue, then ``refresh_work`` draining it with ``--workers``
threads (host.json's ``batchSize``) — refreshes exactly those at the fake; (2) rewrap: every
tenant's key is rotated; one sweep rewraps every record (no IdP call); (3) memory, new path
only: keys rotated again; under tracemalloc the plan pages through all records and queues all
of them (plan peak), then a fixed 25 batches are worked (work peak).

Writes bench/results/sweep.json.

    .venv/bin/python bench/bench_sweep.py [--sizes 1000,10000] [--tenants 10]
        [--refresh-sample 1000] [--workers 4] [--concurrency 8] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gc
import json
import logging
import math
import multiprocessing
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tokenvault.dev.azurite import Azurite  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sweep.json"
CLIENT_ID = "3b9f0c1e-5d7a-4e2b-9c8d-0a1b2c3d4e5f"
CLIENT_SECRET = "bench-sweep-client-secret-0123456789"
SCOPES = ("https://graph.microsoft.com/User.Read",)
MEMORY_BATCHES = 25  # batches worked under tracemalloc: a fixed amount of work at every size
_SPAWN = multiprocessing.get_context("spawn")


# --- the fakes, in a child process ----------------------------------------------------------

def _serve_fakes(conn, folder: str, latency: float) -> None:
    from tests.support.keyvault import FakeKeyVault
    from tokenvault.dev.entra_fake import FakeEntra
    from tokenvault.dev.tls import TestCA

    ca = TestCA(Path(folder))
    with FakeEntra(ca, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as entra, \
            FakeKeyVault(ca) as keyvault:
        entra.latency = latency
        conn.send({"authority_host": entra.authority_host, "keyvault_url": keyvault.url,
                   "bundle": str(ca.bundle)})
        while True:
            command, *args = conn.recv()
            if command == "refresh_tokens":  # [(tenant, user)] → their live refresh tokens
                conn.send([entra.issue_refresh_token(t, u, scopes=SCOPES) for t, u in args[0]])
            elif command == "counts":
                conn.send({"entra": dict(entra.counts), "keyvault": dict(keyvault.requests)})
            else:
                conn.send(None)
                return


class Fakes:
    def __init__(self, folder: Path, latency: float) -> None:
        self._conn, child = _SPAWN.Pipe()
        self._process = _SPAWN.Process(target=_serve_fakes, args=(child, str(folder), latency),
                                       daemon=True)
        self._process.start()
        self.endpoints = self._conn.recv()

    def ask(self, *command):
        self._conn.send(command)
        return self._conn.recv()

    def stop(self) -> None:
        if self._process.is_alive():
            self.ask("stop")
        self._process.join(timeout=10)


# --- one size, in a fresh process -----------------------------------------------------------

class _Summaries(logging.Handler):
    """Collects the sweep's structured summary lines (``sweep.plan`` / ``sweep.batch``)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.plans: list[dict] = []
        self.batches: list[dict] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        summary = getattr(record, "sweep", None)
        if summary is None:
            return
        with self._lock2:
            if getattr(record, "event", None) == "sweep.plan":
                self.plans.append(summary)
            elif getattr(record, "event", None) == "sweep.batch":
                self.batches.append(summary)

    def take(self) -> tuple[list[dict], Counter]:
        with self._lock2:
            plans, batches = self.plans, self.batches
            self.plans, self.batches = [], []
        outcomes = Counter()
        for batch in batches:
            outcomes.update({k: batch[k] for k in ("rewrapped", "refreshed", "restored",
                                                   "reauth_required", "revoked", "failed",
                                                   "skipped") if batch[k]})
        return plans, outcomes


def _measure_size(endpoints: dict, size: int, tenants: list[str], samples: dict,
                  options: dict) -> dict:
    """Runs in a spawned process: seed two identical tables, then on each the old sequential
    path and the new one — refresh, then rewrap — and the new path's memory."""
    import dataclasses

    import requests
    from azure.data.tables import TableClient
    from azure.functions.queue import QueueMessage
    from azure.storage.queue import QueueClient

    import function_app
    from bench.sequential_worker import OLD_BATCH_SIZE, SequentialWorker
    from tests.fakes import FixedClock
    from tests.support.keyvault import ManualMonotonic, StaticTokenCredential
    from tokenvault import bootstrap
    from tokenvault.adapters.key_admin import KeyVaultKeyAdmin
    from tokenvault.adapters.storage_queue import StorageQueue
    from tokenvault.adapters.table_entity import to_entity
    from tokenvault.adapters.transport import http_session, pool_size
    from tokenvault.dev.devhost import index_functions
    from tokenvault.envelope import Binding, seal
    from tokenvault.model import Status, TokenRecord
    from tokenvault.sensitive import Sensitive
    from tokenvault.settings import Settings
    from tokenvault.sweep import Planner, SweepHandler

    # The environment of an Azure instance: no proxy and no CA bundle variable (the fakes' CA
    # is given explicitly). A CA variable left here would also break the old path, whose msal
    # session read it on every request in place of the session's own verify.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    conn = endpoints["connection_string"]
    keyvault_options = {"verify_challenge_resource": False,
                        "connection_verify": endpoints["bundle"]}
    monotonic, clock = ManualMonotonic(), FixedClock(datetime.datetime.now(datetime.timezone.utc))

    def settings_for(path: str) -> Settings:
        concurrency = "1" if path == "old" else str(options["concurrency"])
        settings = Settings.from_environ({
            "TOKENVAULT_CLIENT_ID": CLIENT_ID, "TOKENVAULT_CLIENT_SECRET": CLIENT_SECRET,
            "TOKENVAULT_AUTHORITY_HOST": endpoints["authority_host"],
            "TOKENVAULT_KEY_VAULT_URL": endpoints["keyvault_url"],
            "TOKENVAULT_KEY_CACHE_TTL": "300", "TOKENVAULT_REFRESH_AFTER": "P7D",
            "TOKENVAULT_TABLE": f"sweep{path}{uuid.uuid4().hex[:12]}",
            "TOKENVAULT_SWEEP_CONCURRENCY": concurrency, "AzureWebJobsStorage": conn})
        return settings.with_backend(refresh_queue=f"q{path}{uuid.uuid4().hex[:16]}")

    def compose(path: str):
        """The new path: compose as Azure does. The old: what compose built before issue 15 —
        storage clients and msal's session reading the environment on every request, default
        connection pools — with the sequential worker and batches of 20."""
        settings = settings_for(path)
        if path == "old":
            session = requests.Session()  # trust_env=True, as msal's default session was
            storage = {"use_env_settings": True}
        else:
            session = http_session(pool=pool_size(settings.sweep_concurrency))
            storage = {}
        session.verify = endpoints["bundle"]
        app = bootstrap.compose(settings, credential=StaticTokenCredential(), session=session,
                                key_vault_options={**keyvault_options, "monotonic": monotonic},
                                storage_options=storage, clock=clock)
        if path == "old":
            queue = next(c for c in app.clients if isinstance(c, StorageQueue))
            after = settings.refresh_after
            planner = Planner(records=app.records, keys=app.keys, queue=queue, clock=clock,
                              refresh_after=after, batch_size=OLD_BATCH_SIZE)
            worker = SequentialWorker(vault=app.vault, queue=queue, clock=clock,
                                      refresh_after=after)
            app = dataclasses.replace(app, sweep=SweepHandler(planner=planner, worker=worker,
                                                              queue=queue))
        return app

    apps = {path: compose(path) for path in ("old", "new")}
    admin = KeyVaultKeyAdmin(endpoints["keyvault_url"], StaticTokenCredential(), **keyvault_options)
    for tenant in tenants:
        admin.create(tenant)
    summaries = _Summaries()
    logging.getLogger("tokenvault.sweep").addHandler(summaries)
    logging.getLogger("tokenvault.sweep").setLevel(logging.INFO)
    work = {f.get_function_name(): f for f in index_functions(function_app.app)}[
        "refresh_work"].get_user_function()

    # --- seed each table alike: transactions of 100, a bounded number in flight ----------------
    now = clock.now()

    def rows_of(tenant: str, count: int, due: dict):
        key = apps["new"].keys.latest(tenant)
        users = [u for (t, u) in due if t == tenant]
        users += [str(uuid.uuid4()) for _ in range(count - len(users))]
        users.sort()
        for start in range(0, count, 100):
            batch = []
            for user in users[start:start + 100]:
                token = due.get((tenant, user)) or "unissued." + secrets.token_urlsafe(40)
                record = TokenRecord(
                    tenant_id=tenant, user_id=user, client_id=CLIENT_ID, key_version=key.version,
                    ciphertext=b"", status=Status.ACTIVE, scopes=SCOPES,
                    created_at=now - datetime.timedelta(days=30),
                    refreshed_at=now - datetime.timedelta(days=8 if (tenant, user) in due else 1))
                binding = Binding(tenant, user, CLIENT_ID, key.version)
                batch.append(to_entity(record.evolve(
                    ciphertext=seal(key.material, Sensitive(token), binding))))
            yield batch

    per_tenant = size // len(tenants)
    seed_seconds = {}
    for path, app in apps.items():
        due = {(t, u): token for (t, u), token in samples[path]}
        started = time.perf_counter()
        with TableClient.from_connection_string(conn, app.settings.backend.table) as client, \
                ThreadPoolExecutor(max_workers=options["workers"]) as pool:
            in_flight = []
            for tenant in tenants:
                for batch in rows_of(tenant, per_tenant, due):
                    in_flight.append(pool.submit(client.submit_transaction,
                                                 [("create", e) for e in batch]))
                    if len(in_flight) >= 2 * options["workers"]:
                        in_flight.pop(0).result()
            for future in in_flight:
                future.result()
        seed_seconds[path] = round(time.perf_counter() - started, 2)

    def drain(app, workers: int, limit: int | None = None) -> int:
        """Deliver queue messages to function_app's ``refresh_work`` as the host does: each
        of ``workers`` threads works one message at a time (host.json's batchSize of 4 keeps
        4 in flight; a thread that took 16 at once would work them one after another while
        the others found the queue empty)."""
        claimed, delivered = Counter(), Counter()
        lock = threading.Lock()

        def loop() -> None:
            with QueueClient.from_connection_string(conn, app.settings.backend.refresh_queue) as queue:
                while True:
                    with lock:
                        want = 1 if limit is None else min(1, limit - claimed["n"])
                        claimed["n"] += max(want, 0)
                    if want <= 0:
                        return
                    messages = list(queue.receive_messages(max_messages=want,
                                                           visibility_timeout=300))
                    if not messages:
                        return
                    for message in messages:
                        work(QueueMessage(id=message.id, body=base64.b64decode(message.content),
                                          dequeue_count=message.dequeue_count))
                        queue.delete_message(message)
                    with lock:
                        delivered["n"] += len(messages)

        threads = [threading.Thread(target=loop) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return delivered["n"]

    def one_sweep(path: str) -> dict:
        app = apps[path]
        bootstrap.install(app)
        summaries.take()
        cpu, started = time.process_time(), time.perf_counter()
        plan = app.sweep.plan_run()
        planned = time.perf_counter()
        drain(app, options["workers"])
        done = time.perf_counter()
        _, outcomes = summaries.take()
        return {"planned": plan.planned, "batches": plan.batches, "scanned": plan.scanned,
                "outcomes": dict(outcomes), "plan_s": round(planned - started, 2),
                "work_s": round(done - planned, 2), "total_s": round(done - started, 2),
                "cpu_s": round(time.process_time() - cpu, 2)}

    def rotate() -> None:
        for tenant in tenants:
            admin.rotate(tenant)
        monotonic.advance(apps["new"].settings.backend.key_cache_ttl + 1)

    # --- 1. refresh: only the sample is due, nothing to rewrap (old, then new) ----------------
    refresh = {}
    for path in ("old", "new"):
        refresh[path] = one_sweep(path)
        refresh[path]["records"] = len(samples[path])
        refresh[path]["records_per_s"] = round(len(samples[path]) / refresh[path]["total_s"], 1)
        assert refresh[path]["outcomes"] == {"refreshed": len(samples[path])}, refresh[path]

    # --- 2. rewrap: every key rotated, every record of both tables (new, then old) ------------
    rotate()
    rewrap = {}
    for path in ("new", "old"):
        rewrap[path] = one_sweep(path)
        rewrap[path]["records"] = size
        rewrap[path]["records_per_s"] = round(size / rewrap[path]["total_s"], 1)
        assert rewrap[path]["outcomes"] == {"rewrapped": size}, rewrap[path]

    # --- 3. memory of the new path: plan over everything, then a fixed amount of work --------
    app = apps["new"]
    bootstrap.install(app)
    rotate()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    plan = app.sweep.plan_run()
    plan_current, plan_peak = (m - base for m in tracemalloc.get_traced_memory())
    assert plan.planned == size, plan.as_log()
    garbage = gc.collect()
    plan_retained = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    worked = drain(app, 1, limit=MEMORY_BATCHES)
    work_peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    summaries.take()
    status = Path("/proc/self/status").read_text()
    memory = {"plan_peak_kib": round(plan_peak / 1024, 1), "plan_pages": math.ceil(size / 1000),
              "plan_end_kib": round(plan_current / 1024, 1), "plan_cyclic_garbage": garbage,
              "plan_retained_after_gc_kib": round(plan_retained / 1024, 1),
              "work_peak_kib": round(work_peak / 1024, 1), "work_batches": worked,
              "rss_kib": _proc_field(status, "VmRSS"), "rss_peak_kib": _proc_field(status, "VmHWM")}
    for app in apps.values():
        with QueueClient.from_connection_string(conn, app.settings.backend.refresh_queue) as queue:
            queue.clear_messages()
        with TableClient.from_connection_string(conn, app.settings.backend.table) as client:
            client.delete_table()
    ratios = {"refresh": round(refresh["new"]["records_per_s"] / refresh["old"]["records_per_s"], 2),
              "rewrap": round(rewrap["new"]["records_per_s"] / rewrap["old"]["records_per_s"], 2)}
    return {"records": size, "tenants": len(tenants), "seed_s": seed_seconds,
            "refresh": refresh, "rewrap": rewrap, "new_over_old": ratios, "memory": memory}


def _proc_field(status: str, name: str) -> int:
    for line in status.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _run_size(endpoints, size, tenants, samples, options) -> dict:
    with _SPAWN.Pool(1) as pool:
        return pool.apply(_measure_size, (endpoints, size, tenants, samples, options))


# --- main -----------------------------------------------------------------------------------

def _ratio(value: float, base: float) -> float | None:
    return round(value / base, 2) if base else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--refresh-sample", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4, help="queue workers (host batchSize)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="the new path's TOKENVAULT_SWEEP_CONCURRENCY")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    options = {"workers": args.workers, "concurrency": args.concurrency}

    folder = Path(tempfile.mkdtemp(prefix="tokenvault-bench-sweep-"))
    rows = []
    started_at = _load()
    with Azurite(folder / "azurite") as azurite:
        fakes = Fakes(folder / "tls", args.latency_ms / 1000)
        try:
            endpoints = {**fakes.endpoints, "connection_string": azurite.connection_string}
            for size in sizes:
                tenants = [str(uuid.uuid4()) for _ in range(args.tenants)]
                wanted = min(size, args.refresh_sample)
                samples = {}
                for path in ("old", "new"):
                    pairs = [(tenants[i % len(tenants)], str(uuid.uuid4())) for i in range(wanted)]
                    samples[path] = list(zip(pairs, fakes.ask("refresh_tokens", pairs), strict=True))
                before = fakes.ask("counts")
                started = time.perf_counter()
                row = _run_size(endpoints, size, tenants, samples, options)
                after = fakes.ask("counts")
                row["wall_s"] = round(time.perf_counter() - started, 1)
                row["idp_refresh_calls"] = after["entra"].get("refresh", 0) \
                    - before["entra"].get("refresh", 0)
                assert row["idp_refresh_calls"] == 2 * wanted, row["idp_refresh_calls"]
                rows.append(row)
                print(f"  {size:>7} records done in {row['wall_s']} s", file=sys.stderr,
                      flush=True)
        finally:
            fakes.stop()

    base = rows[0]
    for row in rows:
        m, b = row["memory"], base["memory"]
        row["memory_ratios_to_smallest"] = {
            "plan_peak": _ratio(m["plan_peak_kib"], b["plan_peak_kib"]),
            "work_peak": _ratio(m["work_peak_kib"], b["work_peak_kib"]),
            "rss_peak": _ratio(m["rss_peak_kib"], b["rss_peak_kib"])}
    _print(rows, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "sweep", "when": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(terse=True),
                    "load_average_before_after": [started_at, _load()]},
        "settings": {"tenants": args.tenants, "refresh_sample": args.refresh_sample,
                     "workers": args.workers, "new_concurrency": args.concurrency,
                     "entra_latency_ms": args.latency_ms, "keys": "Key Vault fake (HTTPS)",
                     "old": "SequentialWorker, batches of 20, point read + replace per record, "
                            "environment read per request, default pools",
                     "new": "compose defaults: one range query + transactions of <= 100 for "
                            "rewraps, refreshes TOKENVAULT_SWEEP_CONCURRENCY at a time, batches "
                            "of 100, no per-request environment scan, pools sized"},
        "rows": rows}, indent=2) + "\n")
    print(f"\nwritten: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _print(rows: list[dict], args) -> None:
    print(f"\nsweep: {args.tenants} tenants, Entra fake +{args.latency_ms:g} ms, "
          f"{args.workers} queue workers, new concurrency {args.concurrency}, "
          f"{os.cpu_count()} cores (shared with Azurite and the fakes)")
    header = (f"{'records':>8} | {'rewrap old':>10} {'new':>7} {'×':>5} | "
              f"{'refresh old':>11} {'new':>6} {'×':>5} | {'plan peak KiB':>13} {'×1k':>5} | "
              f"{'work peak KiB':>13} {'×1k':>5} | {'RSS peak MiB':>12}")
    print(header)
    print("-" * len(header))
    for row in rows:
        m, r, x = row["memory"], row["memory_ratios_to_smallest"], row["new_over_old"]
        print(f"{row['records']:>8} | {row['rewrap']['old']['records_per_s']:>10} "
              f"{row['rewrap']['new']['records_per_s']:>7} {x['rewrap']:>5} | "
              f"{row['refresh']['old']['records_per_s']:>11} "
              f"{row['refresh']['new']['records_per_s']:>6} {x['refresh']:>5} | "
              f"{m['plan_peak_kib']:>13} {r['plan_peak']:>5} | {m['work_peak_kib']:>13} "
              f"{r['work_peak']:>5} | {m['rss_peak_kib'] / 1024:>12.1f}")
    print("rec/s of the whole run (plan + work); refresh: a sample of "
          f"{args.refresh_sample} due records")


if __name__ == "__main__":
    raise SystemExit(main())
