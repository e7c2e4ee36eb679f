"""The KeyAdmin contract, run against both stores: Key Vault (the real SecretClient and the
HTTPS fake) and the local keyring file. What the admin writes, the matching reader reads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from tests.support.keyvault import ManualMonotonic
from tokenvault.adapters.key_admin import KeyAdmin, KeyVaultKeyAdmin, LocalKeyringAdmin
from tokenvault.adapters.keyvault_keys import KeyVaultKeys
from tokenvault.adapters.local_keyring import LocalKeyring
from tokenvault.errors import KeyDeleted, KeyExists, TenantNotOnboarded, TenantRevoked
from tokenvault.ports import Keys


@dataclass
class Store:
    admin: KeyAdmin
    keys: Keys  # a reader of the same store that caches nothing, so each check asks the store


@pytest.fixture(params=["key_vault", "local_keyring"])
def store(request, tmp_path) -> Store:
    if request.param == "key_vault":
        vault = request.getfixturevalue("keyvault")
        credential = request.getfixturevalue("keyvault_credential")
        options = request.getfixturevalue("keyvault_options")
        admin = KeyVaultKeyAdmin(vault.url, credential, **options)
        keys = KeyVaultKeys(vault.url, credential, ttl=0, **options)
        yield Store(admin, keys)
        admin.close()
        keys.close()
    else:
        path = tmp_path / "keyring.json"
        yield Store(LocalKeyringAdmin(path), LocalKeyring(path, ttl=0, monotonic=ManualMonotonic()))


def test_create_then_rotate_makes_versions_the_reader_uses(store, tenant):
    first = store.admin.create(tenant)
    assert store.keys.latest(tenant).version == first.version

    second = store.admin.rotate(tenant)
    third = store.admin.rotate(tenant)

    assert store.keys.latest(tenant).version == third.version
    assert store.keys.get(tenant, first.version).version == first.version  # old records still decrypt
    listed = store.admin.versions(tenant)
    assert [v.version for v in listed] == [first.version, second.version, third.version]
    assert all(v.enabled and v.tenant_id == tenant for v in listed)
    assert listed[0].created <= listed[1].created <= listed[2].created
    assert len({first.version, second.version, third.version}) == 3


def test_tenants_lists_tenants_with_a_key(store):
    onboarded = sorted(str(uuid.uuid4()) for _ in range(3))
    for tenant in onboarded:
        store.admin.create(tenant)
    store.admin.revoke(onboarded[1])

    assert store.admin.tenants() == [onboarded[0], onboarded[2]]


def test_create_refuses_an_existing_key(store, tenant):
    store.admin.create(tenant)
    with pytest.raises(KeyExists):
        store.admin.create(tenant)
    assert len(store.admin.versions(tenant)) == 1


def test_revoke_shreds_until_recovered(store, tenant):
    first = store.admin.create(tenant)
    second = store.admin.rotate(tenant)

    deleted = store.admin.revoke(tenant)

    assert deleted.tenant_id == tenant and deleted.deleted_on is not None
    assert store.admin.is_deleted(tenant)
    assert tenant not in store.admin.tenants()
    with pytest.raises(TenantRevoked):
        store.keys.get(tenant, first.version)
    with pytest.raises(TenantNotOnboarded):
        store.keys.latest(tenant)

    recovered = store.admin.recover(tenant)

    assert recovered.version == second.version and not store.admin.is_deleted(tenant)
    assert store.keys.get(tenant, first.version).version == first.version


def test_a_revoked_key_reserves_its_name_and_says_what_to_do(store, tenant):
    store.admin.create(tenant)
    store.admin.revoke(tenant)

    for action in (store.admin.create, store.admin.rotate, store.admin.versions, store.admin.revoke):
        with pytest.raises(KeyDeleted) as raised:
            action(tenant)
        assert "recover" in str(raised.value) and "purge" in str(raised.value)
        assert tenant in str(raised.value)


def test_purge_makes_the_shred_final_and_frees_the_name(store, tenant):
    old = store.admin.create(tenant)
    store.admin.revoke(tenant)

    store.admin.purge(tenant)

    assert not store.admin.is_deleted(tenant)
    with pytest.raises(TenantNotOnboarded):
        store.admin.recover(tenant)
    fresh = store.admin.create(tenant)
    assert fresh.version != old.version
    with pytest.raises(TenantRevoked):
        store.keys.get(tenant, old.version)


def test_recover_and_purge_want_a_revoked_key(store, tenant):
    store.admin.create(tenant)
    with pytest.raises(KeyExists):
        store.admin.purge(tenant)
    with pytest.raises(KeyExists):
        store.admin.recover(tenant)
    assert store.keys.latest(tenant)


def test_a_tenant_without_a_key(store, tenant):
    assert not store.admin.is_deleted(tenant)
    for action in (store.admin.rotate, store.admin.versions, store.admin.revoke, store.admin.recover,
                   store.admin.purge):
        with pytest.raises(TenantNotOnboarded):
            action(tenant)
