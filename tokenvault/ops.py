"""The ops CLI, ``python -m tokenvault``: key lifecycle, records, and the sweep.

    python -m tokenvault keys create --tenant T
    python -m tokenvault keys rotate (--tenant T | --all)
    python -m tokenvault keys list [--tenant T]
    python -m tokenvault keys revoke --tenant T [--purge --yes]
    python -m tokenvault keys recover --tenant T
    python -m tokenvault records list [--tenant T] [--limit N]
    python -m tokenvault records show|forget --tenant T --user U
    python -m tokenvault records purge --tenant T --yes
    python -m tokenvault sweep [--tenant T] [--dry-run]

Every command takes ``--json`` for scripts. Exit codes: 0 done, 1 failed (the error's code and
safe message on stderr), 2 usage. It works on Key Vault (``TOKENVAULT_KEY_VAULT_URL``, with
``DefaultAzureCredential``: the pipeline's identity needs Key Vault Secrets Officer) or on the
local keyring (``TOKENVAULT_LOCAL_KEYRING``), and on the records' table, through the same
interfaces the app uses. Only ``sweep`` needs the app's own settings (it refreshes tokens in
the app's name); the other commands need only the key and record stores.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import IO, Any, Callable

from .errors import BadRequest, VaultError
from .model import RecordKey, valid_id
from .ops_output import Progress, as_json, as_text

__all__ = ["main", "Context", "ENTRA_NOTE"]

ENTRA_NOTE = ("This shreds TokenVault's copy only: refresh tokens already issued stay valid at "
              "Entra ID until the users' sessions are revoked there (Microsoft Graph "
              "revokeSignInSessions) or the tenant's consent to the app is removed.")


class Context:
    """What the commands work on, built from the environment on first use. Tests pass their
    own adapters (the Key Vault fake's client, Azurite) instead."""

    def __init__(self, *, key_admin=None, records=None, app: Callable[[], Any] | None = None,
                 out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self._key_admin, self._records, self._app = key_admin, records, app
        self.out, self.err = out or sys.stdout, err or sys.stderr

    @property
    def key_admin(self):
        if self._key_admin is None:
            from .key_admin import KeyVaultKeyAdmin, LocalKeyringAdmin

            store = self._store()
            if store.key_vault_url:
                from azure.identity import DefaultAzureCredential

                self._key_admin = KeyVaultKeyAdmin(store.key_vault_url, DefaultAzureCredential())
            else:
                self._key_admin = LocalKeyringAdmin(store.local_keyring)
        return self._key_admin

    @property
    def records(self):
        if self._records is None:
            from .records import TableRecords

            store = self._store()
            if store.storage.connection_string is not None:
                self._records = TableRecords.from_connection_string(
                    store.storage.connection_string.reveal(), store.table)
            else:
                from azure.identity import DefaultAzureCredential

                self._records = TableRecords.from_endpoint(store.storage.table_endpoint,
                                                           store.table, DefaultAzureCredential())
        return self._records

    def app(self):
        if self._app is None:
            from .bootstrap import compose
            from .settings import Settings

            built = compose(Settings.from_environ())
            self._app = lambda: built
        return self._app()

    @staticmethod
    def _store():
        from .settings import StoreSettings

        return StoreSettings.from_environ()


# --- keys -------------------------------------------------------------------------------

def keys_create(ctx: Context, args) -> dict:
    info = ctx.key_admin.create(args.tenant)
    return {"tenant_id": args.tenant, "version": info.version, "created": info.created}


def keys_rotate(ctx: Context, args) -> dict:
    tenants = ctx.key_admin.tenants() if args.all else [args.tenant]
    rotated = []
    with Progress(ctx.err, len(tenants), "rotating") as progress:
        for tenant in tenants:
            info = ctx.key_admin.rotate(tenant)
            rotated.append({"tenant_id": tenant, "version": info.version, "created": info.created})
            progress.advance()
    return {"rotated": rotated}


def keys_list(ctx: Context, args) -> dict:
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


def keys_revoke(ctx: Context, args) -> dict:
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


def keys_recover(ctx: Context, args) -> dict:
    ctx.key_admin.recover(args.tenant)
    return {"tenant_id": args.tenant, "recovered": True,
            "versions": [v.version for v in ctx.key_admin.versions(args.tenant)]}


# --- records ----------------------------------------------------------------------------

def records_list(ctx: Context, args) -> dict:
    listed, continuation = [], None
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


def records_show(ctx: Context, args) -> dict:
    record = ctx.records.get(RecordKey(args.tenant, args.user))
    return {**record.metadata(), "failure_count": record.failure_count,
            "last_error": record.last_error}


def records_forget(ctx: Context, args) -> dict:
    ctx.records.delete(RecordKey(args.tenant, args.user))
    return {"tenant_id": args.tenant, "user_id": args.user, "forgotten": True}


def records_purge(ctx: Context, args) -> dict:
    return {"tenant_id": args.tenant, "records_deleted": ctx.records.delete_tenant(args.tenant)}


# --- sweep ------------------------------------------------------------------------------

def sweep(ctx: Context, args) -> dict:
    from .sweep import MemoryQueue, Planner, Worker, run_in_process

    app = ctx.app()
    queue = MemoryQueue()
    clock = app.clock
    # In-process there is no function timeout to stay within: plan in one go.
    planner = Planner(records=app.records, keys=app.keys, queue=queue, clock=clock,
                      refresh_after=app.settings.refresh_after, time_budget=timedelta(days=1))
    if args.dry_run:
        plan = planner.plan(tenant_id=args.tenant)
        return {"dry_run": True, **plan.as_log()}
    worker = Worker(vault=app.vault, queue=queue, clock=clock,
                    refresh_after=app.settings.refresh_after)
    with Progress(ctx.err, 0, "sweeping") as progress:
        plan, outcomes = run_in_process(planner, worker, queue, tenant_id=args.tenant,
                                        progress=progress.update)
    return {**plan.as_log(), "outcomes": {o.value: n for o, n in sorted(outcomes.items())}}


# --- the command line -------------------------------------------------------------------

def _tenant(value: str) -> str:
    try:
        return valid_id(value.strip().lower(), "tenant")
    except BadRequest:
        raise argparse.ArgumentTypeError("must be a tenant id (a GUID)") from None


def _user(value: str) -> str:
    try:
        return valid_id(value.strip().lower(), "user")
    except BadRequest:
        raise argparse.ArgumentTypeError("must be a user object id (a GUID)") from None


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON, for scripts")
    top = argparse.ArgumentParser(prog="python -m tokenvault", description=__doc__.split("\n\n")[0])
    groups = top.add_subparsers(dest="group", required=True, metavar="{keys,records,sweep}")

    def command(subparsers, name: str, handler, help_text: str, *arguments) -> None:
        sub = subparsers.add_parser(name, parents=[common], help=help_text, description=help_text)
        for flags, options in arguments:
            sub.add_argument(*flags, **options)
        sub.set_defaults(handler=handler)

    tenant = (("--tenant",), {"type": _tenant, "required": True, "help": "tenant id"})
    user = (("--user",), {"type": _user, "required": True, "help": "user object id (oid)"})
    yes = (("--yes",), {"action": "store_true", "help": "confirm an irreversible change"})

    keys = groups.add_parser("keys", help="per-tenant keys").add_subparsers(dest="command",
                                                                             required=True)
    command(keys, "create", keys_create, "Create a tenant's key (secret tenant-<id>).", tenant)
    rotate = keys.add_parser("rotate", parents=[common], help="Add a new key version.",
                             description="Add a new key version; the sweep moves records to it.")
    which = rotate.add_mutually_exclusive_group(required=True)
    which.add_argument("--tenant", type=_tenant)
    which.add_argument("--all", action="store_true", help="every tenant-* secret")
    rotate.set_defaults(handler=keys_rotate)
    command(keys, "list", keys_list, "Tenants, key versions and how many records use each.",
            (("--tenant",), {"type": _tenant, "help": "only this tenant"}))
    command(keys, "revoke", keys_revoke, "Revoke a tenant: delete its key (soft delete); "
            "--purge also purges it and deletes its records.", tenant,
            (("--purge",), {"action": "store_true"}), yes)
    command(keys, "recover", keys_recover, "Undo a revoke that was not purged.", tenant)

    records = groups.add_parser("records", help="stored records").add_subparsers(
        dest="command", required=True)
    command(records, "list", records_list, "List records (metadata only).",
            (("--tenant",), {"type": _tenant, "help": "only this tenant"}),
            (("--limit",), {"type": int, "default": 1000}))
    command(records, "show", records_show, "One record's metadata.", tenant, user)
    command(records, "forget", records_forget, "Delete one user's record.", tenant, user)
    command(records, "purge", records_purge, "Delete every record of a tenant.", tenant, yes)

    sweep_parser = groups.add_parser("sweep", parents=[common], help="Run the sweep now, "
                                     "in this process.", description="Refresh due records and "
                                     "rewrap records onto the latest key, in this process.")
    sweep_parser.add_argument("--tenant", type=_tenant, help="only this tenant")
    sweep_parser.add_argument("--dry-run", action="store_true", help="plan only: change nothing")
    sweep_parser.set_defaults(handler=sweep)
    return top


def main(argv: list[str] | None = None, *, context: Context | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    irreversible = args.handler is records_purge or getattr(args, "purge", False)
    if irreversible and not args.yes:
        top.error("this cannot be undone: add --yes to confirm")
    ctx = context or Context()
    try:
        result = args.handler(ctx, args)
    except VaultError as error:
        ctx.err.write(f"error: {error.code}: {error.message}\n")
        return 1
    ctx.out.write(as_json(result) if args.json else as_text(result))
    return 0


def _now() -> datetime:
    return datetime.now(timezone.utc)
