"""The sweep's worker: one batch message at a time, rewraps together, refreshes a few at a
time (see ``tokenvault.sweep`` for the whole)."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .errors import UpstreamUnavailable, VaultError
from .maintenance import Outcome
from .model import TokenRecord
from .observe import SWEEP_RECORDS, NullObserver, Observer
from .ports import Clock, Queue
from .settings import DEFAULT_SWEEP_CONCURRENCY
from .sweep_messages import due_before, log_summary, parse_batch
from .vault import Vault

__all__ = ["Worker", "BatchSummary", "CONCURRENCY"]

log = logging.getLogger("tokenvault.sweep")

#: Records of one tenant maintained at once per process (TOKENVAULT_SWEEP_CONCURRENCY).
CONCURRENCY = DEFAULT_SWEEP_CONCURRENCY


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


class Worker:
    """Works batch messages: ``Vault.sweep_batch`` reads the batch and writes its rewraps in
    transactions; the records left (refreshes) are maintained ``concurrency`` at a time.

    ``concurrency`` bounds the records of one tenant in flight in this process, across all
    the messages it works at once (the host hands it several), so one tenant's batches cannot
    draw the identity provider's throttling on that tenant by themselves.
    """

    def __init__(self, *, vault: Vault, queue: Queue, clock: Clock,
                 refresh_after: timedelta, concurrency: int = CONCURRENCY,
                 observer: Observer | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._vault, self._queue, self._clock = vault, queue, clock
        self._observer = observer or NullObserver()
        self._refresh_after = refresh_after
        self._concurrency = concurrency
        self._slots = _TenantSlots(concurrency)

    def work(self, message: dict, *, attempt: int = 1) -> BatchSummary:
        """Maintain every record of one batch message; reported as a span and per-outcome
        counts (``SWEEP_RECORDS``).

        :raises UpstreamUnavailable: the batch could not be read or written as a whole; the
            host delivers the message again (and poisons it after ``maxDequeueCount``).
        """
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
        now = self._clock.now()
        due = {user: due_before(user, now, self._refresh_after) for user in users}
        swept = self._vault.sweep_batch(tenant_id, due)
        summary.counts.update(swept.outcomes.values())
        for user_id, code in swept.failures.items():
            _record_failed(tenant_id, user_id, code)
        self._maintain_each(message, swept.pending, due, summary)
        summary.duration = time.monotonic() - started
        log_summary("sweep.batch", {**summary.as_log(), "attempt": attempt})
        return summary

    def _maintain_each(self, message: dict, records: list[TokenRecord],
                       due: dict[str, datetime], summary: BatchSummary) -> None:
        """``maintain`` each record, at most ``concurrency`` of the tenant at once. When a
        dependency throttles, no further record is started: those in flight finish, and the
        ones not started go back on the queue once, delayed by the Retry-After. Anything
        unexpected also stops new starts, and is raised once those in flight are done (the
        host delivers the whole message again)."""
        throttled: list[UpstreamUnavailable] = []
        stop = threading.Event()

        def one(record: TokenRecord) -> Outcome | None:
            with self._slots.hold(record.tenant_id):
                if stop.is_set():
                    return None  # not started: deferred
                try:
                    return self._vault.maintain(record.key, refresh_before=due[record.user_id],
                                                record=record)
                except UpstreamUnavailable as busy:
                    throttled.append(busy)
                    stop.set()
                    return Outcome.FAILED
                except VaultError as error:
                    # One bad record (say, a ciphertext that does not open) must not stop the rest.
                    _record_failed(record.tenant_id, record.user_id, error.code)
                    return Outcome.FAILED
                except BaseException:
                    stop.set()
                    raise

        if len(records) <= 1 or self._concurrency == 1:
            outcomes = [one(record) for record in records]
        else:
            # Each record runs in a copy of this invocation's context, so its log records and
            # spans carry the invocation's correlation id and parent span.
            with ThreadPoolExecutor(max_workers=min(self._concurrency, len(records)),
                                    thread_name_prefix="sweep") as pool:
                outcomes = list(pool.map(lambda r: contextvars.copy_context().run(one, r),
                                         records))
        summary.counts.update(o for o in outcomes if o is not None)
        rest = [r.user_id for r, o in zip(records, outcomes, strict=True) if o is None]
        if throttled:
            summary.retry_after = max(busy.retry_after for busy in throttled)
        if rest:
            self._queue.send({**message, "users": rest}, delay=summary.retry_after or 0)
            summary.deferred = len(rest)


class _TenantSlots:
    """At most ``size`` holders per tenant at once in this process; a tenant's entry lives
    only while someone holds or waits for it, so memory does not grow with tenants seen."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._slots: dict[str, list] = {}  # tenant → [semaphore, holders and waiters]

    @contextmanager
    def hold(self, tenant_id: str) -> Iterator[None]:
        with self._lock:
            entry = self._slots.setdefault(tenant_id, [threading.BoundedSemaphore(self._size), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._slots[tenant_id]


def _record_failed(tenant_id: str, user_id: str, code: str) -> None:
    log.error("sweep.record_failed", extra={"tenant_id": tenant_id, "user_id": user_id,
                                            "code": code})
