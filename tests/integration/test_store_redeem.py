"""Store and redeem end to end: function_app's functions, composed by bootstrap with the real
adapters, through the real msal and PyJWT against the Entra fake, the real SecretClient
against the Key Vault fake, and azure-data-tables against Azurite."""

import json
import threading

import pytest

from tests.support.stack_fixtures import MORE_SCOPES, SCOPES, new_id
from tokenvault.model import RecordKey, Status


def body(response) -> dict:
    return json.loads(response.get_body())


def test_store_redeem_rotate_forget_then_nothing_is_found(stack, onboarded_tenant):
    user = new_id()
    stored = stack.store(onboarded_tenant, user)
    assert stored.status_code == 201, stored.get_body()
    assert body(stored)["status"] == "active"
    first = stack.stored_refresh_token(onboarded_tenant, user)
    assert stack.entra.refresh_token_valid(first)

    redeemed = stack.redeem(onboarded_tenant, user)
    assert redeemed.status_code == 200
    grant = body(redeemed)
    assert grant["token_type"] == "Bearer" and grant["expires_in"] > 0
    second = stack.stored_refresh_token(onboarded_tenant, user)
    assert second != first  # the rotated refresh token was written back

    # Other scopes: not in the in-memory access-token cache, so the IdP is asked again.
    again = stack.redeem(onboarded_tenant, user, scopes=MORE_SCOPES[:1])
    assert again.status_code == 200
    assert stack.stored_refresh_token(onboarded_tenant, user) not in (first, second)

    owner = stack.user_token(onboarded_tenant, user)
    forgotten = stack.call("forget_token", method="DELETE", token=owner,
                           route_params={"tenant_id": onboarded_tenant, "user_id": user})
    assert forgotten.status_code == 204
    gone = stack.redeem(onboarded_tenant, user)
    assert gone.status_code == 404 and body(gone)["code"] == "not_found"


def test_the_access_token_is_never_at_rest(stack, onboarded_tenant):
    user = new_id()
    stack.store(onboarded_tenant, user)
    access_token = body(stack.redeem(onboarded_tenant, user))["access_token"]
    entity = dict(stack.records._table.get_entity(onboarded_tenant, user))  # noqa: SLF001 - the raw row
    raw = repr(entity).encode() + b"".join(v for v in entity.values() if isinstance(v, bytes))
    assert access_token.encode() not in raw
    assert stack.stored_refresh_token(onboarded_tenant, user).encode() not in raw


def test_a_key_rotation_between_store_and_redeem_moves_the_record_to_the_new_version(stack, onboarded_tenant):
    user = new_id()
    stack.store(onboarded_tenant, user)
    old = stack.records.get(RecordKey(onboarded_tenant, user)).key_version
    new = stack.admin.rotate(onboarded_tenant).version
    stack.expire_key_cache()

    assert stack.redeem(onboarded_tenant, user).status_code == 200

    record = stack.records.get(RecordKey(onboarded_tenant, user))
    assert record.key_version == new != old
    assert stack.entra.refresh_token_valid(stack.stored_refresh_token(onboarded_tenant, user))


def test_store_for_a_tenant_without_a_key_asks_nobody_and_says_not_onboarded(stack):
    response = stack.store(new_id(), new_id())
    assert response.status_code == 403 and body(response)["code"] == "tenant_not_onboarded"
    assert stack.entra.counts["obo"] == 0


def test_no_refresh_token_from_the_identity_provider_stores_nothing(stack, onboarded_tenant):
    user = new_id()
    stack.entra.fault("no_refresh_token", grant="obo")
    response = stack.store(onboarded_tenant, user)
    assert response.status_code == 422 and body(response)["code"] == "offline_access_missing"
    assert not stack.records.tenant_has_records(onboarded_tenant)


