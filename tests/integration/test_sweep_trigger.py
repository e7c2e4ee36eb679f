"""The sweep trigger the key-rotation pipelines share (``infra/pipelines/trigger-sweep.sh``).

It runs for real (bash, curl) against a local HTTPS fake of the Functions admin endpoint, with
a fake ``az`` on PATH standing in for Azure Resource Manager: a subprocess and a server, so it
is an integration test (the pipelines' YAML is read in tests/infra/test_pipelines.py).
"""

import json
import os
import subprocess
from http.server import BaseHTTPRequestHandler

import pytest

from tests.infra.templates import INFRA
from tokenvault.dev.tls import HTTPSServer

TRIGGER = INFRA / "pipelines" / "trigger-sweep.sh"
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
