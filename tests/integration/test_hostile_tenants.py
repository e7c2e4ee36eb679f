"""Authorization against a hostile customer tenant, through function_app with every real part.

Each test is one hole an attacker walked through before: a customer tenant's admin acting as a
listed caller app, tenants taken off the allowed list still being served, redeems beyond the
stored grant (up to a token for the vault itself), a scope refusal from Entra erasing a good
refresh token, and a flood of forged tokens locking out a new tenant. A refused request costs
no identity-provider grant, no Key Vault read and no storage request; those are counted at the
fakes and by a request hook on the storage clients.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from tests.support.stack_fixtures import (
    CALLER_APP,
    CALLER_TENANT,
    GRANT,
    SCOPES,
    StorageRequests,
    new_id,
)
from tokenvault.dev.entra_fake import SigningKey
from tokenvault.maintenance import Outcome
from tokenvault.model import RecordKey

REDEEM, ADMIN = "TokenVault.Redeem", "TokenVault.Admin"


def body(response) -> dict:
    return json.loads(response.get_body())


def answer(response) -> tuple[int, str | None]:
    return response.status_code, body(response).get("code") if response.get_body() else None


class Watched:
    """The app recomposed with a storage request hook, a stored victim, and the counters a
    refused request must leave alone."""

    def __init__(self, stack, recompose, settings=None, *, tenant: str | None = None) -> None:
        self.stack = stack
        self.tenant, self.victim = tenant or stack.onboard(), new_id()
        assert stack.store(self.tenant, self.victim).status_code == 201
        self.storage = StorageRequests()
        self.app = recompose(settings, storage_options={"raw_request_hook": self.storage})
        stack.expire_key_cache()  # anything reaching the vault would have to read Key Vault
        self.baseline()

    def baseline(self) -> None:
        self.storage.clear()
        self.before = self.stack.records.get(RecordKey(self.tenant, self.victim))
        counts = self.stack.entra.counts
        self.grants = counts["obo"] + counts["refresh"]
        self.key_vault = sum(self.stack.keyvault.requests.values())

    def call(self, route: str, token: str, **body_extra):
        key = {"tenant_id": self.tenant, "user_id": self.victim}
        if route == "redeem":
            return self.stack.call("redeem_token", token=token,
                                   body={"scopes": SCOPES, **key, **body_extra})
        function, method = {"describe": ("describe_token", "GET"),
                            "forget": ("forget_token", "DELETE")}[route]
        return self.stack.call(function, method=method, token=token, route_params=key)

    def assert_nothing_was_asked(self) -> None:
        counts = self.stack.entra.counts
        assert counts["obo"] + counts["refresh"] == self.grants, "an IdP grant was requested"
        assert sum(self.stack.keyvault.requests.values()) == self.key_vault, "Key Vault was read"
        assert self.storage.seen == [], f"storage was called: {self.storage.seen}"
        self.assert_record_unchanged()

    def assert_record_unchanged(self) -> None:
        now = self.stack.records.get(RecordKey(self.tenant, self.victim))
        assert (now.etag, now.ciphertext, now.status) == \
            (self.before.etag, self.before.ciphertext, self.before.status)


# --- 1. an app is an (app id, home tenant) pair ---------------------------------------------

@pytest.mark.parametrize("route", ["redeem", "describe", "forget"])
def test_a_listed_app_id_minted_in_another_tenant_is_not_the_caller(stack, recompose, route):
    """Tenant Z's admin gave the caller app's service principal in Z our roles and minted a
    client-credentials token as that app: same app id, tid = Z. It reaches no record."""
    scene = Watched(stack, recompose)
    tenant_z = new_id()
    impostor = stack.entra.app_token(tenant_z, CALLER_APP, roles=[REDEEM, ADMIN])

    assert answer(scene.call(route, impostor)) == (403, "insufficient_permissions")
    scene.assert_nothing_was_asked()

    # The same app from its home tenant is the caller.
    genuine = stack.app_token(roles=(REDEEM, ADMIN))
    assert scene.call(route, genuine).status_code in (200, 204)


# --- 2. allowed tenants are the records' tenants ----------------------------------------------

def test_a_listed_caller_from_a_tenant_that_is_no_customer_redeems_for_a_customer(stack,
                                                                                   recompose):
    customer = stack.onboard()
    assert CALLER_TENANT != customer
    scene = Watched(stack, recompose,
                    dataclasses.replace(stack.settings, allowed_tenants=frozenset({customer})),
                    tenant=customer)

    response = scene.call("redeem", stack.app_token())

    assert response.status_code == 200 and body(response)["access_token"]


@pytest.mark.parametrize("route", ["redeem", "describe", "forget"])
def test_records_of_a_tenant_taken_off_the_list_are_not_served_to_apps(stack, recompose, route):
    removed = stack.onboard()
    still = stack.onboard()
    scene = Watched(stack, recompose,
                    dataclasses.replace(stack.settings, allowed_tenants=frozenset({still})),
                    tenant=removed)

    response = scene.call(route, stack.app_token(roles=(REDEEM, ADMIN)))

    assert answer(response) == (403, "tenant_not_onboarded")
    scene.assert_nothing_was_asked()


def test_the_sweep_neither_refreshes_nor_rewraps_a_tenant_taken_off_the_list(stack, recompose):
    from tokenvault.adapters.memory_queue import MemoryQueue
    from tokenvault.bootstrap import build_sweep
    from tokenvault.cli.sweep import run_in_process

    removed, still = stack.onboard(), stack.onboard()
    scene = Watched(stack, recompose,
                    dataclasses.replace(stack.settings, allowed_tenants=frozenset({still})),
                    tenant=removed)
    kept = new_id()
    assert stack.store(still, kept).status_code == 201
    stack.admin.rotate(removed)
    stack.admin.rotate(still)
    stack.expire_key_cache()
    stack.clock.advance(days=30)
    scene.baseline()

    queue = MemoryQueue()
    planner, worker = build_sweep(vault=scene.app.vault, records=scene.app.records,
                                  keys=scene.app.keys, queue=queue, clock=stack.clock,
                                  refresh_after=stack.settings.refresh_after,
                                  allowed_tenants=frozenset({still}))
    plan, outcomes = run_in_process(planner, worker, queue)

    assert removed in plan.not_allowed_tenants and plan.not_allowed >= 1
    assert outcomes[Outcome.REFRESHED] == 1  # the allowed tenant's user, and no one else
    scene.assert_record_unchanged()


# --- 3. scopes are a grant fixed at store time -----------------------------------------------

@pytest.mark.parametrize("who", ["user", "app"])
def test_a_redeem_beyond_the_stored_scopes_is_refused_before_any_decrypt_or_idp_call(
        stack, recompose, who):
    scene = Watched(stack, recompose)
    wider = ["https://graph.microsoft.com/Files.ReadWrite.All",
             "https://graph.microsoft.com/Mail.ReadWrite"]
    token = stack.user_token(scene.tenant, scene.victim) if who == "user" else stack.app_token()

    response = scene.call("redeem", token, scopes=wider)

    assert answer(response) == (403, "scope_not_stored")
    assert "access_token" not in body(response)
    counts = stack.entra.counts
    assert counts["obo"] + counts["refresh"] == scene.grants
    scene.assert_record_unchanged()


def test_a_redeem_only_app_cannot_get_a_token_for_the_vault_itself(stack, recompose, client_id):
    """With a user token for TokenVault, a Redeem-only app could forget the user's record."""
    scene = Watched(stack, recompose)

    for scope in (f"{client_id}/access_as_user", f"api://{client_id}/access_as_user",
                  f"API://{client_id.upper()}/.default"):
        response = scene.call("redeem", stack.app_token(roles=(REDEEM,)), scopes=[scope])
        assert answer(response) == (403, "scope_not_stored"), scope
    scene.assert_nothing_was_asked()


