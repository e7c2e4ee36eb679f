"""The vault's use cases against in-memory fakes of its ports: the contract of docs/design.md's
Store, Redeem and Forget flows and of the invariants."""

import threading

import pytest

from tests.fakes import throttled
from tests.unit.world import CLIENT, KEY, SCOPES, TENANT, World
from tokenvault.errors import (
    BadRequest,
    InsufficientPermissions,
    NotFound,
    OfflineAccessMissing,
    ReauthRequired,
    ScopeNotStored,
    TenantNotOnboarded,
    TenantRevoked,
    UpstreamUnavailable,
)
from tokenvault.maintenance import Outcome
from tokenvault.model import Caller, CallerKind, Status
from tokenvault.vault import Vault


@pytest.fixture
def world() -> World:
    w = World()
    w.keys.onboard(TENANT)
    return w


def test_store_keeps_only_the_refresh_token_encrypted_under_the_latest_key(world):
    record = world.vault.store(world.user(), SCOPES)

    stored = world.records.rows[KEY]
    assert stored.status is Status.ACTIVE and record.key_version == world.keys.latest(TENANT).version
    assert world.stored_refresh_token() in world.idp.live
    access_token = world.idp.issued_access[-1]
    assert access_token.encode() not in stored.ciphertext
    assert set(record.metadata()) == {"tenant_id", "user_id", "client_id", "status",
                                      "key_version", "scopes", "created_at", "refreshed_at"}


def test_store_replaces_an_existing_record_and_keeps_its_creation_time(world):
    first = world.vault.store(world.user(), SCOPES)
    world.clock.advance(days=1)
    second = world.vault.store(world.user(), ("api://other/.default",))

    assert second.created_at == first.created_at and second.refreshed_at > first.refreshed_at
    assert second.scopes == ("api://other/.default",)
    assert world.records.writes == {"create": 1, "update": 1}


def test_store_for_a_tenant_without_key_asks_no_identity_provider():
    world = World()
    with pytest.raises(TenantNotOnboarded):
        world.vault.store(world.user(), SCOPES)
    assert world.idp.calls["obo"] == 0 and not world.records.rows


def test_store_for_a_tenant_whose_key_was_deleted_says_revoked(world):
    world.vault.store(world.user(), SCOPES)
    world.keys.revoke(TENANT)
    with pytest.raises(TenantRevoked):
        world.vault.store(world.user("00000000-0000-0000-0000-0000000000b2"), SCOPES)


def test_store_without_a_refresh_token_stores_nothing(world):
    world.idp.omit_refresh_token = True
    with pytest.raises(OfflineAccessMissing):
        world.vault.store(world.user(), SCOPES)
    assert not world.records.rows


def test_only_a_user_may_store():
    world = World()
    app = Caller(CallerKind.APP, TENANT, app_id=CLIENT, roles=frozenset({"TokenVault.Redeem"}))
    with pytest.raises(InsufficientPermissions):
        world.vault.store(app, SCOPES)


def test_redeem_returns_an_access_token_and_stores_the_rotated_refresh_token(world):
    world.vault.store(world.user(), SCOPES)
    before = world.stored_refresh_token()
    world.clock.advance(hours=1)

    grant = world.vault.redeem(KEY, SCOPES)

    assert grant.access_token.reveal() == world.idp.issued_access[-1]
    after = world.stored_refresh_token()
    assert after != before and after in world.idp.live
    assert world.records.rows[KEY].refreshed_at == world.clock.now()


def test_redeem_moves_the_record_to_the_latest_key_version(world):
    world.vault.store(world.user(), SCOPES)
    newest = world.keys.rotate(TENANT)

    world.vault.redeem(KEY, SCOPES)

    assert world.records.rows[KEY].key_version == newest.version
    assert world.stored_refresh_token() in world.idp.live


def test_a_record_never_moves_back_to_an_older_key_version(world):
    old = world.keys.latest(TENANT)
    world.vault.store(world.user(), SCOPES)
    newest = world.keys.rotate(TENANT)
    world.vault.redeem(KEY, SCOPES)  # now on the newest version
    world.keys.stale_latest[TENANT] = old  # an instance that has not seen the rotation yet

    world.vault.redeem(KEY, SCOPES)
    world.vault.store(world.user(), SCOPES)

    assert world.records.rows[KEY].key_version == newest.version


