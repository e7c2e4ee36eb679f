"""``VaultUserCredential`` handed to a real Azure SDK client: the unmodified ``SecretClient``
(sync and ``.aio``) against the Key Vault fake, acting for a stored user who is not there.
The request reaches the fake with a token the identity provider (the Entra fake) issued for
that user and for Key Vault; a second call within the token's life does not redeem again;
concurrent callers share one redeem; what no redeem can satisfy is refused without one.
"""

from __future__ import annotations

import asyncio
import threading

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets.aio import SecretClient as AsyncSecretClient

from tests.support.client_fixtures import async_client_credential
from tests.support.keyvault import FakeKeyVault
from tests.support.stack_fixtures import new_id
from tokenvault_client import NotFound, ReauthRequired, TokenVaultClient, VaultUserCredential, aio

pytestmark = pytest.mark.integration

VAULT_SCOPE = "https://vault.azure.net/.default"
REDEEM = "/api/tokens/redeem"
CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'


#: The users' tenant. Its Key Vault's challenge names it; the SDK caches a vault's challenge
#: per origin for the whole process, so the tenant stays the same in every test.
USER_TENANT = "c0ffee00-0000-4000-8000-0000000000b7"


@pytest.fixture(scope="module")
def users_vault_service(ca):
    """The users' own Key Vault: another fake than TokenVault's, in the users' tenant."""
    with FakeKeyVault(ca) as vault:
        vault.challenge_tenant = USER_TENANT
        yield vault


@pytest.fixture
def users_vault(users_vault_service):
    users_vault_service.reset()
    users_vault_service.challenge_tenant = USER_TENANT
    return users_vault_service


@pytest.fixture
def user(stack, vault_client) -> tuple[str, str]:
    """A user of an onboarded tenant who stored a token for Key Vault and left."""
    tenant, user = stack.onboard(USER_TENANT), new_id()
    vault_client.store([VAULT_SCOPE], user_token=stack.user_token(tenant, user))
    return tenant, user


@pytest.fixture
def secret(users_vault, user) -> str:
    users_vault.put_secret("greeting", "hello from the user's vault")
    return "greeting"


def assert_issued_for(stack, token: str, tenant: str, user: str) -> None:
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(token, stack.entra.signing_key(kid).public, algorithms=["RS256"],
                        audience="https://vault.azure.net")
    assert (claims["tid"], claims["oid"]) == (tenant, user)


def test_a_secret_client_reads_as_the_stored_user_with_one_redeem(
        stack, vault_client, served_vault, users_vault, keyvault_options, user, secret):
    tenant, oid = user
    credential = VaultUserCredential(vault_client, tenant, oid)
    with SecretClient(users_vault.url, credential, **keyvault_options) as secrets:
        assert secrets.get_secret(secret).value == "hello from the user's vault"
        assert secrets.get_secret(secret).value == "hello from the user's vault"
    with SecretClient(users_vault.url, credential, **keyvault_options) as again:
        assert again.get_secret(secret).value == "hello from the user's vault"

    tokens = users_vault.bearer_tokens
    assert len(tokens) == 3 and len(set(tokens)) == 1
    assert_issued_for(stack, tokens[0], tenant, oid)
    assert served_vault.count("POST", REDEEM) == 1


def test_the_token_is_redeemed_again_shortly_before_it_expires(vault_client, served_vault, user):
    now = [1_000_000.0]
    credential = VaultUserCredential(vault_client, *user, clock=lambda: now[0])
    # The client's clock is the real one: the token expires about an hour from now.
    first = credential.get_token(VAULT_SCOPE)
    now[0] = first.expires_on - 301
    assert credential.get_token(VAULT_SCOPE) == first
    assert served_vault.count("POST", REDEEM) == 1
    now[0] = first.expires_on - 299  # inside the refresh margin (300 s)
    credential.get_token(VAULT_SCOPE)
    assert served_vault.count("POST", REDEEM) == 2


def test_concurrent_callers_share_one_redeem(stack, vault_client, served_vault, user):
    credential = VaultUserCredential(vault_client, *user)
    stack.entra.fault("slow", grant="refresh", delay=0.5)
    barrier, tokens = threading.Barrier(8), []

    def ask() -> None:
        barrier.wait()
        tokens.append(credential.get_token(VAULT_SCOPE).token)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == 8 and len(set(tokens)) == 1
    assert served_vault.count("POST", REDEEM) == 1