def test_store_refuses_scopes_addressed_to_the_vault_itself(stack, client_id):
    tenant, user = stack.onboard(), new_id()
    obo = stack.entra.counts["obo"]

    response = stack.store(tenant, user, scopes=SCOPES + [f"api://{client_id}/access_as_user"])

    assert answer(response) == (400, "bad_request") and body(response)["field"] == "scopes"
    assert stack.entra.counts["obo"] == obo
    assert not stack.records.tenant_has_records(tenant)


# --- 4. only a dead grant erases a refresh token ------------------------------------------------

@pytest.mark.parametrize("fault", [dict(kind="scope_refused"),
                                   dict(kind="invalid_grant", code=9_999_999),
                                   dict(kind="consent_required"),
                                   dict(kind="invalid_grant", code=50076)])
def test_an_idp_refusal_that_is_not_a_dead_grant_keeps_the_refresh_token(stack, recompose,
                                                                         fault):
    scene = Watched(stack, recompose)
    user_token = stack.user_token(scene.tenant, scene.victim)
    stored = stack.stored_refresh_token(scene.tenant, scene.victim)
    stack.entra.fault(grant="refresh", user=(scene.tenant, scene.victim), **fault)

    response = scene.call("redeem", user_token)

    assert answer(response) == (409, "reauth_required")
    scene.assert_record_unchanged()
    assert stack.entra.refresh_token_valid(stored)
    # The next request (other scopes: msal replays an identical refused one) is served.
    again = scene.call("redeem", user_token, scopes=GRANT[1:2])
    assert again.status_code == 200