def test_redeem_of_nothing_stored_is_not_found(world):
    with pytest.raises(NotFound):
        world.vault.redeem(KEY, SCOPES)


def test_a_dead_refresh_token_marks_the_record_and_drops_the_ciphertext(world):
    world.vault.store(world.user(), SCOPES)
    world.idp.kill(KEY)

    with pytest.raises(ReauthRequired):
        world.vault.redeem(KEY, SCOPES)

    record = world.records.rows[KEY]
    assert record.status is Status.REAUTH_REQUIRED and record.ciphertext == b""
    assert record.last_error == "invalid_grant"
    with pytest.raises(ReauthRequired):
        world.vault.redeem(KEY, SCOPES)
    assert world.idp.calls["refresh"] == 1  # the second answer came from the record


@pytest.mark.parametrize("reason", ["consent_required", "interaction_required", "scope_refused",
                                    "grant_refused"])
def test_a_refusal_that_is_not_a_dead_grant_leaves_the_record_alone(world, reason):
    world.vault.store(world.user(), SCOPES)
    before = world.records.rows[KEY]
    world.idp.fail_next = [ReauthRequired(reason=reason, claims='{"access_token":{}}')]

    with pytest.raises(ReauthRequired) as caught:
        world.vault.redeem(KEY, SCOPES)

    assert caught.value.claims == '{"access_token":{}}'
    assert world.records.rows[KEY] == before and world.records.rows[KEY].etag == before.etag


def test_invalid_grant_on_a_token_replaced_meanwhile_is_a_race_and_retried(world):
    world.vault.store(world.user(), SCOPES)
    newer = world.idp.issue_refresh_token(KEY)

    def another_instance_stored_a_newer_token():
        # ... and the identity provider refuses the token we read (some do after rotation).
        world.idp.dead.add(world.stored_refresh_token())
        current = world.records.rows[KEY]
        world.records.put(Vault._sealed(current, world.keys.latest(TENANT), newer))

    world.idp.before_refresh = another_instance_stored_a_newer_token
    grant = world.vault.redeem(KEY, SCOPES)

    assert grant.access_token
    assert world.idp.calls["refresh"] == 2
    record = world.records.rows[KEY]
    assert record.status is Status.ACTIVE and world.stored_refresh_token() in world.idp.live
    assert world.stored_refresh_token() not in world.idp.dead


@pytest.mark.parametrize("fault", [throttled(), UpstreamUnavailable(retry_after=1)])
def test_an_unavailable_identity_provider_leaves_the_record_byte_for_byte(world, fault):
    world.vault.store(world.user(), SCOPES)
    before = world.records.rows[KEY]
    world.idp.fail_next = [fault]

    with pytest.raises(UpstreamUnavailable):
        world.vault.redeem(KEY, SCOPES)

    assert world.records.rows[KEY] == before and world.records.rows[KEY].etag == before.etag
    assert world.vault.redeem(KEY, SCOPES).access_token  # and still redeemable


def test_a_newer_record_written_during_redeem_wins(world):
    world.vault.store(world.user(), SCOPES)
    winner = world.idp.issue_refresh_token(KEY)

    def concurrent_store(_record):
        current = world.records.rows[KEY]
        world.records.put(Vault._sealed(current, world.keys.latest(TENANT), winner))

    world.records.before_update = concurrent_store
    grant = world.vault.redeem(KEY, SCOPES)

    assert grant.access_token
    assert world.stored_refresh_token() == winner.reveal()


def test_a_concurrent_metadata_write_does_not_cost_us_the_rotation(world):
    world.vault.store(world.user(), SCOPES)

    def sweep_noted_a_failure(_record):
        current = world.records.rows[KEY]
        world.records.put(current.evolve(failure_count=1, last_error="upstream_unavailable"))

    world.records.before_update = sweep_noted_a_failure
    world.vault.redeem(KEY, SCOPES)

    newest = list(world.idp.live)[-1]  # the token our redeem was just given
    assert world.stored_refresh_token() == newest


