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
safe message on stderr), 2 usage.

Settings come from the environment. Run in a Functions project folder, it also reads the
``Values`` of ``local.settings.json`` there, as a local Functions host does: a variable already
set in the environment wins. It works on Key Vault (``TOKENVAULT_KEY_VAULT_URL``, with
``DefaultAzureCredential``: the pipeline's identity needs Key Vault Secrets Officer) or on the
local keyring (``TOKENVAULT_LOCAL_KEYRING``), and on the records' table, through the same
interfaces the app uses. Only ``sweep`` needs the app's own settings (it refreshes tokens in
the app's name); the other commands need only the key and record stores.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..audit import Audit
from ..errors import BadRequest, SettingError, VaultError
from ..model import valid_id
from ..settings import apply_local_settings
from .audit import start
from .context import Context
from .keys import ENTRA_NOTE, keys_create, keys_list, keys_recover, keys_revoke, keys_rotate
from .output import as_json, as_text
from .records import records_forget, records_list, records_purge, records_show
from .sweep import sweep

__all__ = ["main", "parser", "Context", "ENTRA_NOTE", "records_purge"]


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
    top = argparse.ArgumentParser(
        prog="python -m tokenvault", description=__doc__.split("\n\n")[0],
        epilog="Settings (TOKENVAULT_KEY_VAULT_URL or TOKENVAULT_LOCAL_KEYRING, "
               "AzureWebJobsStorage or AzureWebJobsStorage__accountName, TOKENVAULT_TABLE, ...) "
               "come from the environment and, in the current folder, from the Values of "
               "local.settings.json; a variable set in the environment wins over the file.")
    groups = top.add_subparsers(dest="group", required=True, metavar="{keys,records,sweep}")

    def command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                handler: Callable[[Context, argparse.Namespace], dict], help_text: str,
                *arguments: tuple[tuple[str, ...], dict[str, Any]]) -> None:
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


def _audit(args: argparse.Namespace) -> Audit | None:
    """A ``keys`` or ``records`` command's audit record (``cli/audit.py``); None for sweep."""
    if args.group not in ("keys", "records"):
        return None
    details: dict = {"all_tenants": True} if getattr(args, "all", False) else {}
    if getattr(args, "purge", False):
        details["purge"] = True
    return start(f"{args.group}.{args.command}", tenant_id=getattr(args, "tenant", None),
                 user_id=getattr(args, "user", None), details=details)


def main(argv: list[str] | None = None, *, context: Context | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    irreversible = args.handler is records_purge or getattr(args, "purge", False)
    if irreversible and not args.yes:
        top.error("this cannot be undone: add --yes to confirm")
    if context is None:
        try:  # as `func start` would: the project folder's local.settings.json, env first
            apply_local_settings(Path.cwd(), os.environ)
        except SettingError as error:
            top.error(error.message)
    ctx = context or Context()
    audit = _audit(args)

    def audited(outcome: str) -> None:
        line = audit.write(outcome) if audit else None
        if line:
            ctx.err.write(line + "\n")

    try:
        result = args.handler(ctx, args)
    except VaultError as error:
        ctx.err.write(f"error: {error.code}: {error.message}\n")
        audited(error.code)
        return 1
    except BaseException:
        audited("internal")
        raise
    audited("ok")
    ctx.out.write(as_json(result) if args.json else as_text(result))
    return 0
