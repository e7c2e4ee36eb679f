"""The app runs on every Python version the Bicep parameter offers, and CI stays on 3.11.

azure-functions 1.x declares ``Requires-Python <3.13`` and 2.x (the same API) ``>=3.13``
(https://github.com/Azure/azure-functions-python-library/releases/tag/2.0.0), so
requirements.txt pins one or the other by environment marker. pip evaluates those markers on
the interpreter that installs, which in Azure is the app's own Python (remote build).
"""

import re

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.infra.templates import INFRA, ROOT, bicep_params

#: What each azure-functions pin declares as Requires-Python on PyPI (checked with
#: `pip download --python-version`): a pin outside its range fails to install in Azure.
REQUIRES_PYTHON = {"1.26.0": SpecifierSet(">=3.10,<3.13"), "2.3.0": SpecifierSet(">=3.13")}


def offered_versions() -> list[str]:
    return re.findall(r"'([\d.]+)'", bicep_params()["pythonVersion"].decorators["allowed"])


def requirements() -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def applicable(python: str) -> list[Requirement]:
    env = {"python_version": python, "python_full_version": python + ".0"}
    return [r for r in requirements() if r.marker is None or r.marker.evaluate(env)]


@pytest.mark.parametrize("python", offered_versions())
def test_exactly_one_azure_functions_pin_applies_and_it_installs_there(python):
    [pin] = [r for r in applicable(python) if r.name == "azure-functions"]
    [version] = [s.version for s in pin.specifier]
    assert python + ".0" in REQUIRES_PYTHON[version], f"azure-functions {version} on {python}"


@pytest.mark.parametrize("python", offered_versions())
def test_every_other_pin_applies_everywhere_pinned_exactly(python):
    others = [r for r in applicable(python) if r.name != "azure-functions"]
    assert {r.name for r in others} == {r.name for r in requirements() if r.name != "azure-functions"}
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in others)


def test_the_project_declares_the_range_the_template_offers():
    text = (ROOT / "pyproject.toml").read_text()
    declared = SpecifierSet(re.search(r'requires-python = "([^"]+)"', text).group(1))
    assert all(python + ".0" in declared for python in offered_versions())
    assert bicep_params()["pythonVersion"].default == "'3.11'"


def test_ci_and_the_pipelines_stay_on_3_11():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "rotate-keys.yml").read_text())
    [job] = workflow["jobs"].values()
    [setup] = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python")]
    assert setup["with"]["python-version"] == "3.11"
    pipeline = yaml.safe_load((INFRA / "pipelines" / "rotate-keys.yml").read_text())
    steps = pipeline["stages"][0]["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"]
    [use] = [s for s in steps if s.get("task") == "UsePythonVersion@0"]
    assert use["inputs"]["versionSpec"] == "3.11"