def test_a_record_forgotten_during_redeem_is_not_recreated(world):
    world.vault.store(world.user(), SCOPES)
    world.records.before_update = lambda _record: world.records.delete(KEY)

    with pytest.raises(NotFound):
        world.vault.redeem(KEY, SCOPES)
    assert KEY not in world.records.rows


def test_a_revoked_tenant_cannot_redeem_and_recovers_when_its_key_is_back(world):
    world.vault.store(world.user(), SCOPES)
    keys = world.keys.revoke(TENANT)
    with pytest.raises(TenantRevoked):
        world.vault.redeem(KEY, SCOPES)
    assert world.idp.calls["refresh"] == 0

    world.keys.restore(TENANT, keys)
    world.records.put(world.records.rows[KEY].evolve(status=Status.REVOKED))
    world.vault.redeem(KEY, SCOPES)
    assert world.records.rows[KEY].status is Status.ACTIVE


def test_forget_deletes_the_record(world):
    world.vault.store(world.user(), SCOPES)
    world.vault.forget(KEY)
    with pytest.raises(NotFound):
        world.vault.describe(KEY)
    with pytest.raises(NotFound):
        world.vault.forget(KEY)


def test_concurrent_redeems_for_one_user_share_one_identity_provider_call(world):
    world.vault.store(world.user(), SCOPES)
    world.idp.latency = 0.05
    results, errors = [], []

    def redeem():
        try:
            results.append(world.vault.redeem(KEY, SCOPES))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=redeem) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors and len(results) == 50
    assert world.idp.calls["refresh"] < 10, world.idp.calls
    assert world.stored_refresh_token() in world.idp.live


class TestAccessTokenCache:
    @pytest.fixture
    def world(self) -> World:
        w = World(cache=True)
        w.keys.onboard(TENANT)
        w.vault.store(w.user(), SCOPES)
        return w

    def test_a_second_redeem_is_served_from_memory(self, world):
        first = world.vault.redeem(KEY, SCOPES)
        second = world.vault.redeem(KEY, SCOPES)
        assert second.access_token == first.access_token
        assert world.idp.calls["refresh"] == 1

    def test_not_past_a_margin_before_expiry(self, world):
        world.vault.redeem(KEY, SCOPES)
        world.clock.advance(minutes=56)  # token lives 60 min; margin is 5
        world.vault.redeem(KEY, SCOPES)
        assert world.idp.calls["refresh"] == 2

    def test_never_after_the_record_is_gone(self, world):
        world.vault.redeem(KEY, SCOPES)
        world.records.delete(KEY)  # forgotten through another instance
        with pytest.raises(NotFound):
            world.vault.redeem(KEY, SCOPES)
        assert len(world.cache) == 0

    def test_never_after_the_tenant_is_revoked(self, world):
        world.vault.redeem(KEY, SCOPES)
        world.keys.revoke(TENANT)
        with pytest.raises(TenantRevoked):
            world.vault.redeem(KEY, SCOPES)
        assert len(world.cache) == 0

    def test_other_scopes_are_not_served_the_cached_token(self, world):
        other = ("https://graph.microsoft.com/Mail.Read",)
        world.vault.store(world.user(), SCOPES + other)
        world.vault.redeem(KEY, SCOPES)
        world.vault.redeem(KEY, other)
        assert world.idp.calls["refresh"] == 2

    def test_a_narrower_grant_stored_since_is_not_widened_by_the_cache(self, world):
        """A cached token for scopes the user has since stopped granting is not handed out."""
        other = ("https://graph.microsoft.com/Mail.Read",)
        world.vault.store(world.user(), SCOPES + other)
        world.vault.redeem(KEY, SCOPES + other)
        world.vault.store(world.user(), SCOPES)  # the user signed in again, granting less

        with pytest.raises(ScopeNotStored):
            world.vault.redeem(KEY, SCOPES + other)


# --- the grant is fixed at store time ----------------------------------------------------------

