"""Dependencies failing under function_app's functions, every part real: the identity provider
throttling, failing, hanging and resetting connections; Key Vault throttling, failing and
refusing; storage going down — once exactly between the identity provider's answer and the
record's write — and coming back.

After each fault: callers got ``upstream_unavailable`` with a Retry-After where the fault was
transient, no good refresh token was lost (the stored one is still valid at the fake, or was
replaced by a newer valid one), and the record still decrypts.

msal remembers a failed request for its Retry-After (docs/field-notes.md): the request after a fault
asks for other scopes, which is another request to msal.
"""

from __future__ import annotations

import gc
import json
import re
import socket
import struct
import threading
import warnings

import pytest
from requests.adapters import HTTPAdapter

from tests.support.stack_fixtures import MORE_SCOPES, SCOPES, new_id
from tokenvault.dev.azurite import Azurite
from tokenvault.envelope import Binding, unseal
from tokenvault.model import RecordKey
from tokenvault.sensitive import Sensitive
from tokenvault.settings import StorageConnection

OTHER_SCOPES = MORE_SCOPES[:1]


def body(response) -> dict:
    return json.loads(response.get_body())


def stored_refresh_token(app, tenant: str, user: str) -> str:
    """Decrypt the record with its key, as an auditor holding the key could."""
    record = app.records.get(RecordKey(tenant, user))
    key = app.keys.get(tenant, record.key_version)
    binding = Binding(record.tenant_id, record.user_id, record.client_id, record.key_version)
    return unseal(key.material, record.ciphertext, binding).reveal()


def assert_unavailable(response, retry_after: int | None = None) -> None:
    assert (response.status_code, body(response)["code"]) == (503, "upstream_unavailable"), \
        body(response)
    if retry_after is None:
        assert int(response.headers["Retry-After"]) >= 1
    else:
        assert response.headers["Retry-After"] == str(retry_after)


@pytest.fixture
def user(stack, onboarded_tenant) -> str:
    user = new_id()
    assert stack.store(onboarded_tenant, user).status_code == 201
    return user


def assert_nothing_lost(stack, tenant: str, user: str, before) -> None:
    """The record is the one stored before the fault, its token alive, and it still serves."""
    after = stack.records.get(RecordKey(tenant, user))
    assert (after.ciphertext, after.etag) == (before.ciphertext, before.etag)
    assert stack.entra.refresh_token_valid(stack.stored_refresh_token(tenant, user))
    assert stack.redeem(tenant, user, scopes=OTHER_SCOPES).status_code == 200
    assert stack.entra.refresh_token_valid(stack.stored_refresh_token(tenant, user))


# --- the identity provider -------------------------------------------------------------------

@pytest.mark.parametrize("kind, retry_after", [("throttled", 11), ("throttled", 1),
                                               ("server_error", 13)])
def test_an_idp_429_or_5xx_on_redeem_is_503_with_its_retry_after(stack, onboarded_tenant, user, kind,
                                                                  retry_after):
    before = stack.records.get(RecordKey(onboarded_tenant, user))
    stack.entra.fault(kind, grant="refresh", user=(onboarded_tenant, user), retry_after=retry_after)

    assert_unavailable(stack.redeem(onboarded_tenant, user), retry_after)
    assert_nothing_lost(stack, onboarded_tenant, user, before)


@pytest.mark.parametrize("kind", ["throttled", "server_error"])
def test_an_idp_429_or_5xx_on_store_stores_nothing(stack, onboarded_tenant, kind):
    user = new_id()
    stack.entra.fault(kind, grant="obo", user=(onboarded_tenant, user), retry_after=17)

    assert_unavailable(stack.store(onboarded_tenant, user), 17)
    assert not stack.records.tenant_has_records(onboarded_tenant)
    assert stack.store(onboarded_tenant, user, scopes=OTHER_SCOPES).status_code == 201


class Network(HTTPAdapter):
    """The path from the vault to one tenant's token endpoint, mounted on the session msal
    uses. Straight through unless told otherwise: ``timeout`` stands in for the adapter's own
    (10 s in production) so a test sees it elapse in a fraction of a second; ``reset_to`` sends
    the request to a listener that accepts the connection and resets it."""

    def __init__(self) -> None:
        super().__init__()
        self.timeout: float | None = None
        self.reset_to: str | None = None

    def send(self, request, **kwargs):
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.reset_to is not None:
            request.url = re.sub(r"^https://[^/]+", self.reset_to, request.url)
        return super().send(request, **kwargs)


