"""The ops CLI (`python -m tokenvault`) against the Key Vault fake and Azurite: the key
lifecycle ops run in production — create, rotate, sweep, list, revoke, recover, purge — and
what the app answers in between."""

import io
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from tests.support.stack_fixtures import MORE_SCOPES, new_id
from tokenvault.cli import ENTRA_NOTE, Context, main
from tokenvault.model import RecordKey


class Cli:
    def __init__(self, stack) -> None:
        self.stack = stack

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        ctx = Context(key_admin=self.stack.admin, records=self.stack.records,
                      app=lambda: self.stack.app, out=out, err=err)
        code = main(list(argv), context=ctx)
        return code, out.getvalue(), err.getvalue()

    def json(self, *argv: str) -> dict:
        code, out, err = self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(stack) -> Cli:
    return Cli(stack)


def store_users(stack, tenant: str, count: int) -> list[str]:
    users = [new_id() for _ in range(count)]
    for user in users:
        assert stack.store(tenant, user).status_code == 201
    return users


def test_create_rotate_sweep_then_no_record_is_left_on_the_old_version(cli, stack):
    tenant = new_id()
    created = cli.json("keys", "create", "--tenant", tenant)
    users = store_users(stack, tenant, 5)

    rotated = cli.json("keys", "rotate", "--all")["rotated"]
    assert [r["tenant_id"] for r in rotated] == [tenant]
    stack.expire_key_cache()
    listing = cli.json("keys", "list", "--tenant", tenant)["tenants"][0]["versions"]
    assert {v["version"]: v["records"] for v in listing} == {created["version"]: 5,
                                                               rotated[0]["version"]: 0}

    swept = cli.json("sweep", "--tenant", tenant)
    assert swept["planned"] == 5 and swept["outcomes"] == {"rewrapped": 5}

    listing = cli.json("keys", "list", "--tenant", tenant)["tenants"][0]["versions"]
    assert {v["version"]: v["records"] for v in listing} == {created["version"]: 0,
                                                               rotated[0]["version"]: 5}
    assert all(stack.entra.refresh_token_valid(stack.stored_refresh_token(tenant, u)) for u in users)


def test_a_dry_run_plans_and_changes_nothing(cli, stack):
    tenant = stack.onboard()
    users = store_users(stack, tenant, 3)
    stack.clock.advance(days=8)
    etags = {u: stack.records.get(RecordKey(tenant, u)).etag for u in users}

    plan = cli.json("sweep", "--dry-run")

    assert plan["dry_run"] and plan["planned"] == 3
    assert etags == {u: stack.records.get(RecordKey(tenant, u)).etag for u in users}


def test_revoke_is_noticed_within_the_ttl_and_recover_restores_access(cli, stack):
    tenant = stack.onboard()
    user, = store_users(stack, tenant, 1)
    other = store_users(stack, stack.onboard(), 1)  # another tenant, unaffected

    attestation = cli.json("keys", "revoke", "--tenant", tenant)["attestation"]
    assert attestation["secret_deleted"] and not attestation["secret_purged"]
    assert attestation["reversible"] and attestation["entra"] == ENTRA_NOTE

    stack.expire_key_cache()
    revoked = stack.redeem(tenant, user, scopes=MORE_SCOPES[:1])
    assert revoked.status_code == 403
    assert json.loads(revoked.get_body())["code"] == "tenant_revoked"
    assert stack.records.get(RecordKey(tenant, user)).ciphertext  # nothing destroyed

    recovered = cli.json("keys", "recover", "--tenant", tenant)
    assert recovered["recovered"]
    stack.expire_key_cache()
    assert stack.redeem(tenant, user, scopes=MORE_SCOPES[1:2]).status_code == 200
    assert other and stack.records.tenant_has_records(tenant)


def test_revoke_with_purge_shreds_key_and_records_and_prints_an_attestation(cli, stack):
    tenant = stack.onboard()
    store_users(stack, tenant, 4)
    survivor_tenant = stack.onboard()
    survivor, = store_users(stack, survivor_tenant, 1)

    code, out, err = cli("keys", "revoke", "--tenant", tenant, "--purge", "--yes")

    assert code == 0, err
    assert f"tenant_id: {tenant}" in out and "records_deleted: 4" in out
    assert "secret_purged: True" in out and "reversible: False" in out
    assert "Entra" in out and "revokeSignInSessions" in out
    assert not stack.records.tenant_has_records(tenant)
    assert stack.records.get(RecordKey(survivor_tenant, survivor))
    assert tenant not in stack.admin.tenants() and not stack.admin.is_deleted(tenant)
    # The name is free again once purged: a new onboarding starts from scratch.
    assert cli("keys", "create", "--tenant", tenant)[0] == 0


def test_purging_twice_is_safe(cli, stack):
    tenant = stack.onboard()
    store_users(stack, tenant, 1)
    assert cli("keys", "revoke", "--tenant", tenant)[0] == 0
    code, out, _ = cli("keys", "revoke", "--tenant", tenant, "--purge", "--yes", "--json")
    assert code == 0 and json.loads(out)["attestation"]["records_deleted"] == 1
    code, out, _ = cli("records", "purge", "--tenant", tenant, "--yes", "--json")
    assert code == 0 and json.loads(out)["records_deleted"] == 0


