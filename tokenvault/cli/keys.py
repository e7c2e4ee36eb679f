"""``python -m tokenvault keys ...``: the tenant key lifecycle."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime, timezone

from .context import Context
from .output import Progress

__all__ = ["keys_create", "keys_rotate", "keys_list", "keys_revoke", "keys_recover", "ENTRA_NOTE"]

ENTRA_NOTE = ("This shreds TokenVault's copy only: refresh tokens already issued stay valid at "
              "Entra ID until the users' sessions are revoked there (Microsoft Graph "
              "revokeSignInSessions) or the tenant's consent to the app is removed.")


def keys_create(ctx: Context, args: argparse.Namespace) -> dict:
    info = ctx.key_admin.create(args.tenant)
    return {"tenant_id": args.tenant, "version": info.version, "created": info.created}


def keys_rotate(ctx: Context, args: argparse.Namespace) -> dict:
    tenants = ctx.key_admin.tenants() if args.all else [args.tenant]
    rotated = []
    with Progress(ctx.err, len(tenants), "rotating") as progress:
        for tenant in tenants:
            info = ctx.key_admin.rotate(tenant)
            rotated.append({"tenant_id": tenant, "version": info.version, "created": info.created})
            progress.advance()
    return {"rotated": rotated}


def keys_list(ctx: Context, args: argparse.Namespace) -> dict:
    tenants = [args.tenant] if args.tenant else ctx.key_admin.tenants()
    counts = ctx.records.count_by_key_version(args.tenant)
    listed = []
    for tenant in tenants:
        on_version: Counter = Counter(counts.get(tenant, {}))
        versions = [{"version": v.version, "created": v.created, "enabled": v.enabled,
                     "records": on_version.pop(v.version, 0)}
                    for v in ctx.key_admin.versions(tenant)]
        # Records on a version the key store no longer has cannot be decrypted: say so.
        versions += [{"version": v, "created": None, "enabled": False, "records": n,
                      "missing": True} for v, n in sorted(on_version.items())]
        listed.append({"tenant_id": tenant, "versions": versions})
    return {"tenants": listed}


def keys_revoke(ctx: Context, args: argparse.Namespace) -> dict:
    admin = ctx.key_admin
    versions = [v.version for v in admin.versions(args.tenant)] \
        if not admin.is_deleted(args.tenant) else []
    deleted = False
    if versions:
        admin.revoke(args.tenant)
        deleted = True
    attestation = {"tenant_id": args.tenant, "at": _now(), "secret": f"tenant-{args.tenant}",
                   "secret_deleted": deleted or admin.is_deleted(args.tenant),
                   "key_versions": versions, "secret_purged": False, "records_deleted": 0,
                   "reversible": True, "entra": ENTRA_NOTE}
    if args.purge:
        admin.purge(args.tenant)
        attestation.update(secret_purged=True, reversible=False,
                           records_deleted=ctx.records.delete_tenant(args.tenant))
    return {"attestation": attestation}


def keys_recover(ctx: Context, args: argparse.Namespace) -> dict:
    ctx.key_admin.recover(args.tenant)
    return {"tenant_id": args.tenant, "recovered": True,
            "versions": [v.version for v in ctx.key_admin.versions(args.tenant)]}


def _now() -> datetime:
    return datetime.now(timezone.utc)