OWN_APP_SCOPES = [f"api://{CLIENT}/access_as_user", f"{CLIENT}/.default",
                  f"API://{CLIENT.upper()}/Anything", f"api://{CLIENT}"]


@pytest.mark.parametrize("scope", OWN_APP_SCOPES)
def test_store_refuses_scopes_of_the_vaults_own_app_before_asking_the_idp(world, scope):
    with pytest.raises(BadRequest) as caught:
        world.vault.store(world.user(), SCOPES + (scope,))
    assert caught.value.field == "scopes"
    assert world.idp.calls["obo"] == 0 and KEY not in world.records.rows


@pytest.mark.parametrize("requested", [
    ("https://graph.microsoft.com/Files.ReadWrite.All",),
    SCOPES + ("https://graph.microsoft.com/Mail.ReadWrite",),
    (f"api://{CLIENT}/access_as_user",),
])
def test_redeem_beyond_the_stored_scopes_is_refused_before_any_decrypt_or_idp_call(world,
                                                                                  requested):
    world.vault.store(world.user(), SCOPES)
    before = world.records.rows[KEY]

    with pytest.raises(ScopeNotStored):
        world.vault.redeem(KEY, requested)

    assert world.idp.calls["refresh"] == 0
    assert world.records.rows[KEY] == before and world.records.rows[KEY].etag == before.etag


@pytest.mark.parametrize("requested", [
    SCOPES,
    tuple(s.upper() for s in SCOPES),
    SCOPES + ("offline_access", "openid"),
])
def test_redeem_within_the_stored_scopes_in_any_case_is_served(world, requested):
    world.vault.store(world.user(), SCOPES + ("https://graph.microsoft.com/Mail.Read",))
    assert world.vault.redeem(KEY, requested).access_token


# --- allowed tenants: the record's tenant, on every path -------------------------------------

OTHER_TENANT = "0b0b0b0b-0000-4000-8000-000000000001"


@pytest.fixture
def guarded() -> World:
    """A vault that keeps records of OTHER_TENANT only, holding a record of TENANT stored before
    TENANT was taken off the list."""
    w = World()
    w.keys.onboard(TENANT)
    w.vault.store(w.user(), SCOPES)
    w.vault = Vault(client_id=CLIENT, keys=w.keys, records=w.records, identity=w.idp,
                    clock=w.clock, allowed_tenants=frozenset({OTHER_TENANT}))
    return w


@pytest.mark.parametrize("action", [
    lambda w: w.vault.store(w.user(), SCOPES),
    lambda w: w.vault.redeem(KEY, SCOPES),
    lambda w: w.vault.describe(KEY),
    lambda w: w.vault.forget(KEY),
], ids=["store", "redeem", "describe", "forget"])
def test_a_tenant_off_the_allowed_list_is_not_onboarded_on_every_path(guarded, action):
    before, calls = guarded.records.rows[KEY], dict(guarded.idp.calls)
    with pytest.raises(TenantNotOnboarded):
        action(guarded)
    assert dict(guarded.idp.calls) == calls  # no identity-provider call
    assert guarded.records.rows[KEY] == before


def test_the_sweep_leaves_a_tenant_off_the_allowed_list_alone(guarded):
    before = guarded.records.rows[KEY]
    guarded.keys.rotate(TENANT)
    guarded.clock.advance(days=30)

    outcome = guarded.vault.maintain(KEY, refresh_before=guarded.clock.now())

    assert outcome is Outcome.NOT_ALLOWED
    assert guarded.records.rows[KEY] == before and guarded.idp.calls["refresh"] == 0
    assert guarded.keys.calls["latest"] == 1  # the store's, before the list changed


def test_a_sweep_batch_of_a_tenant_taken_off_the_list_is_not_even_read(guarded):
    before = guarded.records.rows[KEY]
    guarded.keys.rotate(TENANT)
    guarded.clock.advance(days=30)

    swept = guarded.vault.sweep_batch(TENANT, {KEY.user_id: guarded.clock.now()})

    assert swept.outcomes == {KEY.user_id: Outcome.NOT_ALLOWED} and not swept.pending
    assert guarded.records.rows[KEY] == before and guarded.idp.calls["refresh"] == 0
