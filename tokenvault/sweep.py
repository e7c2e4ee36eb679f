"""The sweep: the timer plans, the queue works.

**Plan** pages through the records' projection (never the ciphertext), asks the key store for
each tenant's latest version once, and puts batches of record keys — one tenant per message —
on the queue. Past its time budget it hands the rest to itself as a continuation message
instead of running long.

**Work** takes one batch and runs ``Vault.maintain`` on each record, which re-reads it and
decides again: the plan's view may be minutes old. When a dependency throttles, the rest of
the batch is put back on the queue, delayed by the Retry-After it was given.

Both log one summary line (``sweep.plan {...}`` / ``sweep.batch {...}``: the name, then the
counts as JSON); the plan's carries the key-version inventory: per tenant, how many records
are on each key version.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .errors import BadRequest, TenantNotOnboarded, UpstreamUnavailable, VaultError
from .inventory import classify
from .maintenance import Outcome
from .model import RecordKey, RecordSummary, Status, is_valid_id
from .observe import (
    KEY_AGE,
    KEY_INVENTORY,
    POISON_QUEUE,
    SWEEP_POISONED,
    SWEEP_RECORDS,
    NullObserver,
    Observer,
    correlated,
)
from .ports import Clock, Keys, Queue, Records
from .vault import Vault

__all__ = ["Planner", "Worker", "SweepHandler", "PlanSummary", "BatchSummary", "due_before",
           "MESSAGE_VERSION"]

log = logging.getLogger("tokenvault.sweep")

MESSAGE_VERSION = 1
BATCH_SIZE = 20
PAGE_SIZE = 1000


def due_before(user_id: str, now: datetime, refresh_after: timedelta) -> datetime:
    """A record last refreshed before this moment is due.

    Each user gets a fixed offset within the last tenth of ``refresh_after``, so records
    stored together are not all refreshed in the same run (jitter), and the plan and the
    worker — which decide separately — agree on it.
    """
    spread = int(user_id[:8], 16) / 0xFFFFFFFF
    return now - refresh_after + refresh_after * 0.1 * spread


@dataclass
class PlanSummary:
    run: str
    planned: int = 0
    batches: int = 0
    scanned: int = 0
    skipped: int = 0
    continued: bool = False
    #: tenant → key version → number of records on it (the key-version inventory).
    inventory: dict[str, Counter] = field(default_factory=dict)
    revoked_tenants: set[str] = field(default_factory=set)
    #: tenants whose records were left alone: not in TOKENVAULT_ALLOWED_TENANTS.
    not_allowed_tenants: set[str] = field(default_factory=set)
    not_allowed: int = 0
    poisoned: int | None = None
    duration: float = 0.0

    def as_log(self) -> dict:
        return {"run": self.run, "planned": self.planned, "batches": self.batches,
                "scanned": self.scanned, "skipped": self.skipped, "continued": self.continued,
                "revoked_tenants": sorted(self.revoked_tenants),
                "not_allowed": self.not_allowed,
                "not_allowed_tenants": sorted(self.not_allowed_tenants), "poisoned": self.poisoned,
                "duration_s": round(self.duration, 3),
                "inventory": {t: dict(c) for t, c in sorted(self.inventory.items())}}


@dataclass
class BatchSummary:
    run: str
    tenant_id: str
    counts: Counter = field(default_factory=Counter)
    deferred: int = 0
    retry_after: int | None = None
    duration: float = 0.0

    def as_log(self) -> dict:
        outcomes = {o.value: self.counts.get(o, 0) for o in Outcome}
        return {"run": self.run, "tenant_id": self.tenant_id, **outcomes,
                "deferred": self.deferred, "retry_after": self.retry_after,
                "duration_s": round(self.duration, 3)}


class Planner:
    def __init__(self, *, records: Records, keys: Keys, queue: Queue, clock: Clock,
                 refresh_after: timedelta, time_budget: timedelta = timedelta(minutes=4),
                 allowed_tenants: frozenset[str] = frozenset(),
                 batch_size: int = BATCH_SIZE, page_size: int = PAGE_SIZE,
                 monotonic: Callable[[], float] = time.monotonic,
                 observer: Observer | None = None) -> None:
        self._records, self._keys, self._queue, self._clock = records, keys, queue, clock
        self._observer = observer or NullObserver()
        self._refresh_after = refresh_after
        self._allowed = allowed_tenants
        self._budget = time_budget.total_seconds()
        self._batch_size, self._page_size = batch_size, page_size
        self._monotonic = monotonic

    def plan(self, *, run: str | None = None, tenant_id: str | None = None,
             continuation: str | None = None,
             inventory: dict[str, dict[str, int]] | None = None) -> PlanSummary:
        """Plan one run (or continue one). Returns what it did; also logs it and reports it
        (a span, the planned count, and after a full run the key-version inventory)."""
        with self._observer.span("sweep.plan", continuation=continuation is not None) as span:
            summary = self._plan(run=run, tenant_id=tenant_id, continuation=continuation,
                                 inventory=inventory)
            span.update(run=summary.run, planned=summary.planned, scanned=summary.scanned,
                        continued=summary.continued)
        self._report(summary)
        return summary

    def _report(self, summary: PlanSummary) -> None:
        self._observer.add(SWEEP_RECORDS, summary.planned, outcome="planned")
        if summary.poisoned is not None:
            self._observer.observe(POISON_QUEUE, [(summary.poisoned, {})])
        if summary.continued or not self._observer.enabled:
            return  # the inventory is whole only at the end of a run
        try:
            rows = classify(summary.inventory, self._keys, self._clock.now())
        except VaultError as error:
            # Reporting must not fail a plan whose work is already on the queue.
            log.warning("sweep.inventory not reported", extra={"code": error.code})
            return
        self._observer.observe(KEY_INVENTORY, [
            (count, {"tenant_id": row.tenant_id, "key_version": state})
            for row in rows for state, count in row.counts().items()])
        self._observer.observe(KEY_AGE, [(row.oldest_age_days, {"tenant_id": row.tenant_id})
                                         for row in rows if row.oldest_age_days is not None])

    def _plan(self, *, run: str | None, tenant_id: str | None, continuation: str | None,
              inventory: dict[str, dict[str, int]] | None) -> PlanSummary:
        started = self._monotonic()
        summary = PlanSummary(run=run or uuid.uuid4().hex,
                              inventory={t: Counter(v) for t, v in (inventory or {}).items()})
        now = self._clock.now()
        latest: dict[str, str | None] = {}
        pending: dict[str, list[str]] = {}
        while True:
            page = self._records.scan(tenant_id, page_size=self._page_size,
                                      continuation=continuation)
            for item in page:
                summary.scanned += 1
                summary.inventory.setdefault(item.tenant_id, Counter())[item.key_version] += 1
                if self._allowed and item.tenant_id not in self._allowed:
                    # Not a tenant whose records this vault keeps: no key lookup, no work.
                    summary.not_allowed += 1
                    summary.not_allowed_tenants.add(item.tenant_id)
                    continue
                if item.tenant_id not in latest:
                    latest[item.tenant_id] = self._latest_version(item.tenant_id, summary)
                if not self._needs_work(item, latest[item.tenant_id], now):
                    summary.skipped += 1
                    continue
                batch = pending.setdefault(item.tenant_id, [])
                batch.append(item.user_id)
                if len(batch) >= self._batch_size:
                    self._send_batch(summary, item.tenant_id, pending.pop(item.tenant_id))
            continuation = page.continuation
            if continuation is None:
                break
            if self._monotonic() - started > self._budget:
                self._send({"kind": "plan", "run": summary.run, "tenant_id": tenant_id,
                            "continuation": continuation,
                            "inventory": {t: dict(c) for t, c in summary.inventory.items()}})
                summary.continued = True
                break
        for tenant, users in pending.items():
            self._send_batch(summary, tenant, users)
        summary.poisoned = self._poisoned()
        summary.duration = self._monotonic() - started
        _summary("sweep.plan", summary.as_log())
        return summary

    def _latest_version(self, tenant_id: str, summary: PlanSummary) -> str | None:
        try:
            return self._keys.latest(tenant_id).version
        except TenantNotOnboarded:
            summary.revoked_tenants.add(tenant_id)
            return None

    def _needs_work(self, item: RecordSummary, latest: str | None, now: datetime) -> bool:
        if latest is None:  # the tenant's key is gone: its records are to be marked revoked
            return item.status is Status.ACTIVE
        if item.status is Status.REVOKED:  # the key is back
            return True
        if item.status is not Status.ACTIVE:
            return False
        return (item.key_version != latest
                or item.refreshed_at < due_before(item.user_id, now, self._refresh_after))

    def _send_batch(self, summary: PlanSummary, tenant_id: str, users: list[str]) -> None:
        self._send({"kind": "batch", "run": summary.run, "tenant_id": tenant_id, "users": users})
        summary.planned += len(users)
        summary.batches += 1

    def _send(self, message: dict) -> None:
        self._queue.send({"v": MESSAGE_VERSION, **message})

    def _poisoned(self) -> int | None:
        try:
            return self._queue.poisoned()
        except VaultError:
            return None  # the count is informative; failing to get it must not fail the plan


class Worker:
    def __init__(self, *, vault: Vault, queue: Queue, clock: Clock,
                 refresh_after: timedelta, observer: Observer | None = None) -> None:
        self._vault, self._queue, self._clock = vault, queue, clock
        self._refresh_after = refresh_after
        self._observer = observer or NullObserver()

    def work(self, message: dict, *, attempt: int = 1) -> BatchSummary:
        """Maintain every record of one batch message; reported as a span and per-outcome
        counts."""
        with self._observer.span("sweep.batch", attempt=attempt) as span:
            summary = self._work(message, attempt=attempt)
            span.update(run=summary.run, tenant_id=summary.tenant_id, deferred=summary.deferred,
                        **{o.value: n for o, n in summary.counts.items()})
        for outcome, count in summary.counts.items():
            self._observer.add(SWEEP_RECORDS, count, outcome=outcome.value,
                               tenant_id=summary.tenant_id)
        return summary

    def _work(self, message: dict, *, attempt: int) -> BatchSummary:
        started = time.monotonic()
        tenant_id, users = parse_batch(message)
        summary = BatchSummary(run=str(message.get("run", "")), tenant_id=tenant_id)
        for index, user_id in enumerate(users):
            key = RecordKey(tenant_id, user_id)
            threshold = due_before(user_id, self._clock.now(), self._refresh_after)
            try:
                summary.counts[self._vault.maintain(key, refresh_before=threshold)] += 1
            except UpstreamUnavailable as busy:
                summary.counts[Outcome.FAILED] += 1
                self._defer(message, users[index + 1:], busy.retry_after, summary)
                break
            except VaultError as error:
                # One bad record (say, a ciphertext that does not open) must not stop the rest.
                summary.counts[Outcome.FAILED] += 1
                log.error("sweep.record_failed", extra={"tenant_id": tenant_id,
                                                        "user_id": user_id, "code": error.code})
        summary.duration = time.monotonic() - started
        _summary("sweep.batch", {**summary.as_log(), "attempt": attempt})
        return summary

    def _defer(self, message: dict, rest: list[str], retry_after: int,
               summary: BatchSummary) -> None:
        summary.retry_after = retry_after
        if rest:
            self._queue.send({**message, "users": rest}, delay=retry_after)
            summary.deferred = len(rest)


def _summary(event: str, fields: dict) -> None:
    """One summary line: the fields in the message itself, because the Functions worker ships a
    record's message text to Application Insights and drops its extra attributes; and as the
    record's ``sweep`` attribute for local handlers and tests."""
    log.info("%s %s", event, json.dumps(fields, sort_keys=True, separators=(",", ":")),
             extra={"sweep": fields, "event": event})