@pytest.mark.parametrize("kind, options, status, code", [
    ("invalid_grant", {"code": 70008}, 409, "reauth_required"),
    ("invalid_grant", {"code": 50173}, 409, "reauth_required"),
    ("interaction_required", {"claims": '{"access_token":{"acrs":{"essential":true,'
                                        '"value":"c1"}}}'}, 409, "reauth_required"),
    ("consent_required", {}, 409, "reauth_required"),
    ("throttled", {"retry_after": 9}, 503, "upstream_unavailable"),
    ("server_error", {}, 503, "upstream_unavailable"),
])
def test_each_identity_provider_fault_on_redeem_maps_to_its_code(stack, onboarded_tenant, kind, options,
                                                                  status, code):
    user = new_id()
    stack.store(onboarded_tenant, user)
    stack.entra.fault(kind, grant="refresh", user=(onboarded_tenant, user), **options)

    response = stack.redeem(onboarded_tenant, user)

    assert response.status_code == status and body(response)["code"] == code
    if code == "upstream_unavailable":
        assert int(response.headers["Retry-After"]) >= 1
    if "claims" in options:
        assert body(response)["claims"] == options["claims"]
        assert 'error="insufficient_claims"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("kind", ["throttled", "server_error"])
def test_after_a_transient_fault_the_record_is_byte_for_byte_unchanged_and_redeemable(
        stack, onboarded_tenant, kind):
    user = new_id()
    stack.store(onboarded_tenant, user)
    before = stack.records.get(RecordKey(onboarded_tenant, user))
    stack.entra.fault(kind, grant="refresh", user=(onboarded_tenant, user), retry_after=1)

    assert stack.redeem(onboarded_tenant, user).status_code == 503

    after = stack.records.get(RecordKey(onboarded_tenant, user))
    assert after.ciphertext == before.ciphertext and after.etag == before.etag
    # msal remembers a throttled request for its Retry-After; other scopes are another request.
    assert stack.redeem(onboarded_tenant, user, scopes=MORE_SCOPES[1:2]).status_code == 200


def test_a_dead_refresh_token_marks_the_record_and_drops_its_ciphertext(stack, onboarded_tenant):
    user = new_id()
    stack.store(onboarded_tenant, user)
    stack.entra.kill_user(onboarded_tenant, user, code=70008)

    assert body(stack.redeem(onboarded_tenant, user))["code"] == "reauth_required"

    record = stack.records.get(RecordKey(onboarded_tenant, user))
    assert record.status is Status.REAUTH_REQUIRED and record.ciphertext == b""
    described = stack.call("describe_token", method="GET", token=stack.user_token(onboarded_tenant, user),
                           route_params={"tenant_id": onboarded_tenant, "user_id": user})
    assert body(described)["status"] == "reauth_required"


def test_an_app_redeems_for_a_user_who_is_gone(stack, onboarded_tenant):
    user = new_id()
    stack.store(onboarded_tenant, user)
    response = stack.call("redeem_token", token=stack.app_token(),
                          body={"scopes": SCOPES, "tenant_id": onboarded_tenant, "user_id": user})
    assert response.status_code == 200 and body(response)["access_token"]


def test_fifty_concurrent_redeems_for_one_user_share_few_identity_provider_calls(stack, onboarded_tenant):
    user = new_id()
    stack.store(onboarded_tenant, user)
    stack.entra.latency = 0.05
    before = stack.entra.counts["refresh"]
    token = stack.user_token(onboarded_tenant, user)
    answers = []

    def redeem():
        answers.append(stack.call("redeem_token", body={"scopes": SCOPES}, token=token))

    threads = [threading.Thread(target=redeem) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    calls = stack.entra.counts["refresh"] - before
    print(f"50 concurrent redeems for one user: {calls} refresh calls at the identity provider")
    assert [a.status_code for a in answers] == [200] * 50
    assert calls <= 10
    assert stack.entra.refresh_token_valid(stack.stored_refresh_token(onboarded_tenant, user))
