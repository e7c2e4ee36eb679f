"""What the app tells about itself — spans, metrics, the correlation id — as a port of the core.

The core (``vault``, ``sweep``) and the entry points report through an ``Observer``;
``NullObserver`` does nothing (no telemetry configured) and
``tokenvault.adapters.telemetry.OpenTelemetryObserver`` carries it to OpenTelemetry. The core
stays free of ``opentelemetry`` imports (docs/design.md "Layers"), and ``import function_app``
does not pay for them.

The metrics are a closed catalog (``METRICS``): each instrument declares the dimensions it may
carry. Dimensions are low-cardinality by rule: route, problem code, outcome, operation — and
``tenant_id``, the only id allowed, on the sweep's and the inventory's instruments only, where
every tenant comes from a stored record (so from a tenant that has a key), never from what an
unauthenticated caller sent. ``check`` refuses any other dimension, so a call site cannot add
one by accident.

The correlation id of the current function invocation lives in a context variable
(``correlated``); ``CorrelationFilter`` puts it on every log record, the OpenTelemetry adapter
on every span.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .errors import VaultError
from .model import TokenGrant
from .ports import IdentityProvider
from .sensitive import Sensitive

__all__ = ["Observer", "NullObserver", "Metric", "METRICS", "check", "correlated",
           "current_correlation_id", "CorrelationFilter", "ObservedIdentityProvider",
           "outcome_of", "REQUESTS", "REQUEST_DURATION", "REDEEMS", "IDP_DURATION",
           "KEY_VAULT_CALLS", "SWEEP_RECORDS", "SWEEP_POISONED", "POISON_QUEUE",
           "KEY_INVENTORY", "KEY_AGE", "CORRELATION_ATTRIBUTE"]

#: The span attribute (and log record attribute, ``correlation_id``) naming the invocation.
CORRELATION_ATTRIBUTE = "tokenvault.correlation_id"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter", "histogram" or "gauge"
    unit: str
    description: str
    dimensions: frozenset[str]


def _metric(name: str, kind: str, unit: str, description: str, *dimensions: str) -> Metric:
    return Metric(name, kind, unit, description, frozenset(dimensions))


REQUESTS = _metric("tokenvault.requests", "counter", "{request}",
                   "HTTP requests answered, by route and problem code (ok when none)",
                   "route", "code")
REQUEST_DURATION = _metric("tokenvault.request.duration", "histogram", "s",
                           "Time to answer an HTTP request, by route and problem code",
                           "route", "code")
REDEEMS = _metric("tokenvault.redeems", "counter", "{redeem}",
                  "Successful redeems, by where the access token came from: cache (process "
                  "memory) or identity_provider (a refresh at Entra ID)", "source")
IDP_DURATION = _metric("tokenvault.identity_provider.duration", "histogram", "s",
                       "Identity-provider calls (OBO, refresh) and their time, by operation "
                       "and outcome (ok or the problem code)", "operation", "outcome")
KEY_VAULT_CALLS = _metric("tokenvault.key_vault.calls", "counter", "{call}",
                          "Key Vault reads (cache misses), by operation and outcome",
                          "operation", "outcome")
SWEEP_RECORDS = _metric("tokenvault.sweep.records", "counter", "{record}",
                        "Sweep records by outcome: planned, then what the worker did "
                        "(rewrapped, refreshed, restored, reauth_required, revoked, failed, "
                        "skipped, tenant_not_allowed)", "outcome", "tenant_id")
SWEEP_POISONED = _metric("tokenvault.sweep.poisoned", "counter", "{message}",
                         "Sweep messages that failed their last attempt: the host moves them "
                         "to the poison queue", "kind")
POISON_QUEUE = _metric("tokenvault.sweep.poison_queue", "gauge", "{message}",
                       "Messages in the poison queue, as the last plan counted them")
KEY_INVENTORY = _metric("tokenvault.keys.records", "gauge", "{record}",
                        "Records per tenant on its latest key version, on a superseded one, "
                        "or on one the key store no longer has (the last full plan's count)",
                        "tenant_id", "key_version")
KEY_AGE = _metric("tokenvault.keys.oldest_in_use_age", "gauge", "d",
                  "Per tenant, the age in days of the oldest key version that still holds "
                  "records (the last full plan's view)", "tenant_id")

METRICS: tuple[Metric, ...] = (REQUESTS, REQUEST_DURATION, REDEEMS, IDP_DURATION,
                               KEY_VAULT_CALLS, SWEEP_RECORDS, SWEEP_POISONED, POISON_QUEUE,
                               KEY_INVENTORY, KEY_AGE)


def check(metric: Metric, dimensions: Mapping[str, object]) -> None:
    """Refuse a dimension the metric does not declare (a programming error: tests catch it)."""
    extra = set(dimensions) - metric.dimensions
    if extra:
        raise ValueError(f"{metric.name} has no dimension {sorted(extra)}")


Dimensions = Mapping[str, str]


class Observer:
    """Where spans and measurements go. This base class drops everything (see NullObserver)."""

    #: whether anything is recorded (a caller may skip work done only for telemetry)
    enabled = False

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[dict[str, Any]]:
        """A span around the block, child of the current one. The block may add attributes to
        the dict it gets; they are set when it ends. Attributes are ids, codes and counts —
        never a secret. An exception leaving the block marks the span failed with its problem
        code (never its message)."""
        yield dict(attributes)

    def add(self, metric: Metric, value: int = 1, **dimensions: str) -> None:
        check(metric, dimensions)

    def record(self, metric: Metric, value: float, **dimensions: str) -> None:
        check(metric, dimensions)

    def observe(self, metric: Metric, values: Sequence[tuple[float, Dimensions]]) -> None:
        """Replace what a gauge reports from now on with ``values`` (value, dimensions)."""
        for _, dims in values:
            check(metric, dims)


class NullObserver(Observer):
    """No telemetry: nothing is recorded (dimensions are still checked)."""


def outcome_of(error: BaseException) -> str:
    """The problem code of ``error`` for a dimension or a span's status: never its message."""
    return error.code if isinstance(error, VaultError) else "internal"


