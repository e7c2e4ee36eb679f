"""infra/README.md walked as an operator would, as far as it goes without Azure: every shell
block is valid bash, and the app registration its step 1 builds passes the pre-flight."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.infra.templates import INFRA
from tests.integration.infra import test_preflight as preflight

README = (INFRA / "README.md").read_text(encoding="utf-8")
SHELL_BLOCKS = re.findall(r"^ *```sh\n(.*?)^ *```", README, re.M | re.S)


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[f"block-{i}" for i in range(len(SHELL_BLOCKS))])
def test_every_shell_block_is_valid_bash(block):
    # <tenant-id> and the like are the operator's to fill in: a word, for the parser.
    filled = re.sub(r"(?<![<\w])<[a-z][a-z0-9 ._'-]*>", "PLACEHOLDER", block)
    result = subprocess.run(["bash", "-n"], input=filled, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def step_one_body(values: dict[str, str]) -> dict:
    """The JSON step 1 PATCHes onto the application, with its shell variables filled in."""
    body = re.search(r"cat > tokenvault-api.json <<JSON\n(.*?)\nJSON\n", README, re.S).group(1)
    return json.loads(re.sub(r"\$(\w+)", lambda m: values[m.group(1)], body))


def test_the_registration_step_one_builds_passes_the_preflight(tmp_path):
    values = {"SCOPE_ID": preflight.SCOPE_ID, "REDEEM_ROLE_ID": "c1b2a394-8576-4e3d-9f2a-1b0c9d8e7f6a",
              "ADMIN_ROLE_ID": "d2c3b4a5-9687-4f4e-8a3b-2c1d0e9f8a7b", "CALLER_APP_ID": preflight.CALLER}
    patched = step_one_body(values)
    app = preflight.registration()
    # What step 1 leaves: created multi-tenant with its api:// URI, then the PATCH ...
    app["api"] = {**patched["api"], "acceptMappedClaims": None}
    app["appRoles"] = patched["appRoles"]
    # ... `az ad app permission add` of offline_access and User.Read ...
    added = re.search(r'--api-permissions "\$\(graph_scope (\w+)\)=Scope" "\$\(graph_scope ([\w.]+)\)=Scope"',
                      README).groups()
    assert added == ("offline_access", "User.Read")
    app["requiredResourceAccess"] = [{"resourceAppId": preflight.GRAPH, "resourceAccess": [
        {"id": preflight.OFFLINE_ACCESS, "type": "Scope"}, {"id": preflight.USER_READ, "type": "Scope"}]}]
    # ... and step 3's redirect URI.
    redirect = re.search(r'--web-redirect-uris "\$FUNCTION_APP_URL(/api/\w+)"', README).group(1)
    app["web"]["redirectUris"] = ["https://func-tokenvault-abc.azurewebsites.net" + redirect]
    recorded = preflight.recordings()
    recorded["ad app show"]["json"] = app

    result = preflight.preflight(tmp_path, recorded)

    assert result.returncode == 0, result.stdout + result.stderr


def test_step_three_trusts_the_deployment_outputs_with_the_token_exchange_audience():
    step3 = README[README.index("## 3. "):README.index("## 4. ")]
    assert "$(out FEDERATED_CREDENTIAL_ISSUER)" in step3
    assert "$(out FEDERATED_CREDENTIAL_SUBJECT)" in step3
    assert '[\\"api://AzureADTokenExchange\\"]' in step3


def test_the_azure_devops_credential_is_copied_from_the_service_connection_not_the_retired_issuer():
    devops = README[README.index("**Azure DevOps**"):README.index("## 7. ")]
    assert "workloadIdentityFederationIssuer" in devops and "workloadIdentityFederationSubject" in devops
    assert "https://login.microsoftonline.com/<tenant\nid>/v2.0" in devops or \
        "https://login.microsoftonline.com/<tenant id>/v2.0" in devops
    assert '"issuer": "https://vstoken.dev.azure.com' not in devops


OPERATIONS = (INFRA.parent / "docs" / "operations.md").read_text(encoding="utf-8")


def test_the_storage_loss_runbook_publishes_the_code_again():
    # On Flex the package is a blob in the lost account: without a new publish nothing runs.
    section = OPERATIONS[OPERATIONS.index("## Restore after a storage loss"):]
    assert "func azure functionapp publish" in section and "azd deploy" in section
    assert section.index("Deploy the code again") < section.index("Tell the callers")


def test_the_audit_log_is_queried_in_its_resource_specific_table():
    assert "AZKVAuditLogs" in OPERATIONS and "AKVAuditLogs" not in OPERATIONS.replace("AZKVAuditLogs", "")