def test_a_dead_grant_still_erases_the_refresh_token(stack, recompose):
    scene = Watched(stack, recompose)
    stack.entra.fault("invalid_grant", code=70008, grant="refresh",
                      user=(scene.tenant, scene.victim))

    assert answer(scene.call("redeem", stack.user_token(scene.tenant, scene.victim))) == \
        (409, "reauth_required")

    record = stack.records.get(RecordKey(scene.tenant, scene.victim))
    assert (record.status.value, record.ciphertext, record.last_error) == \
        ("reauth_required", b"", "invalid_grant")


def test_the_sweep_notes_a_scope_refusal_on_the_record_and_keeps_the_token(stack, recompose):
    scene = Watched(stack, recompose)
    stored = stack.stored_refresh_token(scene.tenant, scene.victim)
    stack.entra.fault("scope_refused", grant="refresh", user=(scene.tenant, scene.victim))
    stack.clock.advance(days=30)

    outcome = scene.app.vault.maintain(RecordKey(scene.tenant, scene.victim),
                                       refresh_before=stack.clock.now())

    record = stack.records.get(RecordKey(scene.tenant, scene.victim))
    assert outcome is Outcome.FAILED
    assert (record.last_error, record.failure_count) == ("scope_refused", 1)
    assert record.ciphertext == scene.before.ciphertext
    assert stack.stored_refresh_token(scene.tenant, scene.victim) == stored


# --- 5. forged tokens cost nothing a real tenant needs ------------------------------------------

def test_a_flood_of_forged_tokens_with_random_tenants_does_not_lock_out_a_new_tenant(stack):
    newcomer, first_user = stack.onboard(), new_id()  # onboarded just before the flood
    jwks = stack.entra.counts["jwks"]
    attacker = SigningKey()

    for _ in range(150):
        forged = stack.entra.user_token(str(uuid.uuid4()), new_id(), key=attacker,
                                        headers={"kid": uuid.uuid4().hex})
        response = stack.call("store_token", body={"scopes": SCOPES}, token=forged)
        assert answer(response) == (401, "invalid_token")

    assert stack.store(newcomer, first_user).status_code == 201
    assert stack.entra.counts["jwks"] - jwks <= 5
