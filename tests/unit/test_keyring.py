"""LocalKeyring: the local keyring file read with Key Vault's semantics (docs/design.md "Local keyring")."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
import uuid

import pytest

from tests.support.keyvault import ManualMonotonic
from tests.support.leaks import remember
from tokenvault.adapters.key_admin import LocalKeyringAdmin
from tokenvault.adapters.keyvault_keys import _Cache
from tokenvault.adapters.local_keyring import LocalKeyring, write_keyring
from tokenvault.errors import SettingError, TenantKeyInvalid, TenantNotOnboarded, TenantRevoked
from tokenvault.model import TenantKey
from tokenvault.sensitive import Sensitive

TTL = 300


def new_version() -> tuple[dict, bytes]:
    material = os.urandom(32)
    remember(material)
    return {"version": secrets.token_hex(16), "value": base64.b64encode(material).decode()}, material


@pytest.fixture
def clock() -> ManualMonotonic:
    return ManualMonotonic()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "keyring.json"


@pytest.fixture
def keyring(path, clock) -> LocalKeyring:
    return LocalKeyring(path, ttl=TTL, monotonic=clock)


def test_the_last_version_is_the_latest_and_every_version_stays_readable(keyring, path, tenant):
    (first, first_key), (second, second_key) = new_version(), new_version()
    write_keyring(path, {"secrets": {f"tenant-{tenant}": [first, second]}})

    latest = keyring.latest(tenant)
    old = keyring.get(tenant, first["version"])

    assert latest.version == second["version"] and latest.material.reveal() == second_key
    assert old.material.reveal() == first_key and old.tenant_id == tenant
    assert latest.newer_than(old) and not old.newer_than(latest)


def test_a_tenant_without_a_name_has_no_key(keyring, path, tenant):
    write_keyring(path, {"secrets": {f"tenant-{uuid.uuid4()}": [new_version()[0]]}})
    with pytest.raises(TenantNotOnboarded):
        keyring.latest(tenant)
    with pytest.raises(TenantRevoked):
        keyring.get(tenant, "0" * 32)


def test_an_unknown_version_is_revoked(keyring, path, tenant):
    write_keyring(path, {"secrets": {f"tenant-{tenant}": [new_version()[0]]}})
    with pytest.raises(TenantRevoked):
        keyring.get(tenant, "0" * 32)


def test_a_missing_file_means_no_tenants(tmp_path, tenant):
    keyring = LocalKeyring(tmp_path / "nowhere" / "keyring.json")
    with pytest.raises(TenantNotOnboarded):
        keyring.latest(tenant)


def test_edits_are_noticed_within_the_ttl(keyring, path, clock, tenant):
    first, _ = new_version()
    write_keyring(path, {"secrets": {f"tenant-{tenant}": [first]}})
    assert keyring.latest(tenant).version == first["version"]

    second, _ = new_version()
    write_keyring(path, {"secrets": {f"tenant-{tenant}": [first, second]}})
    clock.advance(TTL)
    assert keyring.latest(tenant).version == second["version"]

    write_keyring(path, {"secrets": {}})  # the tenant is revoked by hand
    clock.advance(TTL)
    with pytest.raises(TenantRevoked):
        keyring.get(tenant, first["version"])


def test_an_in_place_edit_is_noticed_too(keyring, path, clock, tenant):
    first, _ = new_version()
    path.write_text(json.dumps({"secrets": {f"tenant-{tenant}": [first]}}))
    assert keyring.latest(tenant)

    with path.open("w") as stream:  # same file, new content: what an editor may do
        stream.write(json.dumps({"secrets": {}}))
    clock.advance(TTL)
    with pytest.raises(TenantNotOnboarded):
        keyring.latest(tenant)


def test_refused_when_running_in_azure(path):
    with pytest.raises(SettingError) as raised:
        LocalKeyring(path, in_azure=True)
    assert raised.value.name == "TOKENVAULT_LOCAL_KEYRING"


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"secrets": {"tenant-x": "abc"}}',
                                     '{"secrets": {"tenant-x": [{"value": "no version"}]}}'],
                         ids=["not-json", "not-an-object", "not-a-list", "no-version"])
def test_a_malformed_file_is_tenant_key_invalid(keyring, path, tenant, content, caplog):
    path.write_text(content)
    with pytest.raises(TenantKeyInvalid):
        keyring.latest(tenant)
    assert "tenant_key_invalid" in caplog.text


def test_a_malformed_value_spoils_only_its_tenant_and_is_never_logged(keyring, path, tenant, caplog):
    good, material = new_version()
    other = str(uuid.uuid4())
    bad_value = base64.b64encode(os.urandom(31)).decode()
    remember(bad_value)
    write_keyring(path, {"secrets": {f"tenant-{tenant}": [{"version": "a" * 32, "value": bad_value}],
                                     f"tenant-{other}": [good]}})
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TenantKeyInvalid) as raised:
        keyring.latest(tenant)
    assert keyring.latest(other).material.reveal() == material

    shown = caplog.text + repr(raised.value) + repr(keyring) + repr(keyring.latest(other))
    assert tenant in caplog.text and bad_value not in shown and good["value"] not in shown


def test_the_admin_writes_an_owner_only_file_in_one_step(path, tenant):
    LocalKeyringAdmin(path).create(tenant)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    assert LocalKeyring(path).latest(tenant).version


def test_the_key_cache_stays_bounded_and_drops_expired_entries_first(clock, tenant):
    cache = _Cache(TTL, clock, max_entries=4)
    fetches = []

    def key(version: str):
        def fetch() -> TenantKey:
            fetches.append(version)
            return TenantKey(tenant, version, Sensitive(b"k" * 32))
        return fetch

    cache.lookup((tenant, "old"), key("old"))
    clock.advance(TTL)
    for version in "abcd":  # the fifth entry evicts the expired one, not a fresh one
        cache.lookup((tenant, version), key(version))
    for version in "abcd":
        cache.lookup((tenant, version), key(version))
    assert fetches == ["old", "a", "b", "c", "d"]

    cache.lookup((tenant, "e"), key("e"))  # full of fresh entries: the oldest half goes
    cache.lookup((tenant, "d"), key("d"))
    cache.lookup((tenant, "a"), key("a"))
    assert fetches[5:] == ["e", "a"]