@pytest.fixture
def network(stack, onboarded_tenant, entra_session) -> Network:
    adapter = Network()
    entra_session.mount(f"{stack.entra.authority_host}/{onboarded_tenant}/oauth2/", adapter)
    # urllib3 drops a connection that timed out or was reset mid-handshake without closing its
    # socket, and the socket sits in a reference cycle with the exception's frames. Left to the
    # garbage collector, it raises its ResourceWarning (an error in this suite) at whatever
    # moment a collection happens to run — mid-test, or in the next test. So no automatic
    # collection while the network misbehaves: the cycles are collected here, where they were
    # made, with that one warning ignored.
    gc.disable()
    try:
        yield adapter
    finally:
        adapter.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        gc.enable()


@pytest.fixture
def resetting():
    """A listener that accepts every connection and resets it at once (RST, no answer)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    accepted: list[int] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.getsockname()[1]}", accepted
    done.set()
    thread.join()
    server.close()


def test_an_idp_slower_than_the_timeout_is_503_and_loses_nothing(stack, onboarded_tenant, user, network):
    before = stack.records.get(RecordKey(onboarded_tenant, user))
    network.timeout = 0.3
    fault = stack.entra.fault("slow", grant="refresh", user=(onboarded_tenant, user), delay=1.0)

    assert_unavailable(stack.redeem(onboarded_tenant, user))

    # The fake answered in the end, rotating the token we never saw: the old one still works.
    assert fault.hits == 1
    network.timeout = None
    assert_nothing_lost(stack, onboarded_tenant, user, before)


def test_a_slow_obo_on_store_stores_nothing(stack, onboarded_tenant, network):
    user = new_id()
    network.timeout = 0.3
    stack.entra.fault("slow", grant="obo", user=(onboarded_tenant, user), delay=1.0)

    assert_unavailable(stack.store(onboarded_tenant, user))
    assert not stack.records.tenant_has_records(onboarded_tenant)


def test_a_reset_connection_to_the_idp_is_503_and_loses_nothing(stack, onboarded_tenant, user, network,
                                                                resetting):
    before = stack.records.get(RecordKey(onboarded_tenant, user))
    network.reset_to, accepted = resetting
    refreshes = stack.entra.counts["refresh"]

    assert_unavailable(stack.redeem(onboarded_tenant, user))
    assert_unavailable(stack.store(onboarded_tenant, new_id()))

    assert accepted and stack.entra.counts["refresh"] == refreshes  # it never got through
    network.reset_to = None
    assert_nothing_lost(stack, onboarded_tenant, user, before)


# --- Key Vault -------------------------------------------------------------------------------

def test_key_vault_throttling_is_503_with_its_retry_after(stack, onboarded_tenant, user):
    before = stack.records.get(RecordKey(onboarded_tenant, user))
    stack.expire_key_cache()
    stack.keyvault.fail_next(429, retry_after=30)
    refreshes = stack.entra.counts["refresh"]

    assert_unavailable(stack.redeem(onboarded_tenant, user), 30)

    assert stack.entra.counts["refresh"] == refreshes  # no key, no use asking the IdP
    assert_nothing_lost(stack, onboarded_tenant, user, before)


def test_a_short_key_vault_throttle_is_waited_out_within_the_request(stack, onboarded_tenant, user):
    stack.expire_key_cache()
    stack.keyvault.fail_next(429, retry_after=1)

    assert stack.redeem(onboarded_tenant, user).status_code == 200


def test_key_vault_5xx_after_the_retries_is_503(stack, onboarded_tenant, user):
    before = stack.records.get(RecordKey(onboarded_tenant, user))
    stack.expire_key_cache()
    stack.keyvault.fail_next(500, times=3)

    assert_unavailable(stack.redeem(onboarded_tenant, user))
    assert_nothing_lost(stack, onboarded_tenant, user, before)


def test_key_vault_throttling_on_store_asks_the_idp_nothing(stack, onboarded_tenant):
    stack.expire_key_cache()
    stack.keyvault.fail_next(429, retry_after=20)
    obo = stack.entra.counts["obo"]

    assert_unavailable(stack.store(onboarded_tenant, new_id()), 20)
    assert stack.entra.counts["obo"] == obo


def test_key_vault_refusing_access_is_internal_and_names_the_role_for_ops(stack, onboarded_tenant, user,
                                                                          caplog):
    before = stack.records.get(RecordKey(onboarded_tenant, user))
    stack.expire_key_cache()
    stack.keyvault.fail_next(403)

    response = stack.redeem(onboarded_tenant, user)

    assert (response.status_code, body(response)["code"]) == (500, "internal")
    assert "Key Vault Secrets User" in caplog.text
    assert_nothing_lost(stack, onboarded_tenant, user, before)  # a refusal is not remembered


def test_a_key_vault_404_reads_as_revoked_until_the_cache_expires(stack, onboarded_tenant, user):
    before = stack.records.get(RecordKey(onboarded_tenant, user))
    stack.expire_key_cache()
    stack.keyvault.fail_next(404)

    response = stack.redeem(onboarded_tenant, user)
    again = stack.redeem(onboarded_tenant, user, scopes=OTHER_SCOPES)

    # Key Vault said the version is gone: that is a revocation, and it is cached like one.
    assert (response.status_code, body(response)["code"]) == (403, "tenant_revoked")
    assert (again.status_code, body(again)["code"]) == (403, "tenant_revoked")
    stack.expire_key_cache()
    assert_nothing_lost(stack, onboarded_tenant, user, before)


# --- storage ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def own_azurite(tmp_path_factory):
    """An Azurite of this module's own, to stop and start again (same folder, same ports)."""
    storage = Azurite(tmp_path_factory.mktemp("azurite-faults")).start()
    yield storage
    storage.stop(grace=1)


