"""Benchmark: does ``EntraIdentityProvider.refresh`` stay flat as distinct users grow?

For 10, 1,000 and 10,000 users of one tenant, the Entra fake (in a child process, so its own
memory and CPU stay out of the figures) is given one refresh token per user. A fresh provider
then refreshes every user once (the population pass, which is what would fill a token cache),
and a sample of calls spread over the population is timed one by one. Beside it, the same
work through a plain shared msal app with msal's default token cache, as the control.

Reports, per size: median and p95 ms per call, memory the provider retains after the pass
(tracemalloc, bench process only) and the peak, entries in msal's token caches, each with its
ratio to the 10-user figure. Writes bench/results/entra_users.json.

    .venv/bin/python bench/bench_entra_users.py [--sample 300] [--latency-ms 0] [--workers 4]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msal  # noqa: E402
import requests  # noqa: E402

from tokenvault.adapters.entra import EntraIdentityProvider  # noqa: E402
from tokenvault.sensitive import Sensitive  # noqa: E402

SIZES = (10, 1_000, 10_000)
CLIENT_ID = "3b9f0c1e-5d7a-4e2b-9c8d-0a1b2c3d4e5f"
SECRET = "bench-secret-0123456789abcdef"
SCOPES = ["https://graph.microsoft.com/User.Read"]
CONTROL_SIZES = (10, 1_000)  # the control grows linearly already; 10,000 would add a minute
RESULTS = ROOT / "bench" / "results" / "entra_users.json"
_CHUNK = 64


def _serve_fake(conn, folder: str, latency: float) -> None:
    """The child process: the fake, answering a few commands over the pipe."""
    from tokenvault.dev.entra_fake import FakeEntra
    from tokenvault.dev.tls import TestCA

    ca = TestCA(Path(folder))
    with FakeEntra(ca, client_id=CLIENT_ID, client_secret=SECRET) as entra:
        entra.latency = latency
        conn.send({"authority_host": entra.authority_host, "bundle": str(ca.bundle)})
        while True:
            command, *args = conn.recv()
            if command == "populate":
                tenant, count = args
                conn.send([entra.issue_refresh_token(tenant, str(uuid.uuid4())) for _ in range(count)])
            elif command == "counts":
                conn.send(dict(entra.counts))
            else:
                conn.send(None)
                return


class _Plain:
    """The control: one shared msal app with msal's default (in-memory) token cache."""

    def __init__(self, authority_host: str, session: requests.Session) -> None:
        self._host, self._session, self._apps = authority_host, session, {}

    def refresh(self, tenant: str, token: Sensitive[str], scopes) -> dict:
        if tenant not in self._apps:
            self._apps[tenant] = msal.ConfidentialClientApplication(
                CLIENT_ID, client_credential=SECRET, authority=f"{self._host}/{tenant}",
                instance_discovery=False, http_client=self._session)
        result = self._apps[tenant].acquire_token_by_refresh_token(token.reveal(), list(scopes))
        assert "access_token" in result, result.get("error")
        return result

    def token_cache_size(self) -> int:
        kinds = [v for k, v in vars(msal.TokenCache.CredentialType).items() if not k.startswith("_")]
        return sum(len(list(app.token_cache.search(kind))) for app in self._apps.values()
                   for kind in kinds)