# --- correlation ---------------------------------------------------------------------------

_correlation: ContextVar[str | None] = ContextVar("tokenvault_correlation_id", default=None)


def current_correlation_id() -> str | None:
    return _correlation.get()


@contextmanager
def correlated(correlation_id: str) -> Iterator[str]:
    """Make ``correlation_id`` the current invocation's for the block (this thread's context)."""
    token = _correlation.set(correlation_id)
    try:
        yield correlation_id
    finally:
        _correlation.reset(token)


class CorrelationFilter(logging.Filter):
    """Give every record the current correlation id (``correlation_id``) unless it has one.
    Installed on handlers, so it sees the records of every logger that reaches them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "correlation_id", None) is None:
            correlation_id = _correlation.get()
            if correlation_id is not None:
                record.correlation_id = correlation_id
        return True


# --- the identity provider, observed -------------------------------------------------------

class ObservedIdentityProvider(IdentityProvider):
    """An ``IdentityProvider`` whose every call is a span and a measurement of its time and
    outcome (``IDP_DURATION``). The tokens pass through untouched and are never looked at."""

    def __init__(self, inner: IdentityProvider, observer: Observer,
                 monotonic: Any = time.monotonic) -> None:
        self._inner, self._observer, self._monotonic = inner, observer, monotonic

    def on_behalf_of(self, tenant_id: str, assertion: Sensitive[str],
                     scopes: Sequence[str]) -> TokenGrant:
        return self._call("on_behalf_of", lambda: self._inner.on_behalf_of(tenant_id, assertion,
                                                                            scopes))

    def refresh(self, tenant_id: str, refresh_token: Sensitive[str],
                scopes: Sequence[str]) -> TokenGrant:
        return self._call("refresh", lambda: self._inner.refresh(tenant_id, refresh_token, scopes))

    def _call(self, operation: str, call: Any) -> TokenGrant:
        started, outcome = self._monotonic(), "ok"
        try:
            with self._observer.span(f"identity_provider.{operation}"):
                return call()
        except BaseException as error:
            outcome = outcome_of(error)
            raise
        finally:
            self._observer.record(IDP_DURATION, self._monotonic() - started,
                                  operation=operation, outcome=outcome)
