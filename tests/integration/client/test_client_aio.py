"""The async client does what the sync one does, against the same served app: the four calls as
the user and as the app (azure-identity's async credential), the problems as their classes,
and a 503's Retry-After waited for. Each test runs its scenario in ``asyncio.run``; the clients
are opened and closed inside it, on aiohttp.
"""

from __future__ import annotations

import asyncio

import jwt
import pytest

from tests.support.client_fixtures import async_client_credential
from tests.support.stack_fixtures import SCOPES, new_id
from tokenvault_client import (
    InvalidToken,
    NotFound,
    OfflineAccessMissing,
    ReauthRequired,
    StoredRecord,
    TenantNotOnboarded,
    UpstreamUnavailable,
)
from tokenvault_client.aio import TokenVaultClient

pytestmark = pytest.mark.integration

CLAIMS = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'
REDEEM = "/api/tokens/redeem"


@pytest.fixture
def run(served_vault, client_id, async_app_credential_kwargs):
    """``run(scenario)``: ``await scenario(client)`` with an async client of the served app."""

    def runner(scenario, **options):
        async def main():
            async with async_client_credential(async_app_credential_kwargs) as credential, \
                    TokenVaultClient(served_vault.url, client_id=client_id, credential=credential,
                                     function_key=served_vault.function_key, **options) as client:
                return await scenario(client)

        return asyncio.run(main())

    return runner


def test_the_four_calls_as_the_user_and_as_the_app(stack, run, served_vault):
    tenant, user = stack.onboard(), new_id()
    token = stack.user_token(tenant, user)

    async def scenario(client):
        record = await client.store(SCOPES, user_token=token)
        mine = await client.redeem(SCOPES, user_token=token)
        theirs = await client.redeem(SCOPES, tenant_id=tenant, user_id=user)
        described = [await client.describe(tenant, user, user_token=token),
                     await client.describe(tenant, user)]
        await client.forget(tenant, user)
        with pytest.raises(NotFound):
            await client.describe(tenant, user, user_token=token)
        return record, mine, theirs, described

    record, mine, theirs, described = run(scenario)
    assert isinstance(record, StoredRecord) and described == [record, record]
    assert (record.tenant_id, record.user_id, record.status) == (tenant, user, "active")
    for access in (mine, theirs):
        claims = jwt.decode(access.token, options={"verify_signature": False})
        assert (claims["tid"], claims["oid"]) == (tenant, user)
    assert [s.status for s in served_vault.served] == [201, 200, 200, 200, 200, 204, 404]


@pytest.mark.parametrize("provoke, cls, code", [
    (lambda stack, tenant: None, InvalidToken, "invalid_token"),
    (lambda stack, tenant: stack.entra.fault("interaction_required", grant="obo", claims=CLAIMS),
     ReauthRequired, "reauth_required"),
    (lambda stack, tenant: stack.entra.fault("no_refresh_token", grant="obo"),
     OfflineAccessMissing, "offline_access_missing"),
    (lambda stack, tenant: stack.entra.fault("throttled", grant="obo", retry_after=90),
     UpstreamUnavailable, "upstream_unavailable"),
], ids=["invalid_token", "reauth_required", "offline_access_missing", "upstream_unavailable"])
def test_problems_are_their_classes(stack, run, provoke, cls, code):
    tenant = stack.onboard()
    provoke(stack, tenant)
    token = "not-a-jwt" if code == "invalid_token" else stack.user_token(tenant, new_id())

    async def scenario(client):
        with pytest.raises(cls) as raised:
            await client.store(SCOPES, user_token=token)
        return raised.value

    error = run(scenario)
    assert error.code == code and error.correlation_id
    assert error.claims == (CLAIMS if code == "reauth_required" else None)
    assert error.retry_after == (90 if code == "upstream_unavailable" else None)


def test_a_tenant_without_a_key_is_not_onboarded(stack, run):
    async def scenario(client):
        with pytest.raises(TenantNotOnboarded):
            await client.store(SCOPES, user_token=stack.user_token(new_id(), new_id()))

    run(scenario)


def test_a_503_with_retry_after_is_retried_after_that_delay(stack, run, served_vault):
    tenant, user = stack.onboard(), new_id()
    token = stack.user_token(tenant, user)

    async def scenario(client):
        await client.store(SCOPES, user_token=token)
        stack.entra.fault("throttled", grant="refresh", retry_after=1)
        return await client.redeem(SCOPES, tenant_id=tenant, user_id=user)

    access = run(scenario)
    assert jwt.decode(access.token, options={"verify_signature": False})["oid"] == user
    first, second = [s for s in served_vault.served if s.path == REDEEM]
    assert (first.status, second.status) == (503, 200)
    assert second.at - first.at >= 1.0
