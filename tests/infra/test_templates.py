"""The infrastructure templates hold the security facts TokenVault relies on, and the Bicep
(infra/main.bicep + infra/app/*.bicep) and the hand-written ARM template (infra/azuredeploy.json)
describe the same deployment.

Nothing here reaches Azure: the ARM JSON is read as data, the Bicep with the small scanner in
``tests/infra/templates.py``; checkov (scripts/checkov) checks the same files by its own rules.
"""

import json
import re
from collections import Counter

import pytest

from tests.infra.templates import (
    INFRA,
    arm,
    arm_only,
    arm_resources,
    bicep_literal,
    bicep_object,
    bicep_outputs,
    bicep_params,
    bicep_resources,
    bicep_text,
    scope_type,
)
from tokenvault.settings import REFRESH_QUEUE

ROLES = {  # Azure built-in role definition ids
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    "keyVaultSecretsOfficer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "storageTableDataReader": "76199698-9eea-4c19-bc75-cec21354c6b6",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
VAULT = "Microsoft.KeyVault/vaults"
ACCOUNT = "Microsoft.Storage/storageAccounts"
TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
# Least privilege, as (principal, role, scope type). "sweepTrigger" is the custom role whose
# only action is Microsoft.Web/sites/host/listkeys/action.
GRANTS = {
    ("function", "keyVaultSecretsUser", VAULT),
    ("function", "storageBlobDataOwner", ACCOUNT),
    ("function", "storageQueueDataContributor", ACCOUNT),
    ("function", "storageTableDataContributor", TABLE),
    ("function", "monitoringMetricsPublisher", "Microsoft.Insights/components"),
    ("pipeline", "keyVaultSecretsOfficer", VAULT),
    ("pipeline", "storageTableDataReader", TABLE),
    ("pipeline", "sweepTrigger", "Microsoft.Web/sites"),
}
SECURITY = [  # (resource type, property, required value) — in both templates
    (ACCOUNT, "allowSharedKeyAccess", False),
    (ACCOUNT, "allowBlobPublicAccess", False),
    (ACCOUNT, "minimumTlsVersion", "TLS1_2"),
    (ACCOUNT, "supportsHttpsTrafficOnly", True),
    (ACCOUNT, "allowCrossTenantReplication", False),
    (ACCOUNT, "defaultToOAuthAuthentication", True),
    (ACCOUNT + "/blobServices/containers", "publicAccess", "None"),
    (VAULT, "enableRbacAuthorization", True),
    (VAULT, "enableSoftDelete", True),
    ("Microsoft.Web/sites", "httpsOnly", True),
    ("Microsoft.Web/sites", "minTlsVersion", "1.2"),
    ("Microsoft.Web/sites", "scmMinTlsVersion", "1.2"),
    ("Microsoft.Web/sites", "ftpsState", "Disabled"),
    ("Microsoft.Web/sites", "remoteDebuggingEnabled", False),
    ("Microsoft.Insights/components", "DisableLocalAuth", True),
]


def bicep_of(type_: str):
    found = [r for r in bicep_resources() if r.type == type_ and not r.existing]
    assert len(found) == 1, f"expected one {type_} in the Bicep, found {len(found)}"
    return found[0]


def find(tree, key):
    """The first value under ``key`` anywhere in a JSON tree."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            value = find(item, key)
            if value is not None:
                return value
    return None


# --- the two templates agree -------------------------------------------------------------

def test_bicep_and_arm_declare_the_same_resources():
    bicep = Counter(r.type for r in bicep_resources() if not r.existing)
    assert bicep == Counter(r["type"] for r in arm_resources())


def test_bicep_and_arm_take_the_same_parameters_with_the_same_defaults_and_bounds():
    bicep, template = bicep_params(), arm()["parameters"]
    assert bicep.keys() == template.keys()
    for name, param in bicep.items():
        declared = template[name]
        assert param.type == declared["type"], name
        if param.default is None:
            assert "defaultValue" not in declared, name
        elif str(declared["defaultValue"]).startswith("["):
            assert f"[{param.default}]" == declared["defaultValue"], name
        else:
            assert bicep_literal(param.default) == declared["defaultValue"], name
        for decorator, key in (("minValue", "minValue"), ("maxValue", "maxValue"),
                               ("minLength", "minLength"), ("maxLength", "maxLength")):
            assert (int(param.decorators[decorator]) if decorator in param.decorators
                    else None) == declared.get(key), f"{name} @{decorator}"
        allowed = param.decorators.get("allowed")
        assert ([bicep_literal(v) for v in allowed.strip("[]").split()] if allowed
                else None) == declared.get("allowedValues"), f"{name} @allowed"


def test_bicep_and_arm_give_the_same_outputs():
    assert set(bicep_outputs()) == set(arm()["outputs"])


@pytest.mark.parametrize("type_, prop, required", SECURITY,
                         ids=[f"{t.split('/')[-1]}.{p}" for t, p, _ in SECURITY])
def test_security_critical_property_holds_in_both_templates(type_, prop, required):
    assert bicep_literal(bicep_of(type_).value(prop)) == required
    assert find(arm_only(type_)["properties"], prop) == required


def test_publishing_with_passwords_is_off_in_both_templates():
    kind = "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    bicep = [r for r in bicep_resources() if r.type == kind]
    arm_side = [r for r in arm_resources() if r["type"] == kind]
    assert {r.value("name") for r in bicep} == {"'ftp'", "'scm'"}
    assert {r["name"].split("'")[-2] for r in arm_side} == {"ftp", "scm"}
    assert all(r.value("allow") == "false" for r in bicep)
    assert all(r["properties"]["allow"] is False for r in arm_side)


# --- who may do what ----------------------------------------------------------------------

def bicep_grants() -> set[tuple[str, str, str]]:
    resources = bicep_resources()
    grants = set()
    for r in (r for r in resources if r.type == "Microsoft.Authorization/roleAssignments"):
        scope = next(s.type for s in resources if s.file == r.file and s.symbol == r.value("scope"))
        role = re.search(r"roles\.(\w+)|(sweepTriggerRole)", r.value("roleDefinitionId"))
        grants.add((r.value("principalId").removesuffix("PrincipalId"),
                    role.group(1) or "sweepTrigger", scope))
    return grants


def arm_grants() -> set[tuple[str, str, str]]:
    grants = set()
    for r in (r for r in arm_resources() if r["type"] == "Microsoft.Authorization/roleAssignments"):
        props = r["properties"]
        principal = "pipeline" if "pipelinePrincipalId" in props["principalId"] else "function"
        assert principal == "pipeline" or "userAssignedIdentities" in props["principalId"]
        role = re.search(r"variables\('roles'\)\.(\w+)|(tokenvault-sweep-trigger)",
                         props["roleDefinitionId"])
        grants.add((principal, role.group(1) or "sweepTrigger", scope_type(r["scope"])))
    return grants


def test_each_principal_gets_exactly_the_least_privileged_roles_in_both_templates():
    assert bicep_grants() == GRANTS
    assert arm_grants() == GRANTS


def test_the_role_ids_are_the_built_in_ones_in_both_templates():
    rbac = bicep_text(INFRA / "app" / "rbac.bicep")
    assert {k: bicep_literal(v) for k, v in bicep_object(rbac, "var roles =").items()} == ROLES
    assert arm()["variables"]["roles"] == ROLES


def test_the_function_identity_can_read_tenant_keys_but_never_set_them():
    on_vault = {role for who, role, scope in GRANTS if who == "function" and scope == VAULT}
    assert on_vault == {"keyVaultSecretsUser"}
    assert ROLES["keyVaultSecretsUser"] == "4633458b-17de-408a-b874-0445c86b69e6"


def test_the_sweep_trigger_role_can_only_read_the_host_keys():
    bicep = bicep_of("Microsoft.Authorization/roleDefinitions")
    assert re.findall(r"'(Microsoft\.[^']+)'", bicep.body) == ["Microsoft.Web/sites/host/listkeys/action"]
    assert "dataActions" not in bicep.body
    permissions = arm_only("Microsoft.Authorization/roleDefinitions")["properties"]["permissions"]
    assert permissions == [{"actions": ["Microsoft.Web/sites/host/listkeys/action"], "notActions": []}]


def test_nothing_is_granted_to_the_pipeline_without_its_object_id():
    for r in bicep_resources():
        if "pipelinePrincipalId" in r.body and not r.existing:
            assert r.condition == "grantPipeline", r.symbol
    for r in arm_resources():
        if "pipelinePrincipalId" in json.dumps(r) or r["type"].endswith("roleDefinitions"):
            assert r["condition"] == "[variables('grantPipeline')]", r["name"]


# --- Key Vault ----------------------------------------------------------------------------

def test_purge_protection_is_a_parameter_off_by_default_in_both_templates():
    assert bicep_params()["enablePurgeProtection"].default == "false"
    assert bicep_of(VAULT).value("enablePurgeProtection") == "enablePurgeProtection ? true : null"
    assert arm()["parameters"]["enablePurgeProtection"]["defaultValue"] is False
    assert (arm_only(VAULT)["properties"]["enablePurgeProtection"]
            == "[if(parameters('enablePurgeProtection'), true(), null())]")


def test_soft_delete_retention_is_a_parameter_in_both_templates():
    assert bicep_of(VAULT).value("softDeleteRetentionInDays") == "softDeleteRetentionInDays"
    assert (arm_only(VAULT)["properties"]["softDeleteRetentionInDays"]
            == "[parameters('softDeleteRetentionInDays')]")


def test_storage_is_zone_redundant_unless_told_otherwise():
    assert bicep_params()["storageSkuName"].default == "'Standard_ZRS'"
    assert arm()["parameters"]["storageSkuName"]["defaultValue"] == "Standard_ZRS"


def test_the_sweep_queue_its_poison_queue_and_the_table_are_created():
    queues = [r["name"] for r in arm_resources() if r["type"].endswith("/queues")]
    storage = bicep_text(INFRA / "app" / "storage.bicep")
    assert f"var refreshQueueName = '{REFRESH_QUEUE}'" in storage
    assert "name: '${refreshQueueName}-poison'" in storage
    assert arm()["variables"]["refreshQueueName"] == REFRESH_QUEUE
    assert sorted("{2}-poison'" in q for q in queues) == [False, True]
    assert arm_only(TABLE)["name"].endswith("parameters('tableName'))]")


# --- the ARM template is well-formed --------------------------------------------------------

def test_every_parameter_and_variable_the_arm_template_uses_is_declared():
    template = arm()
    text = json.dumps({k: template[k] for k in ("variables", "resources", "outputs")})
    assert set(re.findall(r"parameters\('(\w+)'\)", text)) <= template["parameters"].keys()
    assert set(re.findall(r"variables\('(\w+)'\)", text)) <= template["variables"].keys()


def test_arm_resources_depend_on_every_resource_they_read():
    # reference(resourceId(...)) implies no dependency in ARM: dependsOn must name it.
    declared = {r["type"] for r in arm_resources()}
    for r in arm_resources():
        depends = " ".join(r.get("dependsOn", []))
        read = set(re.findall(r"reference\(resourceId\('([^']+)'", json.dumps(r.get("properties", {}))))
        for type_ in read & declared:
            assert f"resourceId('{type_}'" in depends or any(
                d.startswith(f"[resourceId('{type_}/") for d in r.get("dependsOn", [])), \
                f"{r['type']} reads {type_} without depending on it"
        for type_ in re.findall(r"resourceId\('([^']+)'", depends):
            assert type_ in declared, f"{r['type']} depends on undeclared {type_}"