class SweepHandler:
    """What the timer and the queue functions call: one entry each."""

    def __init__(self, *, planner: Planner, worker: Worker, max_dequeue: int = 5,
                 observer: Observer | None = None) -> None:
        self._planner, self._worker = planner, worker
        self._max_dequeue = max_dequeue
        self._observer = observer or NullObserver()

    def plan_run(self, *, past_due: bool = False) -> PlanSummary:
        with correlated(uuid.uuid4().hex):  # the invocation's id, on its spans and logs
            if past_due:
                log.info("sweep.plan past due: running now")
            return self._planner.plan()

    def handle(self, body: bytes | str, *, dequeue_count: int = 1) -> None:
        """Work one queue message (already decoded from base64 by the host).

        A message that raises is retried by the host and moved to the poison queue after
        ``maxDequeueCount`` attempts (counted here, as ``SWEEP_POISONED``, when its last
        attempt fails); the plan's summary reports the poison queue's length.
        """
        with correlated(uuid.uuid4().hex):
            try:
                self._handle(body, dequeue_count=dequeue_count)
            except Exception as error:
                if dequeue_count >= self._max_dequeue:
                    kind = "malformed" if isinstance(error, BadRequest) else "failed"
                    self._observer.add(SWEEP_POISONED, kind=kind)
                raise

    def _handle(self, body: bytes | str, *, dequeue_count: int) -> None:
        message = decode_message(body)
        if dequeue_count >= self._max_dequeue:
            log.warning("sweep.last_attempt", extra={"sweep": {
                "run": message.get("run"), "kind": message.get("kind"),
                "attempt": dequeue_count}})
        if message.get("kind") == "plan":
            self._planner.plan(run=str(message.get("run") or ""),
                               tenant_id=message.get("tenant_id"),
                               continuation=message.get("continuation"),
                               inventory=message.get("inventory"))
        else:
            self._worker.work(message, attempt=dequeue_count)


def decode_message(body: bytes | str) -> dict:
    """A sweep message as JSON; anything else is BadRequest (and ends in the poison queue)."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("malformed sweep message") from None
    if not isinstance(message, dict) or message.get("v") != MESSAGE_VERSION \
            or message.get("kind") not in ("plan", "batch"):
        raise BadRequest("malformed sweep message")
    if message["kind"] == "plan" and not isinstance(message.get("continuation"), str):
        raise BadRequest("malformed sweep message")
    tenant = message.get("tenant_id")
    if tenant is not None and not is_valid_id(tenant):
        raise BadRequest("malformed sweep message")
    return message


def parse_batch(message: dict) -> tuple[str, list[str]]:
    """The tenant and users of a batch message; anything malformed is BadRequest."""
    tenant_id, users = message.get("tenant_id"), message.get("users")
    if not is_valid_id(tenant_id) or not isinstance(users, list):
        raise BadRequest("malformed sweep batch message")
    if not all(is_valid_id(u) for u in users):
        raise BadRequest("malformed sweep batch message")
    return tenant_id, users