def test_a_dead_grant_is_reauth_required_and_the_sdk_does_not_retry_it(
        stack, vault_client, served_vault, users_vault, keyvault_options, user, secret):
    stack.entra.kill_user(*user)
    with SecretClient(users_vault.url, VaultUserCredential(vault_client, *user),
                      **keyvault_options) as secrets:
        with pytest.raises(ReauthRequired) as raised:
            secrets.get_secret(secret)
    assert isinstance(raised.value, ClientAuthenticationError)
    assert served_vault.count("POST", REDEEM) == 1, "the SDK's retry policy redeemed again"
    assert users_vault.bearer_tokens == []


def test_a_user_with_nothing_stored_is_not_found(vault_client, stack):
    credential = VaultUserCredential(vault_client, stack.onboard(), new_id())
    with pytest.raises(NotFound):
        credential.get_token(VAULT_SCOPE)


def test_a_claims_challenge_is_for_the_user_to_meet(vault_client, served_vault, user):
    credential = VaultUserCredential(vault_client, *user)
    with pytest.raises(ReauthRequired) as raised:
        credential.get_token(VAULT_SCOPE, claims=CLAIMS)
    assert raised.value.claims == CLAIMS and raised.value.code == "reauth_required"
    with pytest.raises(ReauthRequired):
        credential.get_token_info(VAULT_SCOPE, options={"claims": CLAIMS})
    assert served_vault.count("POST", REDEEM) == 0


def test_a_challenge_naming_another_tenant_is_refused_without_a_redeem(
        vault_client, served_vault, ca, keyvault_options, user):
    # A vault of another tenant (a fake of its own: the SDK caches challenges per origin).
    with FakeKeyVault(ca) as elsewhere:
        elsewhere.challenge_tenant = new_id()
        elsewhere.put_secret("greeting", "not yours")
        with SecretClient(elsewhere.url, VaultUserCredential(vault_client, *user),
                          **keyvault_options) as secrets:
            with pytest.raises(ClientAuthenticationError, match="holds tokens of tenant"):
                secrets.get_secret("greeting")
        assert elsewhere.bearer_tokens == []
    assert served_vault.count("POST", REDEEM) == 0


def test_token_info_says_when_the_token_is_redeemed_again(vault_client, user):
    info = VaultUserCredential(vault_client, *user).get_token_info(VAULT_SCOPE)
    assert info.token_type == "Bearer" and info.refresh_on == info.expires_on - 300


# --- async --------------------------------------------------------------------------------

def test_the_async_credential_with_the_async_secret_client(
        stack, served_vault, client_id, users_vault, keyvault_options, user, secret,
        async_app_credential_kwargs):
    tenant, oid = user

    async def scenario() -> list[str]:
        async with async_client_credential(async_app_credential_kwargs) as app, \
                aio.TokenVaultClient(served_vault.url, client_id=client_id, credential=app,
                                     function_key=served_vault.function_key) as client:
            credential = aio.VaultUserCredential(client, tenant, oid)
            stack.entra.fault("slow", grant="refresh", delay=0.3)
            tokens = await asyncio.gather(*(credential.get_token(VAULT_SCOPE) for _ in range(6)))
            async with AsyncSecretClient(users_vault.url, credential, **keyvault_options) as secrets:
                values = [(await secrets.get_secret(secret)).value for _ in range(2)]
            return [t.token for t in tokens], values

    tokens, values = asyncio.run(scenario())
    assert len(set(tokens)) == 1 and values == ["hello from the user's vault"] * 2
    assert served_vault.count("POST", REDEEM) == 1
    assert set(users_vault.bearer_tokens) == set(tokens)
    assert_issued_for(stack, tokens[0], tenant, oid)


def test_the_async_credential_raises_the_typed_errors(stack, served_vault, client_id, user,
                                                      async_app_credential_kwargs):
    stack.entra.kill_user(*user)

    async def scenario() -> None:
        async with async_client_credential(async_app_credential_kwargs) as app, \
                aio.TokenVaultClient(served_vault.url, client_id=client_id, credential=app,
                                     function_key=served_vault.function_key) as client:
            credential = aio.VaultUserCredential(client, *user)
            results = await asyncio.gather(*(credential.get_token(VAULT_SCOPE) for _ in range(3)),
                                           return_exceptions=True)
            assert all(isinstance(r, ReauthRequired) for r in results)
            with pytest.raises(ClientAuthenticationError):
                await credential.get_token(VAULT_SCOPE, tenant_id=new_id())

    asyncio.run(scenario())
    assert served_vault.count("POST", REDEEM) == 1


def test_the_sync_client_is_its_own_type(served_vault, client_id):
    # The sync credential needs the sync client's redeem; the async one the async client's.
    with TokenVaultClient(served_vault.url, client_id=client_id) as client:
        assert VaultUserCredential(client, new_id(), new_id())._client is client
