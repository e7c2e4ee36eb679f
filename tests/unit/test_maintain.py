"""``Vault.maintain``, the sweep's step on one record: rewrap, refresh, mark — and nothing
else, safely repeatable, every write conditional."""

from datetime import timedelta

import pytest

from tests.fakes import throttled
from tests.unit.world import KEY, SCOPES, TENANT, World
from tokenvault.errors import ReauthRequired, UpstreamUnavailable
from tokenvault.maintenance import Outcome
from tokenvault.model import Status


@pytest.fixture
def world() -> World:
    w = World()
    w.keys.onboard(TENANT)
    w.vault.store(w.user(), SCOPES)
    return w


def not_due(world):
    return world.clock.now() - timedelta(days=7)


def due(world):
    return world.clock.now() + timedelta(seconds=1)


def test_a_stale_key_version_is_rewrapped_without_the_identity_provider(world):
    token = world.stored_refresh_token()
    newest = world.keys.rotate(TENANT)
    before = world.records.rows[KEY]

    assert world.vault.maintain(KEY, refresh_before=not_due(world)) is Outcome.REWRAPPED

    after = world.records.rows[KEY]
    assert after.key_version == newest.version and world.stored_refresh_token() == token
    assert after.refreshed_at == before.refreshed_at
    assert world.idp.calls["refresh"] == 0


def test_a_due_record_is_refreshed_once_and_lands_on_the_latest_key(world):
    newest = world.keys.rotate(TENANT)
    old_token = world.stored_refresh_token()
    world.clock.advance(days=8)

    assert world.vault.maintain(KEY, refresh_before=due(world)) is Outcome.REFRESHED

    record = world.records.rows[KEY]
    assert world.idp.calls["refresh"] == 1
    assert record.key_version == newest.version and record.refreshed_at == world.clock.now()
    assert world.stored_refresh_token() != old_token


def test_a_second_run_changes_nothing(world):
    world.keys.rotate(TENANT)
    world.vault.maintain(KEY, refresh_before=due(world))
    after_first = world.records.rows[KEY]

    assert world.vault.maintain(KEY, refresh_before=after_first.refreshed_at) is Outcome.SKIPPED
    assert world.records.rows[KEY].etag == after_first.etag
    assert world.idp.calls["refresh"] == 1


def test_a_deleted_record_stays_deleted(world):
    world.records.delete(KEY)
    assert world.vault.maintain(KEY, refresh_before=due(world)) is Outcome.SKIPPED
    assert KEY not in world.records.rows


def test_a_dead_token_is_marked_and_dropped(world):
    world.idp.kill(KEY)
    assert world.vault.maintain(KEY, refresh_before=due(world)) is Outcome.REAUTH_REQUIRED
    record = world.records.rows[KEY]
    assert record.status is Status.REAUTH_REQUIRED and not record.ciphertext


def test_throttling_notes_the_failure_and_keeps_the_token(world):
    token = world.stored_refresh_token()
    world.idp.fail_next = [throttled(retry_after=30)]

    with pytest.raises(UpstreamUnavailable) as caught:
        world.vault.maintain(KEY, refresh_before=due(world))

    assert caught.value.retry_after == 30
    record = world.records.rows[KEY]
    assert record.failure_count == 1 and record.last_error == "upstream_unavailable"
    assert world.stored_refresh_token() == token


def test_an_interaction_challenge_is_a_failure_not_a_death(world):
    world.idp.fail_next = [ReauthRequired(reason="interaction_required", claims="{}")]
    assert world.vault.maintain(KEY, refresh_before=due(world)) is Outcome.FAILED
    record = world.records.rows[KEY]
    assert record.status is Status.ACTIVE and record.ciphertext and record.failure_count == 1


def test_a_revoked_tenant_is_marked_and_otherwise_untouched(world):
    before = world.records.rows[KEY]
    keys = world.keys.revoke(TENANT)

    assert world.vault.maintain(KEY, refresh_before=due(world)) is Outcome.REVOKED

    record = world.records.rows[KEY]
    assert record.status is Status.REVOKED and record.ciphertext == before.ciphertext
    assert world.idp.calls["refresh"] == 0
    assert world.vault.maintain(KEY, refresh_before=due(world)) is Outcome.REVOKED
    assert world.records.rows[KEY].etag == record.etag  # marked once

    world.keys.restore(TENANT, keys)
    assert world.vault.maintain(KEY, refresh_before=not_due(world)) is Outcome.RESTORED
    assert world.records.rows[KEY].status is Status.ACTIVE


def test_a_redeem_that_got_there_first_wins(world):
    world.keys.rotate(TENANT)

    def redeem_meanwhile(_record):
        world.records.before_update = None
        world.vault.redeem(KEY, SCOPES)

    world.records.before_update = redeem_meanwhile
    assert world.vault.maintain(KEY, refresh_before=due(world)) is Outcome.SKIPPED
    assert world.stored_refresh_token() in world.idp.live


def test_a_crash_between_the_identity_provider_and_the_write_loses_nothing(world):
    old_token = world.stored_refresh_token()

    def crash(_record):
        raise RuntimeError("instance recycled")

    world.records.before_update = crash
    with pytest.raises(RuntimeError):
        world.vault.maintain(KEY, refresh_before=due(world))

    assert world.stored_refresh_token() == old_token and old_token in world.idp.live
    assert world.vault.maintain(KEY, refresh_before=due(world)) is Outcome.REFRESHED
