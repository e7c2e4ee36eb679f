"""The sweep's worker as it was before issue 15, kept here (not in the product) so
``bench_sweep.py`` can measure the old path beside the new one in the same run.

One record after another: ``Vault.maintain`` reads the record (a point read), decides, and
writes it (one conditional replace), whether it needs a refresh at the identity provider or
only a rewrap; a throttle defers the rest of the batch. Messages were batches of 20 users.
"""

from __future__ import annotations

import time

from tokenvault.errors import UpstreamUnavailable, VaultError
from tokenvault.maintenance import Outcome
from tokenvault.model import RecordKey
from tokenvault.sweep import BatchSummary, due_before, parse_batch
from tokenvault.sweep_messages import log_summary

#: Users per batch message before issue 15.
OLD_BATCH_SIZE = 20


class SequentialWorker:
    def __init__(self, *, vault, queue, clock, refresh_after) -> None:
        self._vault, self._queue, self._clock = vault, queue, clock
        self._refresh_after = refresh_after

    def work(self, message: dict, *, attempt: int = 1) -> BatchSummary:
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
                summary.retry_after = busy.retry_after
                rest = users[index + 1:]
                if rest:
                    self._queue.send({**message, "users": rest}, delay=busy.retry_after)
                    summary.deferred = len(rest)
                break
            except VaultError:
                summary.counts[Outcome.FAILED] += 1
        summary.duration = time.monotonic() - started
        log_summary("sweep.batch", {**summary.as_log(), "attempt": attempt})
        return summary
