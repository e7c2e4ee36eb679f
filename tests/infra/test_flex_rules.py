"""The templates follow Microsoft's documented rules for Flex Consumption apps.

Nothing here can deploy, so each rule that would otherwise surface as a failed first
deployment is written down with the page that states it, and both templates are held to it.
"""

import re

import pytest

from tests.infra.templates import INFRA, arm, arm_only, bicep_params, bicep_resources, bicep_text
from tests.infra.test_app_settings import arm_app_settings, bicep_app_settings

DEPRECATIONS = "https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations"
CONSIDERATIONS = "https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations"

#: Site properties Flex Consumption deprecates or rejects, with where that is said.
UNSUPPORTED_SITE_PROPERTIES = {
    "alwaysOn": DEPRECATIONS,
    "containerSize": DEPRECATIONS,
    # Deprecated in the table above; current stamps reject it outright with
    # BadRequest 51021 "FtpsState ... for Flex Consumption sites is invalid" (docs/field-notes.md).
    "ftpsState": DEPRECATIONS,
    "isReserved": DEPRECATIONS,
    "IsXenon": DEPRECATIONS,
    "javaVersion": DEPRECATIONS,
    "linuxFxVersion": DEPRECATIONS,
    "netFrameworkVersion": DEPRECATIONS,
    "powerShellVersion": DEPRECATIONS,
    "functionAppScaleLimit": DEPRECATIONS,
    "preWarmedInstanceCount": DEPRECATIONS,
    "use32BitWorkerProcess": DEPRECATIONS,
    "vnetBackupRestoreEnabled": DEPRECATIONS,
    "vnetContentShareEnabled": DEPRECATIONS,
    "vnetImagePullEnabled": DEPRECATIONS,
    "vnetRouteAllEnabled": DEPRECATIONS,
    "windowsFxVersion": DEPRECATIONS,
}
#: App settings Flex Consumption deprecates or does not support, with where that is said.
UNSUPPORTED_APP_SETTINGS = {
    "ENABLE_ORYX_BUILD": DEPRECATIONS,
    "FUNCTIONS_EXTENSION_VERSION": DEPRECATIONS,
    "FUNCTIONS_WORKER_RUNTIME": DEPRECATIONS,
    "FUNCTIONS_WORKER_RUNTIME_VERSION": DEPRECATIONS,
    "FUNCTIONS_MAX_HTTP_CONCURRENCY": DEPRECATIONS,
    "FUNCTIONS_WORKER_PROCESS_COUNT": DEPRECATIONS,
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED": DEPRECATIONS,
    "SCM_DO_BUILD_DURING_DEPLOYMENT": DEPRECATIONS,
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": DEPRECATIONS,
    "WEBSITE_CONTENTOVERVNET": DEPRECATIONS,
    "WEBSITE_CONTENTSHARE": DEPRECATIONS,
    "WEBSITE_DNS_SERVER": DEPRECATIONS,
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT": DEPRECATIONS,
    "WEBSITE_NODE_DEFAULT_VERSION": DEPRECATIONS,
    "WEBSITE_RUN_FROM_PACKAGE": DEPRECATIONS,
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION": DEPRECATIONS,
    "WEBSITE_VNET_ROUTE_ALL": DEPRECATIONS,
    "WEBSITE_TIME_ZONE": CONSIDERATIONS,
    "TZ": CONSIDERATIONS,
    "WEBSITE_LOAD_CERTIFICATES": CONSIDERATIONS,
}
#: "The lowest maximum scale is currently 40. The highest currently supported value is 1000."
MAXIMUM_INSTANCE_COUNT = (40, 1000)  # CONSIDERATIONS
#: Python versions a Flex Consumption app may run, per
#: https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#supported-language-stack-versions
#: (3.10-3.12) and https://learn.microsoft.com/azure/azure-functions/python-313-changes (3.13).
FLEX_PYTHON_VERSIONS = {"3.10", "3.11", "3.12", "3.13"}

