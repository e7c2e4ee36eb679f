"""The sweep: the timer plans, the queue works.

**Plan** pages through the records' projection (never the ciphertext), asks the key store for
each tenant's latest version once, and puts batches of record keys — one tenant per message,
close together in row-key order — on the queue. Past its time budget it hands the rest to
itself as a continuation message instead of running long. A tenant whose key cannot be read
(malformed, refused, unreachable) is skipped and named in the plan's summary; the others are
planned as usual.

**Work** takes one batch: ``Vault.sweep_batch`` reads it with one query and writes the records
that need only a rewrap in conditional transactions; the rest (refreshes above all) are
maintained a few at a time (``concurrency``), each re-read and decided again by the vault —
the plan's view may be minutes old. When a dependency throttles, nothing more is started and
the records not started are put back on the queue, delayed by the Retry-After.

Every message stays small whatever the number of tenants or records: a batch names at most
``BATCH_SIZE`` users, a continuation only where the scan stopped. Each part of a plan logs one
summary line (``sweep.plan {...}``) and the key-version inventory of the tenants it scanned in
lines of their own (``sweep.inventory {...}``, at most ``INVENTORY_LINE`` counts each); a run's
inventory is the sum of its inventory lines. Each batch logs ``sweep.batch {...}``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .errors import BadRequest, TenantNotOnboarded, VaultError
from .inventory import classify
from .model import RecordSummary, Status
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
from .sweep_messages import (
    BATCH_SIZE,
    MESSAGE_VERSION,
    decode_message,
    due_before,
    log_summary,
    parse_batch,
)
from .sweep_work import BatchSummary, Worker

__all__ = ["Planner", "Worker", "SweepHandler", "PlanSummary", "BatchSummary", "due_before",
           "decode_message", "parse_batch", "MESSAGE_VERSION", "BATCH_SIZE"]

log = logging.getLogger("tokenvault.sweep")

PAGE_SIZE = 1000
#: (tenant, key version, count) entries per ``sweep.inventory`` line: ~16 KB of text, well
#: within what Application Insights keeps of a trace message (32 KB).
INVENTORY_LINE = 200
#: Tenants named in a plan summary's ``tenants_failed`` (the count is always complete).
NAMED_FAILURES = 50


@dataclass
class PlanSummary:
    run: str
    planned: int = 0
    batches: int = 0
    scanned: int = 0
    skipped: int = 0
    continued: bool = False
    #: tenants this part of the plan scanned.
    tenants: int = 0
    revoked_tenants: set[str] = field(default_factory=set)
    #: tenant → error code, for tenants skipped because their key could not be read.
    tenants_failed: dict[str, str] = field(default_factory=dict)
    #: records of those tenants (neither planned nor counted as skipped).
    records_of_failed_tenants: int = 0
    #: ``sweep.inventory`` lines logged.
    inventory_lines: int = 0
    #: tenants whose records were left alone: not in TOKENVAULT_ALLOWED_TENANTS.
    not_allowed_tenants: set[str] = field(default_factory=set)
    #: records of those tenants (neither planned nor counted as skipped).
    not_allowed: int = 0
    #: tenant → key version → records, for the tenants this part scanned whole (not a tenant cut
    #: by a continuation): the inventory gauges' source. Not logged (the inventory lines are).
    whole_tenants: dict[str, Counter] = field(default_factory=dict)
    poisoned: int | None = None
    duration: float = 0.0

    def as_log(self) -> dict:
        named = dict(sorted(self.tenants_failed.items())[:NAMED_FAILURES])
        return {"run": self.run, "planned": self.planned, "batches": self.batches,
                "scanned": self.scanned, "skipped": self.skipped, "continued": self.continued,
                "tenants": self.tenants, "revoked_tenants": sorted(self.revoked_tenants),
                "tenants_failed": named, "tenants_failed_count": len(self.tenants_failed),
                "records_of_failed_tenants": self.records_of_failed_tenants,
                "not_allowed": self.not_allowed,
                "not_allowed_tenants": sorted(self.not_allowed_tenants)[:NAMED_FAILURES],
                "not_allowed_tenants_count": len(self.not_allowed_tenants),
                "inventory_lines": self.inventory_lines, "poisoned": self.poisoned,
                "duration_s": round(self.duration, 3)}


class _Tenant:
    """What the plan holds of the tenant it is scanning. Records come ordered by tenant, so
    this is one tenant at a time and the plan's memory does not grow with tenants."""

    __slots__ = ("tenant_id", "latest", "failed", "allowed", "versions", "batch")

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.latest: str | None = None  # None: the tenant has no key (its records get revoked)
        self.failed = False  # its key could not be read: nothing of it is planned
        self.allowed = True  # False: not a tenant this vault keeps; nothing of it is planned
        self.versions: Counter = Counter()
        self.batch: list[str] = []


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
             continuation: str | None = None) -> PlanSummary:
        """Plan one run (or continue one). Returns what it did; also logs it and reports it
        (a span, the planned count, the poison queue, the key-version inventory gauges)."""
        with self._observer.span("sweep.plan", continuation=continuation is not None) as span:
            summary = self._plan(run=run, tenant_id=tenant_id, continuation=continuation)
            span.update(run=summary.run, planned=summary.planned, scanned=summary.scanned,
                        continued=summary.continued)
        self._report(summary)
        return summary

    def _report(self, summary: PlanSummary) -> None:
        self._observer.add(SWEEP_RECORDS, summary.planned, outcome="planned")
        if summary.poisoned is not None:
            self._observer.observe(POISON_QUEUE, [(summary.poisoned, {})])
        if not self._observer.enabled or not summary.whole_tenants:
            return
        try:
            rows = classify(summary.whole_tenants, self._keys, self._clock.now())
        except VaultError as error:
            # Reporting must not fail a plan whose work is already on the queue.
            log.warning("sweep.inventory not reported", extra={"code": error.code})
            return
        # Each part of a plan reports the tenants it scanned whole; Application Insights keeps
        # the latest value per tenant (the workbook's arg_max), whichever instance sent it.
        self._observer.observe(KEY_INVENTORY, [
            (count, {"tenant_id": row.tenant_id, "key_version": state})
            for row in rows for state, count in row.counts().items()])
        self._observer.observe(KEY_AGE, [(row.oldest_age_days, {"tenant_id": row.tenant_id})
                                         for row in rows if row.oldest_age_days is not None])

    def _plan(self, *, run: str | None, tenant_id: str | None,
              continuation: str | None) -> PlanSummary:
        started = self._monotonic()
        resumed = continuation is not None
        summary = PlanSummary(run=run or uuid.uuid4().hex)
        now = self._clock.now()
        current: _Tenant | None = None
        inventory: list[list] = []  # [tenant, key version, records] not yet logged
        cut: str | None = None  # the tenant a continuation cut before this part began
        while True:
            page = self._records.scan(tenant_id, page_size=self._page_size,
                                      continuation=continuation)
            for item in page:
                summary.scanned += 1
                if current is None or item.tenant_id != current.tenant_id:
                    self._finish(current, summary, inventory,
                                 whole=current is not None and current.tenant_id != cut)
                    current = self._start(item.tenant_id, summary)
                    if resumed and summary.scanned == 1:
                        cut = item.tenant_id
                current.versions[item.key_version] += 1
                if not current.allowed:
                    summary.not_allowed += 1
                elif current.failed:
                    summary.records_of_failed_tenants += 1
                elif not self._needs_work(item, current.latest, now):
                    summary.skipped += 1
                else:
                    self._add(current, item.user_id, summary)
            continuation = page.continuation
            if continuation is None:
                break
            if self._monotonic() - started > self._budget:
                self._send({"kind": "plan", "run": summary.run, "tenant_id": tenant_id,
                            "continuation": continuation})
                summary.continued = True
                break
        self._finish(current, summary, inventory, whole=current is not None
                     and not summary.continued and current.tenant_id != cut)
        self._log_inventory(summary, inventory)
        summary.poisoned = self._poisoned()
        summary.duration = self._monotonic() - started
        log_summary("sweep.plan", summary.as_log())
        return summary

    def _start(self, tenant_id: str, summary: PlanSummary) -> _Tenant:
        tenant = _Tenant(tenant_id)
        summary.tenants += 1
        if self._allowed and tenant_id not in self._allowed:
            # Not a tenant whose records this vault keeps: no key lookup, no work.
            tenant.allowed = False
            summary.not_allowed_tenants.add(tenant_id)
            return tenant
        try:
            tenant.latest = self._keys.latest(tenant_id).version
        except TenantNotOnboarded:
            summary.revoked_tenants.add(tenant_id)
        except VaultError as error:
            # A malformed, refused or unreachable key is this tenant's problem alone.
            tenant.failed = True
            summary.tenants_failed[tenant_id] = error.code
            log.warning("sweep.tenant_skipped", extra={"tenant_id": tenant_id, "code": error.code})
        return tenant

    def _add(self, tenant: _Tenant, user_id: str, summary: PlanSummary) -> None:
        tenant.batch.append(user_id)
        if len(tenant.batch) >= self._batch_size:
            self._send_batch(summary, tenant)

    def _finish(self, tenant: _Tenant | None, summary: PlanSummary, inventory: list, *,
                whole: bool) -> None:
        """Done with ``tenant``: send its last batch, log its inventory. ``whole``: this part
        of the plan scanned all of its records (no continuation cut it)."""
        if tenant is None:
            return
        if tenant.batch:
            self._send_batch(summary, tenant)
        if whole and tenant.allowed:
            summary.whole_tenants[tenant.tenant_id] = tenant.versions
        inventory.extend([tenant.tenant_id, version, count]
                         for version, count in sorted(tenant.versions.items()))
        self._log_inventory(summary, inventory, whole_lines_only=True)

    def _log_inventory(self, summary: PlanSummary, inventory: list, *,
                       whole_lines_only: bool = False) -> None:
        while len(inventory) >= (INVENTORY_LINE if whole_lines_only else 1):
            line, inventory[:] = inventory[:INVENTORY_LINE], inventory[INVENTORY_LINE:]
            summary.inventory_lines += 1
            log_summary("sweep.inventory", {"run": summary.run, "counts": line})

    def _needs_work(self, item: RecordSummary, latest: str | None, now: datetime) -> bool:
        if latest is None:  # the tenant's key is gone: its records are to be marked revoked
            return item.status is Status.ACTIVE
        if item.status is Status.REVOKED:  # the key is back
            return True
        if item.status is not Status.ACTIVE:
            return False
        return (item.key_version != latest
                or item.refreshed_at < due_before(item.user_id, now, self._refresh_after))

    def _send_batch(self, summary: PlanSummary, tenant: _Tenant) -> None:
        users, tenant.batch = tenant.batch, []
        self._send({"kind": "batch", "run": summary.run, "tenant_id": tenant.tenant_id,
                    "users": users})
        summary.planned += len(users)
        summary.batches += 1

    def _send(self, message: dict) -> None:
        self._queue.send({"v": MESSAGE_VERSION, **message})

    def _poisoned(self) -> int | None:
        try:
            return self._queue.poisoned()
        except VaultError:
            return None  # the count is informative; failing to get it must not fail the plan


