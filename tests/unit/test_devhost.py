"""The dev host maps requests to declared functions as the Functions host does."""

import json
import time

import azure.functions as func
import pytest

from tokenvault.dev.devhost import DevHost


@pytest.fixture
def host(monkeypatch) -> DevHost:
    monkeypatch.setenv("DEVHOST_TEST_SCHEDULE", "0 */5 * * * *")
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    seen = []

    @app.route(route="things/{a}/{b}", methods=["GET"])
    def get_thing(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({**req.route_params, **req.params}),
                                 mimetype="application/json")

    @app.route(route="things", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    def post_thing(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.get_body(), status_code=201)

    @app.timer_trigger(arg_name="timer", schedule="%DEVHOST_TEST_SCHEDULE%")
    def tick(timer: func.TimerRequest) -> None:
        seen.append(("tick", timer.past_due))

    @app.queue_trigger(arg_name="message", queue_name="q", connection="AzureWebJobsStorage")
    def work(message: func.QueueMessage) -> None:
        seen.append(("work", message.get_body()))

    h = DevHost(app, host_config={"extensions": {"queues": {"maxDequeueCount": 3}}})
    h.seen = seen
    return h


def test_routes_with_parameters_and_query(host):
    response = host.http("GET", "/api/things/x1/y2?z=3", {}, b"")
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {"a": "x1", "b": "y2", "z": "3"}


def test_a_method_the_route_does_not_declare_is_not_found_as_on_the_host(host):
    # The Functions host answers 404, not 405, for a method a route does not declare.
    assert host.http("DELETE", "/api/things/x/y", {}, b"").status_code == 404
    assert host.http("PUT", "/api/things", {}, b"").status_code == 404
    assert host.http("GET", "/api/nothing", {}, b"").status_code == 404
    assert host.http("GET", "/things/x/y", {}, b"").status_code == 404


def test_routes_match_case_insensitively_and_keep_the_values_case(host):
    response = host.http("GET", "/API/Things/X1/Y2", {}, b"")
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {"a": "X1", "b": "Y2"}
    assert host.http("post", "/api/THINGS", {}, b"hi").status_code == 201


def test_route_literals_are_not_patterns(monkeypatch):
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="openapi.json", methods=["GET"])
    def openapi(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("{}")

    h = DevHost(app)
    assert h.http("GET", "/api/openapi.json", {}, b"").status_code == 200
    assert h.http("GET", "/api/openapiXjson", {}, b"").status_code == 404


def test_the_body_reaches_the_function(host):
    response = host.http("POST", "/api/things", {"Content-Type": "text/plain"}, b"hello")
    assert response.status_code == 201 and response.get_body() == b"hello"


def test_triggers_are_indexed_with_their_settings(host):
    assert set(host.timers) == {"tick"} and set(host.queues) == {"work"}
    assert host.timers["tick"][1].minutes == frozenset(range(0, 60, 5))
    assert host.max_dequeue == 3


def test_admin_call_runs_a_non_http_function_now(host):
    assert host.run_now("tick", b"").status_code == 202
    assert host.run_now("work", json.dumps({"input": "payload"}).encode()).status_code == 202
    assert host.run_now("get_thing", b"").status_code == 404
    deadline = time.monotonic() + 5
    while len(host.seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(host.seen) == [("tick", False), ("work", b"payload")]
