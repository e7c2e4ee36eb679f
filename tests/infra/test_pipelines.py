"""The key-rotation pipelines, read as YAML: what they run, with which permissions, on which
schedule. The pipelines' and the docs' ``python -m tokenvault`` commands are parsed by the real
CLI parser. The sweep trigger script they share runs for real in
tests/integration/test_sweep_trigger.py (it needs bash, curl and an HTTPS server).
"""

import re
import shlex

import pytest
import yaml

from tests.infra.templates import INFRA, ROOT
from tokenvault import cli

GITHUB = ROOT / ".github" / "workflows" / "rotate-keys.yml"
AZURE_DEVOPS = INFRA / "pipelines" / "rotate-keys.yml"


# --- the pipelines ------------------------------------------------------------------------

def github() -> dict:
    workflow = yaml.safe_load(GITHUB.read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return workflow


def azure_devops() -> dict:
    return yaml.safe_load(AZURE_DEVOPS.read_text())


def azure_devops_job() -> dict:
    """The one deployment job, in the one stage, that does the work."""
    [stage] = azure_devops()["stages"]
    [job] = stage["jobs"]
    return job


def azure_devops_steps() -> list[dict]:
    return azure_devops_job()["strategy"]["runOnce"]["deploy"]["steps"]


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


def test_github_actions_are_pinned_by_commit_sha():
    """A tag can be moved to other code; a commit cannot (a version comment says which)."""
    uses = re.findall(r"^\s*(?:- )?uses: (\S+)(.*)$", GITHUB.read_text(), re.M)
    assert len(uses) >= 3
    for action, comment in uses:
        name, _, ref = action.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{name} is pinned to {ref!r}, not a commit"
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), f"{name}: say which version"


def test_github_runs_only_from_main_in_the_protected_environment():
    [job] = github()["jobs"].values()
    assert job["environment"] == "tokenvault-production"
    assert job["if"] == "github.ref == 'refs/heads/main'"
    assert set(github()["on"]) == {"schedule", "workflow_dispatch"}  # no pull_request, no push


def test_the_environment_script_allows_main_only_and_requires_reviewers():
    script = (INFRA / "pipelines" / "github-environment.sh").read_text()
    assert '"custom_branch_policies": true' in script and '"protected_branches": false' in script
    assert '"reviewers": [$joined]' in script and '"prevent_self_review": true' in script
    assert "-f name=main -f type=branch" in script
    assert "ENVIRONMENT=tokenvault-production" in script


def test_azure_devops_runs_only_from_main_as_a_deployment_to_a_checked_environment():
    pipeline = azure_devops()
    [stage] = pipeline["stages"]
    assert stage["condition"] == "eq(variables['Build.SourceBranch'], 'refs/heads/main')"
    job = azure_devops_job()
    assert job["deployment"] and job["environment"] == "tokenvault-production"
    assert [s["branches"]["include"] for s in pipeline["schedules"]] == [["main"]]
    assert pipeline["trigger"] == "none" and pipeline["pr"] == "none"
    assert "steps" not in pipeline  # nothing runs outside the gated job


def github_commands() -> list[str]:
    [job] = github()["jobs"].values()
    return [line for s in job["steps"] if "run" in s for line in run_lines(s["run"])]


def azure_devops_commands() -> list[str]:
    [task] = [s for s in azure_devops_steps() if s.get("task") == "AzureCLI@2"]
    assert task["inputs"]["azureSubscription"] == "tokenvault-rotation"
    return [line for line in run_lines(task["inputs"]["inlineScript"])
            if not line.startswith(("set ", "echo "))]


def test_both_pipelines_rotate_every_key_then_start_a_sweep_on_the_same_schedule():
    expected = ["python -m tokenvault keys list --json", "python -m tokenvault keys rotate --all --json",
                "infra/pipelines/trigger-sweep.sh"]
    assert github_commands()[-3:] == expected
    assert azure_devops_commands() == expected
    pipeline = azure_devops()
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
    [task] = [s for s in azure_devops_steps() if s.get("task") == "AzureCLI@2"]
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