class SweepHandler:
    """What the timer and the queue functions call: one entry each. ``queue``: where a
    message that can never be worked is poisoned (None: it raises, and the host retries it).
    Each invocation gets a correlation id of its own, on its spans and log records."""

    def __init__(self, *, planner: Planner, worker: Worker, queue: Queue | None = None,
                 max_dequeue: int = 5, observer: Observer | None = None) -> None:
        self._planner, self._worker, self._queue = planner, worker, queue
        self._max_dequeue = max_dequeue
        self._observer = observer or NullObserver()

    def plan_run(self, *, past_due: bool = False) -> PlanSummary:
        with correlated(uuid.uuid4().hex):
            if past_due:
                log.info("sweep.plan past due: running now")
            return self._planner.plan()

    def handle(self, body: bytes | str, *, dequeue_count: int = 1) -> None:
        """Work one queue message (already decoded from base64 by the host).

        A message that can never be worked — not JSON, not a message of ours, ids that are
        not GUIDs, a continuation this service did not issue (``BadRequest``) — is moved to the
        poison queue at once: retrying cannot mend it. Any other failure raises; the host
        retries the message and moves it to the poison queue after ``maxDequeueCount``
        attempts. Either way the message poisoned is counted (``SWEEP_POISONED``); the plan's
        summary reports the poison queue's length.
        """
        with correlated(uuid.uuid4().hex):
            try:
                self._handle(body, dequeue_count=dequeue_count)
            except BadRequest:
                if self._queue is None:
                    if dequeue_count >= self._max_dequeue:
                        self._observer.add(SWEEP_POISONED, kind="malformed")
                    raise
                raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
                self._queue.poison(raw)
                self._observer.add(SWEEP_POISONED, kind="malformed")
                log.error("sweep.message_poisoned", extra={
                    "code": BadRequest.code,
                    "sweep": {"attempt": dequeue_count, "bytes": len(raw)}})
            except Exception:
                if dequeue_count >= self._max_dequeue:
                    self._observer.add(SWEEP_POISONED, kind="failed")
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
                               continuation=message.get("continuation"))
        else:
            self._worker.work(message, attempt=dequeue_count)
