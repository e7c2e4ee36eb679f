"""infra/preflight.sh, run for real (bash) against a stand-in ``az`` (tests/infra/fake_az.py).

Azure cannot be reached from here, so the stand-in answers with documents in the shapes the
Azure CLI prints: ``az ad app show`` is a Microsoft Graph application
(https://learn.microsoft.com/graph/api/resources/application), ``az ad app federated-credential
list`` a list of federatedIdentityCredential
(https://learn.microsoft.com/graph/api/resources/federatedidentitycredential). They are written
from those references, not captured from a tenant. The script's own ``--query`` expressions run
on them through JMESPath, as in az. A registration set up as infra/README.md says passes; each
documented mistake fails with a line that names it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

from tests.infra.templates import INFRA

PREFLIGHT = INFRA / "preflight.sh"
FAKE_AZ = str(INFRA.parent / "tests" / "infra" / "fake_az.py")
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
APP_ID = "9a2f7c1e-4b3d-4e5f-8a9b-0c1d2e3f4a5b"
APP_OBJECT_ID = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
IDENTITY = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"  # the managed identity's principal id
CALLER = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
GRAPH = "00000003-0000-0000-c000-000000000000"
OFFLINE_ACCESS = "7427e0e9-2fba-42fe-b0c0-848c9e6a8182"
USER_READ = "e1fe6dd8-ba31-4d61-89e7-88639da4683d"
SCOPE_ID = "b9c8d7e6-f5a4-4b3c-9d2e-1f0a9b8c7d6e"


def registration() -> dict:
    """The app registration as infra/README.md step 1 leaves it (Graph application shape)."""
    return {
        "id": APP_OBJECT_ID, "appId": APP_ID, "displayName": "TokenVault",
        "signInAudience": "AzureADMultipleOrgs",
        "identifierUris": [f"api://{APP_ID}"],
        "api": {
            "requestedAccessTokenVersion": 2,
            "acceptMappedClaims": None,
            "knownClientApplications": [],
            "preAuthorizedApplications": [{"appId": CALLER, "delegatedPermissionIds": [SCOPE_ID]}],
            "oauth2PermissionScopes": [{
                "id": SCOPE_ID, "value": "access_as_user", "type": "User", "isEnabled": True,
                "adminConsentDisplayName": "Keep my sign-in for TokenVault's callers",
                "adminConsentDescription": "...", "userConsentDisplayName": "...",
                "userConsentDescription": "..."}],
        },
        "appRoles": [
            {"id": "c1b2a394-8576-4e3d-9f2a-1b0c9d8e7f6a", "value": "TokenVault.Redeem",
             "displayName": "TokenVault.Redeem", "description": "...",
             "allowedMemberTypes": ["Application"], "isEnabled": True, "origin": "Application"},
            {"id": "d2c3b4a5-9687-4f4e-8a3b-2c1d0e9f8a7b", "value": "TokenVault.Admin",
             "displayName": "TokenVault.Admin", "description": "...",
             "allowedMemberTypes": ["Application"], "isEnabled": True, "origin": "Application"},
        ],
        "web": {"redirectUris": ["https://func-tokenvault-abc.azurewebsites.net/api/health"],
                "homePageUrl": None, "logoutUrl": None,
                "implicitGrantSettings": {"enableAccessTokenIssuance": False,
                                          "enableIdTokenIssuance": False}},
        "requiredResourceAccess": [{"resourceAppId": GRAPH, "resourceAccess": [
            {"id": OFFLINE_ACCESS, "type": "Scope"}, {"id": USER_READ, "type": "Scope"}]}],
        "passwordCredentials": [], "keyCredentials": [],
    }


def recordings() -> dict:
    return {
        "account show": {"json": {"id": "00000000-0000-0000-0000-0000000000ab", "tenantId": TENANT,
                                  "user": {"name": "ops@contoso.com", "type": "user"}}},
        "cloud show": {"json": {"name": "AzureCloud", "endpoints": {
            "activeDirectory": "https://login.microsoftonline.com",
            "resourceManager": "https://management.azure.com/"}}},
        "bicep build": {"text": "{}\n"},
        "group show": {"json": {"name": "rg-tokenvault-prod", "location": "swedencentral"}},
        "functionapp list-flexconsumption-runtimes": {"json": [
            {"sku": "FC1", "version": "3.11", "isDefault": False},
            {"sku": "FC1", "version": "3.12", "isDefault": False},
            {"sku": "FC1", "version": "3.13", "isDefault": True}]},
        "deployment group what-if": {"json": {"status": "Succeeded", "changes": []}},
        "ad signed-in-user show": {"json": {"id": "0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d"}},
        "role assignment list": {"json": [{"roleDefinitionName": "Owner"}]},
        "ad app show": {"json": registration()},
        "ad sp show": {"json": {"id": "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a", "appId": APP_ID}},
        "deployment group show": {"json": {"properties": {"outputs": {
            "FEDERATED_CREDENTIAL_SUBJECT": {"type": "String", "value": IDENTITY}}}}},
        "ad app federated-credential list": {"json": [{
            "id": "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7", "name": "tokenvault-function-identity",
            "issuer": f"https://login.microsoftonline.com/{TENANT}/v2.0", "subject": IDENTITY,
            "audiences": ["api://AzureADTokenExchange"], "description": None}]},
    }


def preflight(tmp_path, recorded: dict, *args: str, **env: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "az").write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" "{FAKE_AZ}" "$@"\n')
    (bin_dir / "az").chmod(0o755)
    (tmp_path / "recordings.json").write_text(json.dumps(recorded))
    environ = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
               "FAKE_AZ_RECORDINGS": str(tmp_path / "recordings.json"),
               "FAKE_AZ_LOG": str(tmp_path / "az.log"), "APP_ID": APP_ID,
               "RESOURCE_GROUP": "rg-tokenvault-prod", "ENVIRONMENT_NAME": "prod", **env}
    return subprocess.run(["bash", str(PREFLIGHT), *args], env=environ, capture_output=True,
                          text=True, timeout=120)


def calls(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "az.log").read_text().splitlines()]


def failed(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("FAIL")]


def test_a_registration_set_up_as_documented_passes_every_check(tmp_path):
    result = preflight(tmp_path, recordings())
    assert result.returncode == 0, result.stdout + result.stderr
    assert failed(result) == [] and result.stdout.rstrip().endswith("all checks passed")
    made = {c["command"] for c in calls(tmp_path)}
    assert {"bicep build", "deployment group what-if", "functionapp list-flexconsumption-runtimes",
            "ad app show", "ad app federated-credential list"} <= made
    [what_if] = [c for c in calls(tmp_path) if c["command"] == "deployment group what-if"]
    assert what_if["options"]["--template-file"].endswith("infra/main.bicep")
    assert f"tokenVaultClientId={APP_ID}" in what_if["options"]["--parameters"]
    assert "ok    federated credential trusts the managed identity " + IDENTITY in result.stdout


def broken(change) -> dict:
    recorded = recordings()
    app = copy.deepcopy(recorded["ad app show"]["json"])
    change(app, recorded)
    recorded["ad app show"]["json"] = app
    return recorded


@pytest.mark.parametrize("change, expected", [
    (lambda app, r: app["web"].update(redirectUris=[]), "no web redirect URI"),
    (lambda app, r: app["web"].update(redirectUris=["http://localhost/x"]), "redirect URI is not https"),
    (lambda app, r: app["requiredResourceAccess"][0].update(
        resourceAccess=[{"id": USER_READ, "type": "Scope"}]), "offline_access"),
    (lambda app, r: app["requiredResourceAccess"][0].update(
        resourceAccess=[{"id": OFFLINE_ACCESS, "type": "Scope"}]), "no downstream delegated permission"),
    (lambda app, r: app["appRoles"].pop(0), "TokenVault.Redeem"),
    (lambda app, r: app["appRoles"][1].update(allowedMemberTypes=["User"]), "TokenVault.Admin"),
    (lambda app, r: app["api"]["oauth2PermissionScopes"][0].update(isEnabled=False), "access_as_user"),
    (lambda app, r: app.update(signInAudience="AzureADMyOrg"), "AzureADMultipleOrgs"),
    (lambda app, r: app.update(identifierUris=[]), "identifier URI"),
    (lambda app, r: app["api"].update(requestedAccessTokenVersion=None), "requestedAccessTokenVersion"),
    (lambda app, r: r["ad app federated-credential list"]["json"][0].update(subject=CALLER),
     "no federated credential"),
    (lambda app, r: r["ad app federated-credential list"]["json"][0].update(
        issuer="https://vstoken.dev.azure.com/abc"), "no federated credential"),
    (lambda app, r: r.pop("ad sp show"), "no service principal"),
    (lambda app, r: r["functionapp list-flexconsumption-runtimes"]["json"].pop(0), "Python 3.11"),
    (lambda app, r: r.update({"deployment group what-if": {"exit": 1, "text": "InvalidTemplate"}}),
     "what-if"),
    (lambda app, r: r.update({"bicep build": {"exit": 1, "text": "BCP035"}}), "bicep build"),
], ids=["no-redirect", "http-redirect", "no-offline-access", "no-downstream-scope",
        "no-redeem-role", "admin-role-for-users", "scope-disabled", "single-tenant",
        "no-identifier-uri", "v1-tokens", "fic-wrong-subject", "fic-old-devops-issuer", "no-sp",
        "python-not-in-region", "what-if-refused", "bicep-error"])
def test_a_registration_or_deployment_mistake_fails_naming_it(tmp_path, change, expected):
    result = preflight(tmp_path, broken(change))
    assert result.returncode == 1
    [line] = failed(result)
    assert expected in line, result.stdout


def test_a_custom_role_without_owner_or_user_access_administrator_fails(tmp_path):
    recorded = recordings()
    recorded["role assignment list"]["json"] = [
        {"roleDefinitionName": "Contributor"},
        {"roleDefinitionName": "Role Based Access Control Administrator"}]
    result = preflight(tmp_path, recorded, PIPELINE_PRINCIPAL_ID="6f7a8b9c-0d1e-4f2a-b3c4-d5e6f7a8b9c0")
    assert result.returncode == 1
    [line] = failed(result)
    assert "Owner or User Access Administrator" in line


def test_sovereign_clouds_check_their_own_issuer_and_audience(tmp_path):
    recorded = recordings()
    recorded["cloud show"]["json"] = {"name": "AzureUSGovernment",
                                      "endpoints": {"activeDirectory": "https://login.microsoftonline.us/"}}
    fic = recorded["ad app federated-credential list"]["json"][0]
    fic.update(issuer=f"https://login.microsoftonline.us/{TENANT}/v2.0",
               audiences=["api://AzureADTokenExchangeUSGov"])
    assert preflight(tmp_path, recorded).returncode == 0
    fic.update(audiences=["api://AzureADTokenExchange"])  # the public cloud's: refused there
    assert "no federated credential" in preflight(tmp_path, recorded).stdout


def test_registration_only_needs_no_resource_group_and_skips_the_credential(tmp_path):
    recorded = recordings()
    result = preflight(tmp_path, recorded, "--registration-only", RESOURCE_GROUP="",
                       ENVIRONMENT_NAME="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "federated credential not checked" in result.stdout
    assert not {"bicep build", "deployment group what-if"} & {c["command"] for c in calls(tmp_path)}


def test_not_signed_in_stops_at_once(tmp_path):
    recorded = recordings()
    recorded["account show"] = {"exit": 1, "text": "Please run 'az login'"}
    result = preflight(tmp_path, recorded)
    assert result.returncode == 1 and "az login" in result.stdout
