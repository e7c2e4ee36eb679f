"""``python -m tokenvault records ...``: stored records, metadata only."""

from __future__ import annotations

import argparse
from typing import Any

from ..model import RecordKey
from .context import Context

__all__ = ["records_list", "records_show", "records_forget", "records_purge"]


def records_list(ctx: Context, args: argparse.Namespace) -> dict:
    listed: list[dict[str, Any]] = []
    continuation: str | None = None
    while len(listed) < args.limit:
        page = ctx.records.scan(args.tenant, page_size=min(1000, args.limit),
                                continuation=continuation)
        listed += [{"tenant_id": s.tenant_id, "user_id": s.user_id, "status": s.status.value,
                    "key_version": s.key_version, "refreshed_at": s.refreshed_at}
                   for s in page]
        continuation = page.continuation
        if continuation is None:
            break
    return {"records": listed[:args.limit], "truncated": len(listed) > args.limit
            or (continuation is not None and len(listed) >= args.limit)}


def records_show(ctx: Context, args: argparse.Namespace) -> dict:
    record = ctx.records.get(RecordKey(args.tenant, args.user))
    return {**record.metadata(), "failure_count": record.failure_count,
            "last_error": record.last_error}


def records_forget(ctx: Context, args: argparse.Namespace) -> dict:
    ctx.records.delete(RecordKey(args.tenant, args.user))
    return {"tenant_id": args.tenant, "user_id": args.user, "forgotten": True}


def records_purge(ctx: Context, args: argparse.Namespace) -> dict:
    return {"tenant_id": args.tenant, "records_deleted": ctx.records.delete_tenant(args.tenant)}