SITE = "Microsoft.Web/sites"


def keys_in(tree) -> set[str]:
    """Every key of a JSON tree, at any depth."""
    if isinstance(tree, dict):
        return set(tree) | {k for value in tree.values() for k in keys_in(value)}
    if isinstance(tree, list):
        return {k for item in tree for k in keys_in(item)}
    return set()


def bicep_site_keys() -> set[str]:
    [site] = [r for r in bicep_resources() if r.type == SITE and not r.existing]
    return set(re.findall(r"^\s*(\w+):", site.body, re.M))


def folded(names) -> set[str]:
    return {name.lower() for name in names}


@pytest.mark.parametrize("keys", [bicep_site_keys, lambda: keys_in(arm_only(SITE)["properties"])],
                         ids=["bicep", "arm"])
def test_the_site_sets_no_property_flex_consumption_rejects(keys):
    found = folded(keys()) & folded(UNSUPPORTED_SITE_PROPERTIES)
    assert not found, {name: UNSUPPORTED_SITE_PROPERTIES[name] for name in UNSUPPORTED_SITE_PROPERTIES
                       if name.lower() in found}


@pytest.mark.parametrize("settings", [bicep_app_settings, arm_app_settings], ids=["bicep", "arm"])
def test_no_app_setting_flex_consumption_deprecates(settings):
    found = folded(settings()) & folded(UNSUPPORTED_APP_SETTINGS)
    assert not found, {name: UNSUPPORTED_APP_SETTINGS[name] for name in UNSUPPORTED_APP_SETTINGS
                       if name.lower() in found}


def test_the_check_sees_a_rejected_property_where_the_templates_put_one():
    # The scanner reads nested siteConfig keys and any app setting name.
    site = {"siteConfig": {"minTlsVersion": "1.2", "FtpsState": "Disabled"}}
    assert folded(keys_in(site)) & folded(UNSUPPORTED_SITE_PROPERTIES) == {"ftpsstate"}
    assert folded({"FUNCTIONS_WORKER_RUNTIME": "python"}) & folded(UNSUPPORTED_APP_SETTINGS)


def test_the_maximum_instance_count_stays_within_flex_consumption_bounds():
    low, high = MAXIMUM_INSTANCE_COUNT
    bicep = bicep_params()["maximumInstanceCount"]
    assert int(bicep.decorators["minValue"]) >= low and int(bicep.decorators["maxValue"]) <= high
    assert low <= int(bicep.default) <= high
    declared = arm()["parameters"]["maximumInstanceCount"]
    assert declared["minValue"] >= low and declared["maxValue"] <= high
    assert low <= declared["defaultValue"] <= high


def test_the_python_version_is_a_parameter_limited_to_versions_flex_consumption_runs():
    bicep = bicep_params()["pythonVersion"]
    allowed = set(re.findall(r"'([\d.]+)'", bicep.decorators["allowed"]))
    assert allowed <= FLEX_PYTHON_VERSIONS and "3.11" in allowed
    assert set(arm()["parameters"]["pythonVersion"]["allowedValues"]) == allowed
    assert arm_only(SITE)["properties"]["functionAppConfig"]["runtime"]["version"] \
        == "[parameters('pythonVersion')]"
    assert "version: pythonVersion" in bicep_text(INFRA / "app" / "api.bicep")


def test_the_vault_audit_log_goes_to_the_resource_specific_table():
    # AZKVAuditLogs, not AzureDiagnostics: https://learn.microsoft.com/azure/azure-monitor/reference/tables/azkvauditlogs
    setting = arm_only("Microsoft.Insights/diagnosticSettings")["properties"]
    assert setting["logAnalyticsDestinationType"] == "Dedicated"
    assert "logAnalyticsDestinationType: 'Dedicated'" in bicep_text(INFRA / "app" / "keyvault.bicep")
