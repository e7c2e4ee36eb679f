"""Capacity model: how long a full rewrap after a rotation and a day's refreshes take for
10 million users in 10,000 tenants (the largest 1 million), per Flex Consumption instance
count, and which limit binds first. docs/capacity.md explains every input.

The per-instance rates come from ``bench/results/sweep.json`` (the new path's process CPU per
record at the largest size measured); the limits are Azure's documented ones (URLs in
docs/capacity.md). Prints a table and writes ``bench/results/capacity.json``.

    .venv/bin/python bench/capacity.py [--sweep bench/results/sweep.json] [--entra-ms 100]
        [--cores 1] [--instances 1,2,4,8,16,40,100]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

# --- the population (issue 15) ----------------------------------------------------------------
USERS = 10_000_000
TENANTS = 10_000
LARGEST = 1_000_000
REFRESH_AFTER_DAYS = 7.0
JITTER = 0.1  # a user is due somewhere in the last tenth of TOKENVAULT_REFRESH_AFTER
RUNS_PER_DAY = 4  # TOKENVAULT_REFRESH_SCHEDULE "0 0 */6 * * *"

# --- the code's shape ---------------------------------------------------------------------------
BATCH = 100  # users per batch message (sweep_messages.BATCH_SIZE)
QUEUE_OPS_PER_MESSAGE = 3  # the plan's send, the host's receive and delete
MESSAGES_AT_ONCE = 6  # host.json batchSize 4 + newBatchThreshold 2, per instance
KEY_GETS_PER_MESSAGE = 2  # worst case: latest and the record's old version, cold cache

# --- Azure's documented limits (docs/capacity.md cites each) ------------------------------------
ACCOUNT_OPS = 20_000  # storage account, per second (1 KiB entities / messages)
PARTITION_ENTITIES = 2_000  # one table partition, entities per second
KEYVAULT_GETS = 4_000 / 10  # secrets, per vault per region, per second


@dataclass
class Row:
    instances: int
    rewrap_minutes: float
    rewrap_bound: str
    rewrap_keyvault_gets_per_s: float
    refresh_run_minutes: float
    refreshes_per_run: int
    refresh_bound: str
    refresh_largest_tenant_per_s: float


def model(instances: int, *, cpu_rewrap_ms: float, cpu_refresh_ms: float, plan_per_s: float,
          cores: float, entra_ms: float, concurrency: int) -> Row:
    # Full rewrap after a rotation: every record is scanned by the plan, read and written by a
    # worker (3 entity operations), plus its share of the queue's operations.
    ops_per_rewrap = 3 + QUEUE_OPS_PER_MESSAGE / BATCH
    candidates = {
        "instance CPU": USERS / (instances * cores * 1000 / cpu_rewrap_ms),
        "storage account (20,000 ops/s)": USERS * ops_per_rewrap / ACCOUNT_OPS,
        "largest tenant's partition (2,000 entities/s)": LARGEST * 3 / PARTITION_ENTITIES,
        "the plan's single scan": USERS / plan_per_s,
    }
    rewrap_bound, rewrap_s = max(candidates.items(), key=lambda kv: kv[1])
    messages = USERS / BATCH
    gets = (messages * KEY_GETS_PER_MESSAGE + TENANTS) / rewrap_s

    # Refreshes: every user once per ~6.65 days, in 4 runs a day. Each run scans every record
    # (the plan) and refreshes its share: reads and writes each due record.
    per_run = USERS / (REFRESH_AFTER_DAYS * (1 - JITTER / 2)) / RUNS_PER_DAY
    in_flight = instances * MESSAGES_AT_ONCE * concurrency
    rates = {
        "instance CPU": instances * cores * 1000 / cpu_refresh_ms,
        "identity-provider latency": in_flight / (entra_ms / 1000),
    }
    work_bound, work_rate = min(rates.items(), key=lambda kv: kv[1])
    ops = USERS + per_run * (2 + QUEUE_OPS_PER_MESSAGE / BATCH)
    candidates = {work_bound: per_run / work_rate,
                  "storage account (20,000 ops/s)": ops / ACCOUNT_OPS,
                  "the plan's single scan": USERS / plan_per_s}
    refresh_bound, refresh_s = max(candidates.items(), key=lambda kv: kv[1])
    # Toward the largest tenant: at most `concurrency` of its records per process at once.
    largest_rate = min(instances * concurrency / (entra_ms / 1000), work_rate)
    return Row(instances, round(rewrap_s / 60, 1), rewrap_bound, round(gets, 1),
               round(refresh_s / 60, 1), round(per_run), refresh_bound, round(largest_rate))


def measured(path: Path) -> dict:
    """Process CPU per record of the new path at the largest size, and the plan's rate."""
    rows = json.loads(path.read_text())["rows"]
    row = max(rows, key=lambda r: r["records"])
    rewrap, refresh = row["rewrap"]["new"], row["refresh"]["new"]
    return {"records": row["records"],
            "cpu_rewrap_ms": round(1000 * rewrap["cpu_s"] / rewrap["records"], 3),
            "cpu_refresh_ms": round(1000 * refresh["cpu_s"] / refresh["records"], 3),
            "plan_per_s": round(rewrap["scanned"] / rewrap["plan_s"]),
            "concurrency": json.loads(path.read_text())["settings"]["new_concurrency"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, default=RESULTS / "sweep.json")
    parser.add_argument("--entra-ms", type=float, default=100,
                        help="token endpoint latency assumed in Azure")
    parser.add_argument("--cores", type=float, default=1, help="vCPU per instance (2048 MB: 1)")
    parser.add_argument("--instances", default="1,2,4,8,16,40,100")
    parser.add_argument("--out", type=Path, default=RESULTS / "capacity.json")
    args = parser.parse_args(argv)
    inputs = measured(args.sweep)
    rows = [model(int(n), cpu_rewrap_ms=inputs["cpu_rewrap_ms"],
                  cpu_refresh_ms=inputs["cpu_refresh_ms"], plan_per_s=inputs["plan_per_s"],
                  cores=args.cores, entra_ms=args.entra_ms, concurrency=inputs["concurrency"])
            for n in args.instances.split(",")]
    print(f"inputs (from {args.sweep.name}, {inputs['records']} records): "
          f"{inputs['cpu_rewrap_ms']} ms CPU per rewrap, {inputs['cpu_refresh_ms']} ms per "
          f"refresh, plan {inputs['plan_per_s']} records/s; {args.cores:g} vCPU per instance, "
          f"token endpoint {args.entra_ms:g} ms, concurrency {inputs['concurrency']}")
    print(f"| instances | full rewrap of {USERS:,} (min) | bound by | Key Vault GETs/s "
          f"| a refresh run: {rows[0].refreshes_per_run:,} due (min) | bound by "
          "| to the largest tenant's token endpoint (req/s, at most) |")
    print("| ---: | ---: | --- | ---: | ---: | --- | ---: |")
    for r in rows:
        print(f"| {r.instances} | {r.rewrap_minutes} | {r.rewrap_bound} | "
              f"{r.rewrap_keyvault_gets_per_s} | {r.refresh_run_minutes} | {r.refresh_bound} | "
              f"{r.refresh_largest_tenant_per_s} |")
    args.out.write_text(json.dumps({"inputs": {**inputs, "entra_ms": args.entra_ms,
                                               "cores": args.cores},
                                    "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