def _measure(variant: str, make, tenant: str, tokens: list[str], sample: int, workers: int) -> dict:
    gc.collect()
    baseline = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    provider = make()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # In chunks: Executor.map queues every call up front, and the queue's memory would
        # show up in the peak as if the provider held it.
        for at in range(0, len(tokens), _CHUNK):
            chunk = tokens[at:at + _CHUNK]
            for _ in pool.map(provider.refresh, [tenant] * len(chunk), map(Sensitive, chunk),
                              [SCOPES] * len(chunk)):
                pass
    population_seconds = time.perf_counter() - started
    timings = []
    for i in range(sample):
        token = Sensitive(tokens[i * len(tokens) // sample])
        begun = time.perf_counter()
        provider.refresh(tenant, token, SCOPES)
        timings.append(time.perf_counter() - begun)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    cache_entries = provider.token_cache_size()
    del provider
    gc.collect()
    timings.sort()
    return {"variant": variant, "users": len(tokens), "sample": sample,
            "median_ms": round(statistics.median(timings) * 1000, 3),
            "p95_ms": round(timings[int(0.95 * (len(timings) - 1))] * 1000, 3),
            "retained_kib": round((current - baseline) / 1024, 1),
            "peak_kib": round((peak - baseline) / 1024, 1),
            "msal_cache_entries": cache_entries,
            "population_pass_s": round(population_seconds, 2)}


def _population(conn, size: int) -> tuple[str, list[str]]:
    """A new tenant whose ``size`` users each hold a refresh token at the fake."""
    tenant = str(uuid.uuid4())
    conn.send(("populate", tenant, size))
    return tenant, conn.recv()


def _with_ratios(rows: list[dict]) -> list[dict]:
    for row in rows:
        base = next(r for r in rows if r["variant"] == row["variant"] and r["users"] == SIZES[0])
        for key in ("median_ms", "retained_kib", "peak_kib"):
            row[f"{key}_ratio"] = round(row[key] / base[key], 2) if base[key] > 0 else None
    return rows


def _table(rows: list[dict]) -> str:
    head = (f"{'variant':<13}{'users':>7}{'median ms':>11}{'x10':>7}{'p95 ms':>9}"
            f"{'retained KiB':>14}{'x10':>8}{'peak KiB':>11}{'x10':>8}{'cache':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['variant']:<13}{r['users']:>7}{r['median_ms']:>11.2f}"
                     f"{r['median_ms_ratio'] or 0:>7.2f}{r['p95_ms']:>9.2f}{r['retained_kib']:>14.1f}"
                     f"{r['retained_kib_ratio'] or 0:>8.2f}{r['peak_kib']:>11.1f}"
                     f"{r['peak_kib_ratio'] or 0:>8.2f}{r['msal_cache_entries']:>8}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=300, help="timed calls per size")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="latency the fake adds to each token request")
    parser.add_argument("--workers", type=int, default=4, help="threads of the population pass")
    parser.add_argument("--no-control", action="store_true", help="skip the plain-msal control")
    parser.add_argument("--control-at-10000", action="store_true",
                        help="also run the control at 10,000 users (about a minute more)")
    options = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    folder = tempfile.mkdtemp(prefix="bench-entra-")
    fake = context.Process(target=_serve_fake, args=(child, folder, options.latency_ms / 1000),
                           daemon=True)
    fake.start()
    endpoint = parent.recv()
    session = requests.Session()
    session.trust_env = False
    session.verify = endpoint["bundle"]
    session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=options.workers + 2))
    host = endpoint["authority_host"]
    def ours() -> EntraIdentityProvider:
        return EntraIdentityProvider(client_id=CLIENT_ID, client_credential=SECRET,
                                     authority_host=host, session=session)

    plan = [("tokenvault", ours, size) for size in SIZES]
    if not options.no_control:
        control_sizes = SIZES if options.control_at_10000 else CONTROL_SIZES
        plan += [("msal default", lambda: _Plain(host, session), size) for size in control_sizes]

    tracemalloc.start()
    started = time.perf_counter()
    rows = []
    try:
        # Warm-up: first-use imports and connection set-up are not the provider's per-user cost.
        _measure("warm-up", ours, *_population(parent, SIZES[0]), 20, options.workers)
        for name, make, size in plan:
            rows.append(_measure(name, make, *_population(parent, size), options.sample,
                                 options.workers))
            print(f"  {name} at {size} users done ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr)
    finally:
        tracemalloc.stop()
        parent.send(("stop",))
        parent.recv()
        fake.join(timeout=10)
        session.close()

    rows = _with_ratios(rows)
    print(_table(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "EntraIdentityProvider.refresh vs distinct users",
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "msal": msal.__version__,
        "fake_latency_ms": options.latency_ms, "population_workers": options.workers,
        "total_seconds": round(time.perf_counter() - started, 1), "results": rows,
    }, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
