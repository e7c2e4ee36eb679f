"""The workbook and the alert rules (infra/app/observability.bicep, the same resources in
infra/azuredeploy.json): both templates carry the same workbook and the same queries, read from
infra/app/observability/, and every query asks for what the app really exports — the metric
names and dimensions of its catalog (tokenvault/observe.py), its span names, its audit records,
its outcome and problem codes. Nothing here reaches Azure: KQL is checked as text."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.templates import INFRA, arm, arm_resources, bicep_resources
from tokenvault.audit import Audit
from tokenvault.errors import PUBLIC_CODES
from tokenvault.maintenance import Outcome
from tokenvault.observe import METRICS

OBSERVABILITY = INFRA / "app" / "observability"
WORKBOOK = OBSERVABILITY / "workbook.json"
RULE = "Microsoft.Insights/scheduledQueryRules"
METRIC_NAMES = {m.name for m in METRICS}
DIMENSIONS = set().union(*(m.dimensions for m in METRICS))
AUDIT_FIELDS = set(Audit("redeem", "c").fields("ok"))
SPANS = {"http.store", "http.redeem", "http.describe", "http.forget", "sweep.plan", "sweep.batch",
         "identity_provider.refresh", "identity_provider.on_behalf_of"}


def workbook() -> dict:
    return json.loads(WORKBOOK.read_text())


def workbook_queries() -> dict[str, str]:
    return {item["name"]: item["content"]["query"] for item in workbook()["items"]
            if item["type"] == 3}


def rule_files() -> list[str]:
    return sorted(p.name for p in OBSERVABILITY.glob("*.kql"))


def check_query(kql: str) -> None:
    """Every name the query picks is one the app exports."""
    for name in re.findall(r'name (?:==|in) \(?"([^"]+)"', kql) + re.findall(
            r'name in \(([^)]*)\)', kql):
        for metric in re.findall(r'"([^"]+)"', name) or [name]:
            assert metric in METRIC_NAMES | SPANS, metric
    for dimension in re.findall(r"customDimensions\.(\w+)", kql):
        assert dimension in DIMENSIONS, dimension
    for field in re.findall(r"audit\.(\w+)", kql):
        assert field in AUDIT_FIELDS, field
    for code in re.findall(r'\.(?:code|outcome)\) [!=]= "(\w+)"', kql):
        assert code in PUBLIC_CODES or code in {o.value for o in Outcome} or code == "ok", code


# --- the workbook ------------------------------------------------------------------------------

def test_both_templates_deploy_the_workbook_file_on_the_application_insights_component():
    (bicep,) = [r for r in bicep_resources() if r.type == "Microsoft.Insights/workbooks"]
    assert "loadTextContent('observability/workbook.json')" in bicep.body
    assert bicep.value("sourceId") == "applicationInsights.id"
    (resource,) = [r for r in arm_resources() if r["type"] == "Microsoft.Insights/workbooks"]
    assert json.loads(arm()["variables"]["workbookContent"]) == workbook()
    assert "variables('workbookContent')" in resource["properties"]["serializedData"]
    assert "Microsoft.Insights/components" in resource["properties"]["sourceId"]
    assert (resource["kind"], resource["properties"]["category"]) == ("shared", "workbook")


def test_the_workbook_shows_what_the_issue_asks_for():
    queries = workbook_queries()
    text = "\n".join(queries.values())
    assert workbook()["version"] == "Notebook/1.0"
    for needed in ('"tokenvault.requests"',                    # request rate, failures by code
                   'name == "http.redeem"',                    # redeem latency
                   '"tokenvault.identity_provider.duration"',  # identity-provider outcomes
                   '"tokenvault.sweep.records"',               # sweep progress
                   '"tokenvault.keys.records"', '"tokenvault.keys.oldest_in_use_age"'):  # inventory
        assert needed in text, needed
    assert "tenant_id" in queries["inventory"]


@pytest.mark.parametrize("name", list(workbook_queries()))
def test_every_workbook_query_asks_for_what_the_app_exports(name):
    check_query(workbook_queries()[name])


# --- the alert rules ---------------------------------------------------------------------------

def bicep_rules() -> dict[str, object]:
    found = {}
    for r in (r for r in bicep_resources() if r.type == RULE):
        (kql,) = re.findall(r"loadTextContent\('observability/([\w-]+\.kql)'\)", r.body)
        found[kql] = r
    return found


def arm_rules() -> dict[str, dict]:
    by_query = {(OBSERVABILITY / f).read_text(): f for f in rule_files()}
    found = {}
    for r in (r for r in arm_resources() if r["type"] == RULE):
        (criterion,) = r["properties"]["criteria"]["allOf"]
        found[by_query[criterion["query"]]] = r  # a KeyError: the ARM query is not a file's
    return found


def test_the_four_alerts_are_in_both_templates_with_the_same_query_files():
    assert rule_files() == ["poison-messages.kql", "reauth-spike.kql", "stale-key-version.kql",
                            "sweep-failures.kql"]
    assert sorted(bicep_rules()) == sorted(arm_rules()) == sorted(rule_files())


@pytest.mark.parametrize("kql", rule_files())
def test_each_alert_agrees_across_templates_and_measures_a_column_its_query_makes(kql):
    bicep, resource = bicep_rules()[kql], arm_rules()[kql]
    props = resource["properties"]
    (criterion,) = props["criteria"]["allOf"]
    query = (OBSERVABILITY / kql).read_text()
    check_query(query)
    assert re.search(rf"summarize {criterion['metricMeasureColumn']} = ", query)
    assert "bin(timestamp, " in query
    assert resource["kind"] == "LogAlert" and bicep.value("kind") == "'LogAlert'"
    for key in ("displayName", "evaluationFrequency", "windowSize"):
        assert bicep.value(key) == f"'{props[key]}'", key
    assert int(bicep.value("severity")) == props["severity"]
    for key in ("timeAggregation", "metricMeasureColumn", "operator"):
        assert bicep.value(key) == f"'{criterion[key]}'", key
    threshold = bicep.value("threshold")
    assert (str(criterion["threshold"]) == threshold
            or criterion["threshold"] == f"[parameters('{threshold}')]")
    assert props["scopes"] == ["[resourceId('Microsoft.Insights/components', "
                               "variables('applicationInsightsName'))]"]
    assert bicep.value("scopes") == "[ applicationInsights.id ]"
    assert props["actions"] == "[variables('alertActions')]" and bicep.value("actions") == "actions"


def test_the_stale_key_alert_fires_per_tenant_above_the_rotation_period():
    (criterion,) = arm_rules()["stale-key-version.kql"]["properties"]["criteria"]["allOf"]
    assert criterion["dimensions"] == [{"name": "tenant_id", "operator": "Include", "values": ["*"]}]
    assert criterion["threshold"] == "[parameters('staleKeyVersionDays')]"
    params = arm()["parameters"]
    assert params["staleKeyVersionDays"]["defaultValue"] == 32  # monthly rotation and a day


def test_alerts_notify_an_action_group_only_when_an_address_is_given():
    (group,) = [r for r in arm_resources() if r["type"] == "Microsoft.Insights/actionGroups"]
    assert group["condition"] == "[variables('notify')]"
    assert arm()["variables"]["notify"] == "[not(empty(parameters('alertEmail')))]"
    assert arm()["parameters"]["alertEmail"]["defaultValue"] == ""
    (bicep,) = [r for r in bicep_resources() if r.type == "Microsoft.Insights/actionGroups"]
    assert bicep.condition == "notify"
