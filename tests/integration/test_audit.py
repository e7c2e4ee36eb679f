"""The audit trail (docs/design.md "Audit record"): every audited operation — each data route,
allowed or refused, and each ops CLI key or record command — writes exactly one record on
``tokenvault.audit`` with the contract's fields, and a refused token's claims are never
taken for facts."""

from __future__ import annotations

import io
import json
import logging

import pytest

from tests.support.stack_fixtures import CALLER_APP, CALLER_TENANT, SCOPES, STRANGER_APP, new_id
from tokenvault.cli import Context, main
from tokenvault.dev.entra_fake import SigningKey

FIELDS = {"action", "outcome", "caller", "tenant_id", "user_id", "correlation_id"}


@pytest.fixture
def audits(caplog):
    """The audit records written from here on, as (message fields, log record)."""
    caplog.set_level(logging.INFO, logger="tokenvault.audit")

    def written() -> list[dict]:
        found = []
        for record in caplog.records:
            if record.name == "tokenvault.audit":
                message = record.getMessage()
                assert message.startswith("audit ")
                found.append(json.loads(message[len("audit "):]))
        return found
    return written


class World:
    """A tenant with a stored user and the callers of every kind."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.tenant = stack.onboard()
        self.user = new_id()
        assert stack.store(self.tenant, self.user).status_code == 201
        self.key = {"tenant_id": self.tenant, "user_id": self.user}

    def user_token(self, user: str | None = None) -> str:
        return self.stack.user_token(self.tenant, user or self.user)

    def call(self, function: str, token: str | None, *, method="POST", body=None, route=None):
        return self.stack.call(function, method=method, token=token, body=body or b"",
                               route_params=route)


@pytest.fixture
def world(stack) -> World:
    return World(stack)


USER = "user:{user}@{tenant}"
APP = f"app:{CALLER_APP}@{CALLER_TENANT}"

# name: (request, expected status, expected record fields beyond correlation_id). {user},
# {tenant}, {other} are filled in from the world.
CASES = {
    "store": (lambda w: w.call("store_token", w.user_token(), body={"scopes": SCOPES}), 201,
              {"action": "store", "outcome": "ok", "caller": USER, "tenant_id": "{tenant}",
               "user_id": "{user}", "scopes": SCOPES}),
    "store by an app": (
        lambda w: w.call("store_token", w.stack.app_token(), body={"scopes": SCOPES}), 403,
        {"action": "store", "outcome": "insufficient_permissions", "caller": APP,
         "tenant_id": None, "user_id": None, "scopes": SCOPES}),
    "store, body not JSON": (
        lambda w: w.call("store_token", w.user_token(), body=b"{"), 400,
        {"action": "store", "outcome": "bad_request", "caller": USER, "tenant_id": "{tenant}",
         "user_id": "{user}", "scopes": None}),
    "redeem": (lambda w: w.call("redeem_token", w.user_token(), body={"scopes": SCOPES}), 200,
               {"action": "redeem", "outcome": "ok", "caller": USER, "tenant_id": "{tenant}",
                "user_id": "{user}", "scopes": SCOPES, "cached": False}),
    "redeem by a listed app": (
        lambda w: w.call("redeem_token", w.stack.app_token(), body={"scopes": SCOPES, **w.key}),
        200, {"action": "redeem", "outcome": "ok", "caller": APP, "tenant_id": "{tenant}",
              "user_id": "{user}", "scopes": SCOPES, "cached": False}),
    "redeem by an app not listed": (
        lambda w: w.call("redeem_token", w.stack.app_token(app_id=STRANGER_APP),
                         body={"scopes": SCOPES, **w.key}), 403,
        {"action": "redeem", "outcome": "insufficient_permissions",
         "caller": f"app:{STRANGER_APP}@{CALLER_TENANT}", "tenant_id": "{tenant}",
         "user_id": "{user}", "scopes": SCOPES, "cached": False}),
    "redeem of another user's record": (
        lambda w: w.call("redeem_token", w.user_token("{other}"),
                         body={"scopes": SCOPES, **w.key}), 403,
        {"action": "redeem", "outcome": "insufficient_permissions",
         "caller": "user:{other}@{tenant}", "tenant_id": "{tenant}", "user_id": "{user}",
         "scopes": SCOPES, "cached": False}),
    "redeem of nothing stored": (
        lambda w: w.call("redeem_token", w.user_token("{other}"), body={"scopes": SCOPES}), 404,
        {"action": "redeem", "outcome": "not_found", "caller": "user:{other}@{tenant}",
         "tenant_id": "{tenant}", "user_id": "{other}", "scopes": SCOPES, "cached": False}),
    "redeem without a token": (
        lambda w: w.call("redeem_token", None, body={"scopes": SCOPES}), 401,
        {"action": "redeem", "outcome": "invalid_token", "caller": "unauthenticated",
         "tenant_id": None, "user_id": None, "scopes": None, "cached": False}),
    "redeem, body too large": (
        lambda w: w.call("redeem_token", w.user_token(), body=b"x" * 20000), 413,
        {"action": "redeem", "outcome": "payload_too_large", "caller": "unauthenticated",
         "tenant_id": None, "user_id": None, "scopes": None, "cached": False}),
    "describe": (
        lambda w: w.call("describe_token", w.user_token(), method="GET", route=w.key), 200,
        {"action": "describe", "outcome": "ok", "caller": USER, "tenant_id": "{tenant}",
         "user_id": "{user}"}),
    "describe another user's record": (
        lambda w: w.call("describe_token", w.user_token("{other}"), method="GET", route=w.key),
        403, {"action": "describe", "outcome": "insufficient_permissions",
              "caller": "user:{other}@{tenant}", "tenant_id": "{tenant}", "user_id": "{user}"}),
    "forget by the admin app": (
        lambda w: w.call("forget_token", w.stack.app_token(roles=("TokenVault.Admin",)),
                         method="DELETE", route=w.key), 204,
        {"action": "forget", "outcome": "ok", "caller": APP, "tenant_id": "{tenant}",
         "user_id": "{user}"}),
    "forget of nothing stored": (
        lambda w: w.call("forget_token", w.user_token("{other}"), method="DELETE",
                         route={"tenant_id": w.tenant, "user_id": "{other}"}), 404,
        {"action": "forget", "outcome": "not_found", "caller": "user:{other}@{tenant}",
         "tenant_id": "{tenant}", "user_id": "{other}"}),
}


def _fill(value, names: dict):
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


class _Filled:
    """The world as the cases see it, with ``{other}`` a user id of the same tenant."""

    def __init__(self, world: World, other: str) -> None:
        self._world, self._names = world, {"user": world.user, "tenant": world.tenant,
                                           "other": other}
        self.stack, self.tenant, self.user, self.key = world.stack, world.tenant, world.user, world.key

    def user_token(self, user: str | None = None) -> str:
        return self._world.user_token(_fill(user, self._names) if user else None)

    def call(self, function, token, *, method="POST", body=None, route=None):
        return self._world.call(function, token, method=method, body=body,
                                route=_fill(route, self._names) if route else None)


@pytest.mark.parametrize("name", list(CASES))
def test_every_data_route_allowed_or_refused_writes_exactly_one_audit_record(world, audits, name):
    request, status, expected = CASES[name]
    other = new_id()
    before = len(audits())

    response = request(_Filled(world, other))

    assert response.status_code == status, response.get_body()
    written = audits()[before:]
    assert len(written) == 1, written
    (record,) = written
    assert FIELDS <= record.keys()
    assert record["correlation_id"] == response.headers["X-Correlation-Id"]
    assert {k: v for k, v in record.items() if k != "correlation_id"} == _fill(
        expected, {"user": world.user, "tenant": world.tenant, "other": other})


def test_a_redeem_from_the_cache_says_so(world, audits):
    for _ in range(2):
        assert world.call("redeem_token", world.user_token(),
                          body={"scopes": SCOPES}).status_code == 200
    assert [r["cached"] for r in audits() if r["action"] == "redeem"][-2:] == [False, True]


def test_a_forged_token_is_audited_without_trusting_any_of_its_claims(world, audits):
    attacker = SigningKey()
    victim_app = new_id()
    # The victim's own ids, an app id and roles, signed with the attacker's key.
    forged = world.stack.entra.user_token(world.tenant, world.user, key=attacker,
                                          claims={"azp": victim_app, "roles": ["TokenVault.Admin"]})
    before = len(audits())

    responses = [
        world.call("redeem_token", forged, body={"scopes": SCOPES}),
        world.call("describe_token", forged, method="GET", route=world.key),
    ]

    assert [r.status_code for r in responses] == [401, 401]
    written = audits()[before:]
    assert [r["outcome"] for r in written] == ["invalid_token", "invalid_token"]
    for record in written:
        assert record["caller"] == "unauthenticated"
    redeem, describe = written
    # Nothing the token said is recorded: not its tenant, user or app.
    assert (redeem["tenant_id"], redeem["user_id"], redeem["scopes"]) == (None, None, None)
    assert world.user not in json.dumps(redeem) and victim_app not in json.dumps(written)
    # describe names its target in the route, which is what was asked for, not who asked.
    assert (describe["tenant_id"], describe["user_id"]) == (None, None)


def test_an_audit_record_is_a_custom_dimension_per_field_when_exported(world, telemetry):
    telemetry.reset()
    response = world.call("redeem_token", world.user_token(), body={"scopes": SCOPES})
    (record,) = [r for r in telemetry.log_records() if r.attributes.get("audit") is True]
    assert record.body.startswith("audit ")
    assert {k: record.attributes[k] for k in ("action", "outcome", "caller", "tenant_id",
                                              "user_id", "correlation_id", "cached")} == {
        "action": "redeem", "outcome": "ok", "caller": f"user:{world.user}@{world.tenant}",
        "tenant_id": world.tenant, "user_id": world.user,
        "correlation_id": response.headers["X-Correlation-Id"], "cached": False}
    assert record.attributes["scopes"] == " ".join(SCOPES)


# --- the ops CLI ------------------------------------------------------------------------------

def cli(stack, *argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(key_admin=stack.admin, records=stack.records, app=lambda: stack.app,
                  out=out, err=err)
    return main([*argv, "--json"], context=ctx), err.getvalue()


def test_every_key_and_record_command_writes_one_audit_record_naming_the_operator(
        stack, audits, monkeypatch):
    monkeypatch.setenv("TOKENVAULT_OPERATOR", "alice@contoso.example")
    tenant, missing = new_id(), new_id()
    user = new_id()
    commands = [
        (("keys", "create", "--tenant", tenant), "keys.create", "ok", tenant, None),
        (("keys", "create", "--tenant", tenant), "keys.create", "key_exists", tenant, None),
        (("keys", "rotate", "--all"), "keys.rotate", "ok", None, None),
        (("keys", "list", "--tenant", tenant), "keys.list", "ok", tenant, None),
        (("records", "list", "--tenant", tenant), "records.list", "ok", tenant, None),
        (("records", "show", "--tenant", tenant, "--user", user), "records.show", "not_found",
         tenant, user),
        (("records", "forget", "--tenant", tenant, "--user", user), "records.forget",
         "not_found", tenant, user),
        (("records", "purge", "--tenant", tenant, "--yes"), "records.purge", "ok", tenant, None),
        (("keys", "revoke", "--tenant", tenant), "keys.revoke", "ok", tenant, None),
        (("keys", "recover", "--tenant", tenant), "keys.recover", "ok", tenant, None),
        (("keys", "recover", "--tenant", missing), "keys.recover", "tenant_not_onboarded", missing,
         None),
    ]
    for argv, action, outcome, tenant_id, user_id in commands:
        before = len(audits())
        code, err = cli(stack, *argv)
        written = audits()[before:]
        assert len(written) == 1, (argv, written)
        (record,) = written
        assert (record["action"], record["outcome"]) == (action, outcome), argv
        assert (code == 0) == (outcome == "ok"), argv
        assert record["caller"] == "ops:alice@contoso.example"
        assert (record["tenant_id"], record["user_id"]) == (tenant_id, user_id)
        assert FIELDS <= record.keys() and record["correlation_id"]
        # printed on stderr too, after the error line of a failed command
        assert err.rstrip("\n").splitlines()[-1] == "audit " + json.dumps(
            record, sort_keys=True, separators=(",", ":"))
    assert audits()[-9]["all_tenants"] is True  # keys rotate --all says so


def test_the_sweep_command_is_not_a_key_or_record_command_and_writes_none(stack, audits):
    before = len(audits())
    assert cli(stack, "sweep", "--dry-run")[0] == 0
    assert audits()[before:] == []


@pytest.mark.parametrize("environ, caller", [
    ({"TOKENVAULT_OPERATOR": "release-pipeline"}, "ops:release-pipeline"),
    ({"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "octo", "GITHUB_RUN_ID": "42"}, "ops:github:octo"),
    ({"TF_BUILD": "True", "BUILD_REQUESTEDFOR": "Dana", "BUILD_BUILDID": "7"}, "ops:ado:Dana"),
])
def test_the_operator_is_who_ran_the_command_or_the_pipeline_run(environ, caller):
    from tokenvault.cli.audit import operator

    who, run = operator(environ)
    assert who == caller
    assert run == environ.get("GITHUB_RUN_ID", environ.get("BUILD_BUILDID"))
