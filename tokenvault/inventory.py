"""The key-version inventory, read for health: per tenant, how many records are on the latest
key version, on a superseded one, or on one the key store no longer has — and how old the
oldest version still in use is.

The plan counts records per (tenant, key version) as it pages (``PlanSummary.inventory``);
``classify`` turns that count into these rows with the key store's help: one ``latest`` per
tenant and one ``get`` per version still in use that is not the latest. The Keys adapter caches
both, and the sweep's workers fetch the same versions to rewrap the records on them, so this
adds next to nothing to the reads of a run. Key version ids stay out of the result: they are
per-tenant ids, not dimensions (docs/design.md "Metrics").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .errors import TenantKeyInvalid, TenantNotOnboarded, TenantRevoked, UpstreamUnavailable
from .ports import Keys

__all__ = ["TenantInventory", "classify"]


@dataclass(frozen=True)
class TenantInventory:
    tenant_id: str
    latest: int = 0
    superseded: int = 0
    #: records on a version the store does not have (or on any version of a revoked tenant)
    missing: int = 0
    #: age in days of the oldest key version holding records; None when unknown
    oldest_age_days: float | None = None

    def counts(self) -> dict[str, int]:
        return {"latest": self.latest, "superseded": self.superseded, "missing": self.missing}


def classify(inventory: Mapping[str, Mapping[str, int]], keys: Keys,
             now: datetime) -> list[TenantInventory]:
    """One row per tenant of ``inventory`` (tenant → key version → records), sorted by tenant.

    A tenant whose key store cannot be read now (throttled) is left out rather than guessed.
    """
    rows = []
    for tenant_id, versions in sorted(inventory.items()):
        try:
            rows.append(_row(tenant_id, versions, keys, now))
        except UpstreamUnavailable:
            continue
    return rows


def _row(tenant_id: str, versions: Mapping[str, int], keys: Keys, now: datetime) -> TenantInventory:
    try:
        latest = keys.latest(tenant_id)
    except (TenantNotOnboarded, TenantRevoked, TenantKeyInvalid):
        return TenantInventory(tenant_id, missing=sum(versions.values()))
    counts = {"latest": 0, "superseded": 0, "missing": 0}
    oldest: datetime | None = None
    for version, records in versions.items():
        if not records:
            continue
        if version == latest.version:
            counts["latest"] += records
            created = latest.created
        else:
            try:
                created = keys.get(tenant_id, version).created
            except (TenantRevoked, TenantKeyInvalid):
                counts["missing"] += records
                continue
            counts["superseded"] += records
        if created is not None and (oldest is None or created < oldest):
            oldest = created
    age = None if oldest is None else round((now - oldest).total_seconds() / 86400, 3)
    return TenantInventory(tenant_id, oldest_age_days=age, **counts)
