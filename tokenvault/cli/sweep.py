"""``python -m tokenvault sweep``: the whole sweep in this process, through an in-memory queue."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from ..adapters.memory_queue import MemoryQueue
from ..sweep import Planner, PlanSummary, Worker
from .context import Context
from .output import Progress

__all__ = ["sweep", "run_in_process"]


def sweep(ctx: Context, args: argparse.Namespace) -> dict:
    from ..bootstrap import build_sweep

    app = ctx.app()
    queue = MemoryQueue()
    # In-process there is no function timeout to stay within: plan in one go.
    planner, worker = build_sweep(vault=app.vault, records=app.records, keys=app.keys,
                                  queue=queue, clock=app.clock,
                                  refresh_after=app.settings.refresh_after,
                                  allowed_tenants=app.settings.allowed_tenants,
                                  time_budget=timedelta(days=1),
                                  concurrency=app.settings.sweep_concurrency)
    if args.dry_run:
        plan = planner.plan(tenant_id=args.tenant)
        return {"dry_run": True, **plan.as_log()}
    with Progress(ctx.err, 0, "sweeping") as progress:
        plan, outcomes = run_in_process(planner, worker, queue, tenant_id=args.tenant,
                                        progress=progress.update)
    return {**plan.as_log(), "outcomes": {o.value: n for o, n in sorted(outcomes.items())}}


def run_in_process(planner: Planner, worker: Worker, messages: "MemoryQueue", *,
                   tenant_id: str | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> tuple[PlanSummary, Counter]:
    """Plan and work a whole sweep in this process (the CLI and local runs).

    ``planner`` and ``worker`` must send to ``messages``. A batch deferred by throttling is
    worked again after its delay, as the queue would deliver it.
    """
    plan = planner.plan(tenant_id=tenant_id)
    totals: Counter = Counter()
    done = 0
    while messages.items:
        message, delay = messages.items.pop(0)
        if delay:
            sleep(delay)
        if message["kind"] == "plan":
            more = planner.plan(run=message["run"], tenant_id=message.get("tenant_id"),
                                continuation=message["continuation"])
            plan.planned += more.planned
            continue
        batch = worker.work(message)
        totals.update(batch.counts)
        done += len(message["users"]) - batch.deferred
        if progress:
            progress(done, plan.planned)
    return plan, totals