class StopOnWrite:
    """A request hook on the storage clients: armed, it stops Azurite just as the next record
    write (a PUT) leaves — after the identity provider answered, before the write lands."""

    def __init__(self, azurite: Azurite) -> None:
        self.azurite, self.armed, self.fired = azurite, False, False

    def __call__(self, request) -> None:
        if self.armed and request.http_request.method == "PUT":
            self.armed, self.fired = False, True
            self.azurite.stop(grace=1)


def test_storage_down_between_the_idp_answer_and_the_write_then_back(stack, recompose,  # noqa: F811
                                                                     own_azurite):
    own = StorageConnection(connection_string=Sensitive(own_azurite.connection_string))
    stop = StopOnWrite(own_azurite)
    app = recompose(stack.settings.with_backend(storage=own, queue_storage=own),
                    storage_options={"raw_request_hook": stop})
    tenant, user, other = stack.onboard(), new_id(), new_id()
    assert stack.store(tenant, user).status_code == 201
    first = stored_refresh_token(app, tenant, user)
    refreshes = stack.entra.counts["refresh"]

    stop.armed = True
    redeemed = stack.redeem(tenant, user)

    assert stop.fired and stack.entra.counts["refresh"] == refreshes + 1
    assert_unavailable(redeemed)
    # While storage is down, every route that needs it says so.
    owner = stack.user_token(tenant, user)
    key = {"tenant_id": tenant, "user_id": user}
    assert_unavailable(stack.redeem(tenant, user, scopes=OTHER_SCOPES))
    assert_unavailable(stack.store(tenant, other))
    assert_unavailable(stack.call("describe_token", method="GET", token=owner, route_params=key))
    assert_unavailable(stack.call("forget_token", method="DELETE", token=owner, route_params=key))

    own_azurite.start()

    # The write never landed: the record holds the token from before, which Entra still takes.
    assert stored_refresh_token(app, tenant, user) == first
    assert stack.entra.refresh_token_valid(first)
    assert stack.redeem(tenant, user, scopes=MORE_SCOPES[1:2]).status_code == 200
    rotated = stored_refresh_token(app, tenant, user)
    assert rotated != first and stack.entra.refresh_token_valid(rotated)
    assert stack.store(tenant, other).status_code == 201
    assert stack.call("describe_token", method="GET", token=owner,
                      route_params=key).status_code == 200
    assert stack.redeem(tenant, other, scopes=SCOPES).status_code == 200
