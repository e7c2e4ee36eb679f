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

#: Azure built-in roles, name → id, as Microsoft's table lists them:
#: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
#: (storage: .../built-in-roles/storage, security: .../built-in-roles/security,
#: monitor: .../built-in-roles/monitor). Every role id a template names must be one of these,
#: under its own name.
BUILT_IN_ROLES = {
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Table Data Reader": "76199698-9eea-4c19-bc75-cec21354c6b6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
#: The templates' own names for them (``roles.keyVaultSecretsUser``): the role name, camelCase.
ROLES = {name[0].lower() + name.replace(" ", "")[1:]: guid for name, guid in BUILT_IN_ROLES.items()}
VAULT = "Microsoft.KeyVault/vaults"
ACCOUNT = "Microsoft.Storage/storageAccounts"
TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
# Least privilege, as (principal, role, scope type). "sweepTrigger" is the custom role whose
# only action is Microsoft.Web/sites/host/listkeys/action; "keyRotator" the custom role whose
# only data actions are setSecret and readMetadata on secrets. The function's storage roles are
# the ones Microsoft lists for identity-based host storage, at the account as the Flex
# Consumption quickstart assigns them: Table Data Contributor there also covers the host's
# diagnostic events (https://learn.microsoft.com/azure/azure-functions/functions-reference#grant-permissions-to-an-identity).
FUNCTION_GRANTS = {
    ("function", "keyVaultSecretsUser", VAULT),
    ("function", "storageBlobDataOwner", ACCOUNT),
    ("function", "storageQueueDataContributor", ACCOUNT),
    ("function", "storageTableDataContributor", ACCOUNT),
    ("function", "monitoringMetricsPublisher", "Microsoft.Insights/components"),
}
GRANTS = FUNCTION_GRANTS | {
    ("pipeline", "keyRotator", VAULT),
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

def bicep_grants(only=None) -> set[tuple[str, str, str]]:
    resources = bicep_resources()
    grants = set()
    for r in (r for r in resources if r.type == "Microsoft.Authorization/roleAssignments"
              and (only is None or r.file == only)):
        scope = next(s.type for s in resources if s.file == r.file and s.symbol == r.value("scope"))
        role = re.search(r"roles\.(\w+)|(sweepTriggerRole)|(keyRotatorRole)",
                         r.value("roleDefinitionId"))
        name = role.group(1) or ("sweepTrigger" if role.group(2) else "keyRotator")
        grants.add((r.value("principalId").removesuffix("PrincipalId"), name, scope))
    return grants


def arm_grants() -> set[tuple[str, str, str]]:
    grants = set()
    for r in (r for r in arm_resources() if r["type"] == "Microsoft.Authorization/roleAssignments"):
        props = r["properties"]
        principal = "pipeline" if "pipelinePrincipalId" in props["principalId"] else "function"
        assert principal == "pipeline" or "userAssignedIdentities" in props["principalId"]
        role = re.search(r"variables\('roles'\)\.(\w+)|(tokenvault-sweep-trigger)|"
                         r"(tokenvault-key-rotator)", props["roleDefinitionId"])
        name = role.group(1) or ("sweepTrigger" if role.group(2) else "keyRotator")
        grants.add((principal, name, scope_type(r["scope"])))
    return grants


def test_each_principal_gets_exactly_the_least_privileged_roles_in_both_templates():
    assert bicep_grants() == GRANTS
    assert arm_grants() == GRANTS


def bicep_role_ids() -> dict[str, str]:
    """Every ``var roles = {...}`` of the Bicep modules, merged (a name must mean one id)."""
    found: dict[str, str] = {}
    for path in sorted((INFRA / "app").glob("*.bicep")):
        text = bicep_text(path)
        if "var roles =" in text:
            for name, value in bicep_object(text, "var roles =").items():
                assert found.setdefault(name, bicep_literal(value)) == bicep_literal(value), name
    return found


@pytest.mark.parametrize("ids", [bicep_role_ids, lambda: arm()["variables"]["roles"]],
                         ids=["bicep", "arm"])
def test_every_role_id_is_the_documented_built_in_role_of_its_name(ids):
    named = ids()
    assert named, "no role ids found"
    for name, guid in named.items():
        assert ROLES.get(name) == guid, f"{name} = {guid} is not that built-in role"


def test_both_templates_name_the_same_role_ids():
    assert bicep_role_ids() == arm()["variables"]["roles"]


def test_the_documented_role_table_is_what_the_check_compares_against():
    # The check above is only as good as this table: one id per name, all distinct GUIDs.
    assert len(set(BUILT_IN_ROLES.values())) == len(BUILT_IN_ROLES)
    assert all(re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", g)
               for g in BUILT_IN_ROLES.values())
    assert ROLES["storageTableDataContributor"] == BUILT_IN_ROLES["Storage Table Data Contributor"]


def test_the_function_identity_can_read_tenant_keys_but_never_set_them():
    on_vault = {role for who, role, scope in bicep_grants() | arm_grants()
                if who == "function" and scope == VAULT}
    assert on_vault == {"keyVaultSecretsUser"}


# --- the function's roles exist before the site starts --------------------------------------

def test_bicep_assigns_the_function_roles_in_a_module_the_site_waits_for():
    main = bicep_text(INFRA / "main.bicep")
    api = re.search(r"^module api 'app/api.bicep' = \{", main, re.M)
    assert api, "no api module"
    api_block = main[api.start():main.index("\n}\n", api.start())]
    waits_for = re.search(r"dependsOn: \[([^\]]*)\]", api_block)
    assert waits_for and "functionRbac" in waits_for.group(1).split()
    assert "module functionRbac 'app/function-rbac.bicep'" in main
    assert bicep_grants(INFRA / "app" / "function-rbac.bicep") == FUNCTION_GRANTS
    # and nothing in that module needs the site, or the order could not hold
    assert "Microsoft.Web/sites" not in bicep_text(INFRA / "app" / "function-rbac.bicep")


def test_the_arm_site_depends_on_every_function_role_assignment():
    site = arm_only("Microsoft.Web/sites")
    depends = site["dependsOn"]
    function_assignments = [r for r in arm_resources()
                            if r["type"] == "Microsoft.Authorization/roleAssignments"
                            and "pipelinePrincipalId" not in json.dumps(r)]
    assert len(function_assignments) == len(FUNCTION_GRANTS)
    for r in function_assignments:
        name = r["name"][1:-1]  # the guid(...) expression, without the brackets
        owner = re.search(r"resourceId\('([^']+)', variables\('(\w+)'\)\)", r["name"]).group(0)
        expected = (f"[extensionResourceId({owner}, 'Microsoft.Authorization/roleAssignments', "
                    f"{name})]")
        assert expected in depends, f"the site does not wait for {r['name']}"


ROLE_DEFINITIONS = "Microsoft.Authorization/roleDefinitions"


def custom_role(symbol: str, arm_name_part: str):
    """The custom role definition ``symbol`` in the Bicep and its ARM twin."""
    [bicep] = [r for r in bicep_resources() if r.type == ROLE_DEFINITIONS and r.symbol == symbol]
    [arm_side] = [r for r in arm_resources()
                  if r["type"] == ROLE_DEFINITIONS and arm_name_part in r["name"]]
    return bicep, arm_side


def test_the_sweep_trigger_role_can_only_read_the_host_keys():
    bicep, arm_side = custom_role("sweepTriggerRole", "tokenvault-sweep-trigger")
    assert re.findall(r"'(Microsoft\.[^']+)'", bicep.body) == ["Microsoft.Web/sites/host/listkeys/action"]
    assert "dataActions" not in bicep.body
    assert arm_side["properties"]["permissions"] == [
        {"actions": ["Microsoft.Web/sites/host/listkeys/action"], "notActions": []}]


#: What the rotation pipeline may do to secrets: add a version, read metadata. Never getSecret
#: (read a key), delete, purge, recover, backup or restore
#: (https://learn.microsoft.com/azure/role-based-access-control/permissions/security#microsoftkeyvault).
KEY_ROTATOR_DATA_ACTIONS = ["Microsoft.KeyVault/vaults/secrets/setSecret/action",
                            "Microsoft.KeyVault/vaults/secrets/readMetadata/action"]


def test_the_pipeline_can_add_key_versions_but_never_read_delete_or_purge_a_key():
    bicep, arm_side = custom_role("keyRotatorRole", "tokenvault-key-rotator")
    rbac = bicep_text(INFRA / "app" / "rbac.bicep")
    declared = rbac[rbac.index("var keyRotatorDataActions"):]
    declared = declared[:declared.index("]")]
    assert re.findall(r"'(Microsoft\.[^']+)'", declared) == KEY_ROTATOR_DATA_ACTIONS
    assert bicep.value("dataActions") == "keyRotatorDataActions"
    assert re.search(r"actions: \[\]", bicep.body)
    [permissions] = arm_side["properties"]["permissions"]
    assert permissions["actions"] == [] and permissions["notDataActions"] == []
    assert arm()["variables"]["keyRotatorDataActions"] == KEY_ROTATOR_DATA_ACTIONS
    assert permissions["dataActions"] == "[variables('keyRotatorDataActions')]"
    # ... and no built-in Key Vault role that reads or deletes keys is the pipeline's.
    assert {role for who, role, _ in GRANTS if who == "pipeline"} == \
        {"keyRotator", "storageTableDataReader", "sweepTrigger"}


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