def test_create_refuses_an_existing_or_soft_deleted_key_and_says_what_to_do(cli, stack):
    tenant = stack.onboard()
    code, _, err = cli("keys", "create", "--tenant", tenant)
    assert code == 1 and err.startswith("error: key_exists:")

    cli("keys", "revoke", "--tenant", tenant)
    code, _, err = cli("keys", "create", "--tenant", tenant)
    assert code == 1 and "recover" in err and "purge" in err


def test_records_list_show_forget_and_purge(cli, stack):
    tenant = stack.onboard()
    users = sorted(store_users(stack, tenant, 3))

    listed = cli.json("records", "list", "--tenant", tenant)["records"]
    assert sorted(r["user_id"] for r in listed) == users
    shown = cli.json("records", "show", "--tenant", tenant, "--user", users[0])
    assert shown["status"] == "active" and shown["failure_count"] == 0
    assert "ciphertext" not in json.dumps(shown).lower()

    assert cli("records", "forget", "--tenant", tenant, "--user", users[0])[0] == 0
    code, _, err = cli("records", "show", "--tenant", tenant, "--user", users[0])
    assert code == 1 and err.startswith("error: not_found:")
    assert cli.json("records", "purge", "--tenant", tenant, "--yes")["records_deleted"] == 2


@pytest.mark.parametrize("argv", [
    ["keys", "create"],                                       # --tenant missing
    ["keys", "create", "--tenant", "not-a-guid"],
    ["keys", "rotate"],                                       # neither --tenant nor --all
    ["keys", "revoke", "--tenant", "72f988bf-86f1-41af-91ab-2d7cd011db47", "--purge"],  # no --yes
    ["records", "purge", "--tenant", "72f988bf-86f1-41af-91ab-2d7cd011db47"],          # no --yes
    ["records", "show", "--tenant", "72f988bf-86f1-41af-91ab-2d7cd011db47", "--user", "x' or '1"],
    ["nonsense"],
])
def test_usage_errors_exit_2_and_change_nothing(cli, argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli(*argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_every_command_has_help():
    commands = [[], ["keys"], ["records"], ["sweep"]] + [
        ["keys", c] for c in ("create", "rotate", "list", "revoke", "recover")] + [
        ["records", c] for c in ("list", "show", "forget", "purge")]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "tokenvault", *command, "--help"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "usage: python -m tokenvault" in done.stdout, command


def test_a_failing_dependency_is_exit_1_with_a_safe_message(cli, stack):
    tenant = stack.onboard()
    stack.keyvault.fail_next(500, times=10)
    code, out, err = cli("keys", "rotate", "--tenant", tenant)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err


def test_sweep_reports_refreshes_of_due_records(cli, stack):
    tenant = stack.onboard()
    store_users(stack, tenant, 2)
    stack.clock.advance(days=8)
    before = stack.entra.counts["refresh"]
    swept = cli.json("sweep")
    assert swept["outcomes"] == {"refreshed": 2}
    assert stack.entra.counts["refresh"] - before == 2
    assert all(r.refreshed_at > stack.clock.now() - timedelta(minutes=1)
               for r in (stack.records.get(RecordKey(tenant, s.user_id))
                         for s in stack.records.scan(tenant)))


# --- run in the project folder: local.settings.json's Values, the environment first ----------

@pytest.fixture
def project_folder(tmp_path, monkeypatch):
    """A Functions project folder as the CLI finds it, and an environment without the app's
    settings (restored afterwards: the CLI writes the file's values into os.environ)."""
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if not k.startswith(("TOKENVAULT_", "AzureWebJobs"))})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False,
        "Values": {"TOKENVAULT_LOCAL_KEYRING": "from-file-keyring.json",
                   "AzureWebJobsStorage": "UseDevelopmentStorage=true"}}))
    return tmp_path


def test_run_in_the_project_folder_it_reads_local_settings_values(project_folder, capsys):
    tenant = str(uuid.uuid4())
    assert main(["keys", "create", "--tenant", tenant, "--json"]) == 0
    assert tenant in (project_folder / "from-file-keyring.json").read_text()
    assert json.loads(capsys.readouterr().out)["tenant_id"] == tenant


def test_a_variable_set_in_the_environment_wins_over_the_file(project_folder, capsys):
    os.environ["TOKENVAULT_LOCAL_KEYRING"] = str(project_folder / "from-env-keyring.json")
    tenant = str(uuid.uuid4())
    assert main(["keys", "create", "--tenant", tenant]) == 0
    assert (project_folder / "from-env-keyring.json").exists()
    assert not (project_folder / "from-file-keyring.json").exists()


def test_encrypted_local_settings_are_a_usage_error_naming_the_file(project_folder, capsys):
    (project_folder / "local.settings.json").write_text(json.dumps({"IsEncrypted": True,
                                                                     "Values": {"X": "enc"}}))
    with pytest.raises(SystemExit) as exited:
        main(["keys", "list"])
    assert exited.value.code == 2
    assert "local.settings.json" in capsys.readouterr().err


def test_help_says_where_settings_come_from(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "local.settings.json" in text and "environment wins" in text
