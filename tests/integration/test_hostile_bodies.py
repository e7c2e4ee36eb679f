"""Hostile bodies and ids against function_app's functions, with every real part behind them:
oversized and deeply nested bodies, bytes that are not UTF-8, and ids built to break out of a
Table key or filter. Each is answered 400 (naming the field) or 413, never 500, and nothing of
it reaches storage: the table and queue clients' requests are counted by a request hook."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from tests.support.stack_fixtures import FUNCTIONS, SCOPES, StorageRequests, new_id
from tokenvault.http import MAX_BODY
from tokenvault.model import RecordKey


def body(response) -> dict:
    return json.loads(response.get_body())


class Scene:
    """A stored user, the app watched for storage requests, and the counters a refused request
    must leave alone."""

    def __init__(self, stack, storage: StorageRequests) -> None:
        self.stack, self.storage = stack, storage
        self.tenant, self.user = stack.onboard(), new_id()
        assert stack.store(self.tenant, self.user).status_code == 201
        self.etag = stack.records.get(RecordKey(self.tenant, self.user)).etag
        self.token = stack.user_token(self.tenant, self.user)
        self.app = stack.app_token(roles=("TokenVault.Redeem", "TokenVault.Admin"))
        storage.clear()
        self.grants = stack.entra.counts["obo"] + stack.entra.counts["refresh"]

    def post(self, function: str, raw: bytes, *, token: str | None = None,
             content_type: str = "application/json"):
        return self.stack.call(function, body=raw, token=token or self.token,
                               headers={"Content-Type": content_type})

    def assert_nothing_reached_storage_or_the_idp(self) -> None:
        assert self.storage.seen == [], f"storage was called: {self.storage.seen}"
        assert self.stack.entra.counts["obo"] + self.stack.entra.counts["refresh"] == self.grants
        assert self.stack.records.get(RecordKey(self.tenant, self.user)).etag == self.etag


@pytest.fixture
def scene(stack, recompose) -> Scene:
    storage = StorageRequests()
    recompose(storage_options={"raw_request_hook": storage})
    return Scene(stack, storage)


def _padded(document: dict, size: int) -> bytes:
    raw = json.dumps(document).encode()
    return raw[:-1] + b" " * (size - len(raw)) + raw[-1:]


# --- size and depth --------------------------------------------------------------------------

OVERSIZED = {
    "one byte over 16 KiB": _padded({"scopes": SCOPES}, MAX_BODY + 1),
    "100k nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "1 MiB scope": b'{"scopes": ["' + b"x" * (1 << 20) + b'"]}',
}


def test_an_oversized_body_is_413(scene):
    for name, raw in OVERSIZED.items():
        for function in ("store_token", "redeem_token"):
            response = scene.post(function, raw)

            assert (response.status_code, body(response)["code"]) == \
                (413, "payload_too_large"), (name, function)
    scene.assert_nothing_reached_storage_or_the_idp()


def test_an_oversized_body_is_refused_before_the_token_is_looked_at(scene):
    response = scene.stack.call("redeem_token", body=b"x" * (MAX_BODY + 1))

    assert (response.status_code, body(response)["code"]) == (413, "payload_too_large")


def test_a_body_of_exactly_16_kib_is_served(scene):
    assert scene.post("redeem_token", _padded({"scopes": SCOPES}, MAX_BODY)).status_code == 200


NESTED = {
    "8000 nested arrays": b"[" * 8000 + b"]" * 8000,
    "nested in scopes": b'{"scopes": ' + b"[" * 8000 + b"]" * 8000 + b"}",
    "2500 nested objects": b'{"a":' * 2500 + b"1" + b"}" * 2500,
    "8000 unclosed arrays": b"[" * 8000,
}


def test_deeply_nested_json_under_the_size_limit_is_400_not_a_crash(scene):
    for name, raw in NESTED.items():
        assert len(raw) <= MAX_BODY
        for function in ("store_token", "redeem_token"):
            response = scene.post(function, raw)

            assert (response.status_code, body(response)["code"], body(response)["field"]) == \
                (400, "bad_request", "body"), (name, function)
    scene.assert_nothing_reached_storage_or_the_idp()


# --- encoding and shape ----------------------------------------------------------------------

BAD_BODIES = {
    "not UTF-8": (b'{"scopes": ["\xff\xfe\xfd"]}', "body"),
    "UTF-8 cut in a character": (b'{"scopes": ["caf\xc3"]}', "body"),
    "UTF-16 (JSON is UTF-8)": (json.dumps({"scopes": SCOPES}).encode("utf-16"), "body"),
    "UTF-32 (JSON is UTF-8)": (json.dumps({"scopes": SCOPES}).encode("utf-32"), "body"),
    "not JSON": (b"scopes=User.Read", "body"),
    "empty": (b"", "body"),
    "a list": (b"[]", "body"),
    "a string": (b'"scopes"', "body"),
    "null": (b"null", "body"),
    "NaN": (b"NaN", "body"),
    "unknown field": (b'{"scopes": ["a/b"], "admin": true}', "admin"),
    "unknown long field": (b'{"scopes": ["a/b"], "' + b"k" * 300 + b'": 1}', "k" * 64),
    "scopes missing": (b"{}", "scopes"),
    "scopes a string": (b'{"scopes": "User.Read"}', "scopes"),
    "scopes empty": (b'{"scopes": []}', "scopes"),
    "scopes NaN": (b'{"scopes": NaN}', "scopes"),
    "scope a number": (b'{"scopes": [1]}', "scopes"),
    "scope with a space": (b'{"scopes": ["User.Read Mail.Send"]}', "scopes"),
    "scope with a NUL": (b'{"scopes": ["User.Read\\u0000"]}', "scopes"),
    "scope with a newline": (b'{"scopes": ["User.Read\\n"]}', "scopes"),
    "scope a lone surrogate": (b'{"scopes": ["\\ud800"]}', "scopes"),
    "scope non-ASCII": ('{"scopes": ["Usér.Read"]}'.encode(), "scopes"),
    "scope too long": (json.dumps({"scopes": ["s" * 513]}).encode(), "scopes"),
    "21 scopes": (json.dumps({"scopes": [f"s{i}" for i in range(21)]}).encode(), "scopes"),
    "offline_access asked for": (b'{"scopes": ["offline_access"]}', "scopes"),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_a_malformed_body_is_400_naming_the_field(scene, name):
    raw, field = BAD_BODIES[name]

    for function in ("store_token", "redeem_token"):
        response = scene.post(function, raw)

        assert (response.status_code, body(response)["code"], body(response).get("field")) == \
            (400, "bad_request", field), function
    scene.assert_nothing_reached_storage_or_the_idp()


def test_a_body_that_does_not_say_it_is_json_is_400(scene):
    for content_type in ("", "text/plain", "application/x-www-form-urlencoded",
                         "application/jsonx", "multipart/form-data; boundary=x"):
        response = scene.post("redeem_token", json.dumps({"scopes": SCOPES}).encode(),
                              content_type=content_type)

        assert (response.status_code, body(response).get("field")) == (400, "Content-Type"), \
            content_type
    scene.assert_nothing_reached_storage_or_the_idp()


# --- ids ---------------------------------------------------------------------------------------

GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
HOSTILE_IDS = {
    "single quote": "0f8fad5b-d9cb-469f-a165-70867728950'",
    "double quote": '0f8fad5b-d9cb-469f-a165-70867728950"',
    "filter fragment": "x' or PartitionKey eq 'y",
    "always-true filter": "' or '1' eq '1",
    "eq fragment": f"{GUID}' eq '{GUID}",
    "slash": f"{GUID}/..",
    "backslash": f"{GUID}\\x",
    "hash": f"{GUID}#",
    "question mark": f"{GUID}?$filter=true",
    "percent-encoded": "0f8fad5b%2Dd9cb-469f-a165-70867728950e",
    "NUL": f"{GUID}\x00",
    "newline": f"{GUID}\n",
    "tab": f"\t{GUID}",
    "DEL": f"{GUID}\x7f",
    "upper case": GUID.upper(),
    "braces": "{" + GUID + "}",
    "no dashes": GUID.replace("-", ""),
    "urn": f"urn:uuid:{GUID}",
    "fullwidth digits": "０" + GUID[1:],
    "empty": "",
    "very long": GUID * 200,
}


@pytest.mark.parametrize("field", ["tenant_id", "user_id"])
def test_a_hostile_id_in_a_route_is_400_naming_it(scene, field):
    for name, value in HOSTILE_IDS.items():
        params = {"tenant_id": scene.tenant, "user_id": scene.user, field: value}
        for function, method in (("describe_token", "GET"), ("forget_token", "DELETE")):
            for caller, token in (("user", scene.token), ("app", scene.app)):
                response = scene.stack.call(function, method=method, token=token,
                                            route_params=params)

                assert (response.status_code, body(response)["code"],
                        body(response)["field"]) == (400, "bad_request", field), \
                    (name, function, caller)
    scene.assert_nothing_reached_storage_or_the_idp()


NOT_STRINGS = {"null": None, "number": 7, "list": ["a"], "object": {"eq": GUID}, "bool": True}


@pytest.mark.parametrize("field", ["tenant_id", "user_id"])
def test_a_hostile_id_in_the_redeem_body_is_400_naming_it(scene, field):
    for name, value in {**HOSTILE_IDS, **NOT_STRINGS}.items():
        named = {"tenant_id": scene.tenant, "user_id": scene.user, field: value}

        as_app = scene.stack.call("redeem_token", token=scene.app,
                                  body={"scopes": SCOPES, **named})
        as_user = scene.stack.call("redeem_token", token=scene.token,
                                   body={"scopes": SCOPES, **named})

        for answer in (as_app, as_user):
            assert (answer.status_code, body(answer)["code"], body(answer)["field"]) == \
                (400, "bad_request", field), name
    scene.assert_nothing_reached_storage_or_the_idp()


def test_an_app_must_name_both_ids(scene):
    for missing in ("tenant_id", "user_id"):
        named = {k: v for k, v in (("tenant_id", scene.tenant), ("user_id", scene.user))
                 if k != missing}
        response = scene.stack.call("redeem_token", token=scene.app,
                                    body={"scopes": SCOPES, **named})
        assert (response.status_code, body(response)["field"]) == (400, missing)
    scene.assert_nothing_reached_storage_or_the_idp()


HOSTILE_MESSAGES = {
    "tenant filter": {"v": 1, "kind": "batch", "tenant_id": "' or '1' eq '1", "users": [GUID]},
    "upper-case user": {"v": 1, "kind": "batch", "tenant_id": GUID, "users": [GUID.upper()]},
    "users a string": {"v": 1, "kind": "batch", "tenant_id": GUID,
                       "users": f"{GUID}' or RowKey ne '"},
    "plan without continuation": {"v": 1, "kind": "plan", "tenant_id": GUID,
                                  "continuation": None},
    "forged continuation": {"v": 1, "kind": "plan",
                            "continuation": "eyIkZmlsdGVyIjoiUGFydGl0aW9uS2V5IG5lICcnIn0"},
    "unknown version": {"v": 2, "kind": "batch", "tenant_id": GUID, "users": [GUID]},
}


def test_a_hostile_sweep_message_is_poisoned_before_it_reaches_the_table(scene):
    """The queue trigger, as the Functions host calls it: a message that can never be worked is
    moved to the poison queue at once (one queue request each) and never becomes a query."""
    poison = scene.stack.settings.backend.refresh_queue + "-poison"
    for message in HOSTILE_MESSAGES.values():
        queue_message = func.QueueMessage(body=json.dumps(message).encode())

        FUNCTIONS["refresh_work"].get_user_function()(queue_message)  # returns: not retried

    assert scene.storage.seen == [("POST", f"{scene.stack.azurite.queue_endpoint}/{poison}/messages")] \
        * len(HOSTILE_MESSAGES)
    scene.storage.clear()
    scene.assert_nothing_reached_storage_or_the_idp()
    assert scene.stack.app.sweep.plan_run().poisoned == len(HOSTILE_MESSAGES)
