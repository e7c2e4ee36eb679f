"""The key-rotation pipelines and the sweep trigger they share.

``trigger-sweep.sh`` runs for real (bash, curl) against a local HTTPS fake of the Functions
admin endpoint, with a fake ``az`` on PATH standing in for Azure Resource Manager. The
pipelines' and the docs' ``python -m tokenvault`` commands are parsed by the real CLI parser.
"""

import json
import os
import re
import shlex
import subprocess
from http.server import BaseHTTPRequestHandler

import pytest
import yaml

from tests.infra.templates import INFRA, ROOT
from tokenvault import cli
from tokenvault.dev.tls import HTTPSServer

TRIGGER = INFRA / "pipelines" / "trigger-sweep.sh"
GITHUB = ROOT / ".github" / "workflows" / "rotate-keys.yml"
AZURE_DEVOPS = INFRA / "pipelines" / "rotate-keys.yml"
APP_ID = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-tv/providers/"
          "Microsoft.Web/sites/func-tokenvault-example")
MASTER_KEY = "fake-master-key-Zq8x2Lw9Vb4nR7tY1uIo"
FAKE_AZ = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$AZ_ARGS"
echo "$FAKE_MASTER_KEY"
"""


class AdminEndpoint(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        state = self.server.state
        state["requests"].append({"path": self.path, "headers": dict(self.headers),
                                  "body": json.loads(body)})
        self.send_response(state["status"])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def admin(ca):
    state = {"requests": [], "status": 202}
    with HTTPSServer(AdminEndpoint, ca, state) as server:
        server.state = state
        yield server


def trigger(tmp_path, ca, url: str, **env) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "TF_BUILD")}
    environ.update(PATH=f"{bin_dir}:{environ['PATH']}", AZ_ARGS=str(tmp_path / "az-args"),
                   FAKE_MASTER_KEY=MASTER_KEY, CURL_CA_BUNDLE=str(ca.bundle),
                   FUNCTION_APP_ID=APP_ID, FUNCTION_APP_URL=url, **env)
    return subprocess.run(["bash", str(TRIGGER)], env=environ, capture_output=True, text=True,
                          timeout=60)


def lines_with_key(result) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if MASTER_KEY in line]


def test_the_trigger_runs_refresh_plan_through_the_admin_endpoint_with_the_master_key(tmp_path, ca,
                                                                                     admin):
    result = trigger(tmp_path, ca, admin.url + "/", GITHUB_ACTIONS="true")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "az-args").read_text().split() == [
        "rest", "--method", "post", "--output", "tsv", "--query", "masterKey",
        "--url", APP_ID + "/host/default/listkeys?api-version=2024-04-01"]
    [request] = admin.state["requests"]
    assert request["path"] == "/admin/functions/refresh_plan"
    assert request["headers"]["x-functions-key"] == MASTER_KEY
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == {"input": ""}


@pytest.mark.parametrize("runner, mask", [({"GITHUB_ACTIONS": "true"}, "::add-mask::"),
                                          ({"TF_BUILD": "True"}, "##vso[task.setsecret]")],
                         ids=["github", "azure-devops"])
def test_the_master_key_is_masked_and_printed_nowhere_else(tmp_path, ca, admin, runner, mask):
    result = trigger(tmp_path, ca, admin.url, **runner)
    assert result.returncode == 0, result.stderr
    assert lines_with_key(result) == [mask + MASTER_KEY]


def test_a_refusal_fails_the_pipeline_without_showing_the_key(tmp_path, ca, admin):
    admin.state["status"] = 401
    result = trigger(tmp_path, ca, admin.url)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert lines_with_key(result) == []


def test_the_key_is_never_sent_over_plain_http(tmp_path, ca, admin):
    result = trigger(tmp_path, ca, admin.url.replace("https://", "http://"))
    assert result.returncode == 2
    assert admin.state["requests"] == []
    assert not (tmp_path / "az-args").exists()


# --- the pipelines ------------------------------------------------------------------------

def github() -> dict:
    workflow = yaml.safe_load(GITHUB.read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return workflow


def run_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_github_signs_in_with_oidc_and_asks_for_no_more_than_it_needs():
    workflow = github()
    assert workflow["permissions"] == {"contents": "read"}
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    [login] = [s for s in job["steps"] if s.get("uses", "").startswith("azure/login@")]
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert all(v.startswith("${{ vars.") for v in login["with"].values())
    assert "secrets." not in GITHUB.read_text()


def github_commands() -> list[str]:
    [job] = github()["jobs"].values()
    return [line for s in job["steps"] if "run" in s for line in run_lines(s["run"])]


def azure_devops_commands() -> list[str]:
    pipeline = yaml.safe_load(AZURE_DEVOPS.read_text())
    [task] = [s for s in pipeline["steps"] if s.get("task") == "AzureCLI@2"]
    assert task["inputs"]["azureSubscription"] == "tokenvault-rotation"
    return [line for line in run_lines(task["inputs"]["inlineScript"])
            if not line.startswith(("set ", "echo "))]


def test_both_pipelines_rotate_every_key_then_start_a_sweep_on_the_same_schedule():
    expected = ["python -m tokenvault keys list --json", "python -m tokenvault keys rotate --all --json",
                "infra/pipelines/trigger-sweep.sh"]
    assert github_commands()[-3:] == expected
    assert azure_devops_commands() == expected
    pipeline = yaml.safe_load(AZURE_DEVOPS.read_text())
    assert [s["cron"] for s in github()["on"]["schedule"]] == [s["cron"] for s in pipeline["schedules"]]
    assert pipeline["trigger"] == "none" and pipeline["pr"] == "none"


@pytest.mark.parametrize("commands", [github_commands, azure_devops_commands],
                         ids=["github", "azure-devops"])
def test_the_pipelines_give_the_cli_and_the_trigger_what_they_read(commands):
    text = (GITHUB if commands is github_commands else AZURE_DEVOPS).read_text()
    for name in ("TOKENVAULT_KEY_VAULT_URL", "AzureWebJobsStorage__accountName",
                 "TOKENVAULT_TABLE", "FUNCTION_APP_ID", "FUNCTION_APP_URL"):
        assert re.search(rf"^\s+{name}: ", text, re.M), name


def test_azure_devops_defaults_the_table_as_github_does():
    pipeline = yaml.safe_load(AZURE_DEVOPS.read_text())
    [table] = [v for v in pipeline["variables"] if v.get("name") == "tokenVaultTable"]
    assert table["value"] == "$[ coalesce(variables.TOKENVAULT_TABLE, 'tokens') ]"
    [task] = [s for s in pipeline["steps"] if s.get("task") == "AzureCLI@2"]
    assert task["env"]["TOKENVAULT_TABLE"] == "$(tokenVaultTable)"
    assert github()["jobs"]["rotate"]["env"]["TOKENVAULT_TABLE"] == "${{ vars.TOKENVAULT_TABLE || 'tokens' }}"


# --- every documented command is one the CLI accepts -------------------------------------

PLACEHOLDERS = {"<tenant-id>": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                "<user-oid>": "00000000-0000-0000-0000-0000000000aa"}
DOCUMENTED = [ROOT / "docs" / "operations.md", INFRA / "README.md", GITHUB, AZURE_DEVOPS]


def documented_commands():
    for path in DOCUMENTED:
        for match in re.finditer(r"python -m tokenvault ((?:keys|records|sweep)[^`\n|;&]*)",
                                 path.read_text()):
            command = re.sub(r"\s\d?>\S.*$", "", match.group(1)).strip()  # no redirections
            if "[" in command:  # a usage line such as `sweep [--tenant <tenant-id>]`
                continue
            for placeholder, value in PLACEHOLDERS.items():
                command = command.replace(placeholder, value)
            yield pytest.param(shlex.split(command), id=f"{path.name}: {match.group(1).strip()}")


@pytest.mark.parametrize("argv", list(documented_commands()))
def test_documented_command_is_accepted_by_the_ops_cli(argv):
    args = cli.parser().parse_args(argv)
    irreversible = args.handler is cli.records_purge or getattr(args, "purge", False)
    assert args.yes if irreversible else True, "the CLI refuses this without --yes"
