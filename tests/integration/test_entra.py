"""EntraIdentityProvider: the real msal against the Entra fake over HTTPS.

Every outcome the fake can produce is mapped to the one error it means (a table per flow);
no upstream text and no secret reaches a message or a log line; msal's token cache holds
nothing however many users pass through.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import jwt
import msal
import pytest

from tokenvault.adapters.entra import EntraIdentityProvider
from tokenvault.dev.entra_fake_grants import DEFAULT_CLAIMS_CHALLENGE, DESCRIPTION_MARKER
from tokenvault.errors import (
    BadRequest,
    InvalidToken,
    OfflineAccessMissing,
    ReauthRequired,
    UpstreamUnavailable,
)
from tokenvault.sensitive import Sensitive

GRAPH = ("https://graph.microsoft.com/User.Read",)
CUSTOM_CLAIMS = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})


@pytest.fixture
def provider(entra, entra_session, client_id, client_secret) -> EntraIdentityProvider:
    # A fresh provider per test: msal's own throttling memory (an identical failed request
    # is answered from it for 60 s) must not carry over from another test.
    return EntraIdentityProvider(client_id=client_id, client_credential=Sensitive(client_secret),
                                 authority_host=entra.authority_host, session=entra_session,
                                 timeout=2)


def _claims(token: Sensitive[str]) -> dict:
    return jwt.decode(token.reveal(), options={"verify_signature": False})


def test_obo_returns_a_grant_with_a_refresh_token_for_the_users_tenant(provider, entra, tenant, oid):
    before = time.time()

    grant = provider.on_behalf_of(tenant, Sensitive(entra.user_token(tenant, oid)), GRAPH)

    assert entra.refresh_token_valid(grant.refresh_token.reveal())
    assert entra.refresh_record(grant.refresh_token.reveal()).oid == oid
    access = _claims(grant.access_token)
    assert (access["aud"], access["tid"], access["oid"]) == ("https://graph.microsoft.com", tenant, oid)
    assert grant.scopes == GRAPH  # openid, profile and offline_access are msal's, not the caller's
    assert int(before) + 3599 <= grant.expires_on <= time.time() + 3600
    assert ("POST", f"/{tenant}/oauth2/v2.0/token") in entra.requests
    assert grant.token_type == "Bearer"


def test_refresh_rotates_and_the_old_refresh_token_stays_valid(provider, entra, tenant, oid):
    first = provider.on_behalf_of(tenant, Sensitive(entra.user_token(tenant, oid)), GRAPH)

    second = provider.refresh(tenant, first.refresh_token, GRAPH)
    third = provider.refresh(tenant, first.refresh_token, GRAPH)  # the old one, again

    tokens = {first.refresh_token, second.refresh_token, third.refresh_token}
    assert len(tokens) == 3
    assert all(entra.refresh_token_valid(t.reveal()) for t in tokens)
    assert _claims(second.access_token)["oid"] == oid
    assert entra.counts["refresh"] == 2


def test_without_rotation_the_same_refresh_token_comes_back(provider, entra, tenant, oid):
    entra.rotate_refresh_tokens = False
    token = Sensitive(entra.issue_refresh_token(tenant, oid))

    assert provider.refresh(tenant, token, GRAPH).refresh_token == token


def test_one_msal_client_per_tenant_discovers_once(provider, entra, oid):
    tenants = [str(uuid.uuid4()) for _ in range(2)]

    for _ in range(3):
        for tenant in tenants:
            provider.refresh(tenant, Sensitive(entra.issue_refresh_token(tenant, oid)), GRAPH)

    assert entra.counts["discovery"] == 2
    assert entra.counts["refresh"] == 6


def test_the_callers_openid_scopes_are_dropped_not_refused(provider, entra, tenant, oid):
    grant = provider.refresh(tenant, Sensitive(entra.issue_refresh_token(tenant, oid)),
                             ("openid", *GRAPH, "offline_access"))

    assert grant.scopes == GRAPH


# fault at the fake → (error raised, its reason, the claims it must carry, retry_after)
def _dead(code: int) -> tuple:
    return dict(kind="invalid_grant", code=code), ReauthRequired, "invalid_grant", None


def _kept(code: int, reason: str = "grant_refused") -> tuple:
    """invalid_grant that does not say the refresh token is dead: it is kept."""
    return dict(kind="invalid_grant", code=code), ReauthRequired, reason, None


REFRESH_OUTCOMES = {
    "expired (70008)": _dead(70008),
    "revoked (50173)": _dead(50173),
    "expired RT (700082)": _dead(700082),
    "inactive (70043)": _dead(70043),
    "session expired (50132)": _dead(50132),
    "session stale (50133)": _dead(50133),
    "user disabled (50057), kept": _kept(50057),
    "scopes refused (70000), kept": (dict(kind="scope_refused"), ReauthRequired, "scope_refused",
                                     None),
    "a code we do not know, kept": _kept(999999),
    "MFA (50076) with claims": (dict(kind="interaction_required"), ReauthRequired,
                                "interaction_required", DEFAULT_CLAIMS_CHALLENGE),
    "CA policy (53003), own claims": (dict(kind="interaction_required", code=53003, claims=CUSTOM_CLAIMS),
                                      ReauthRequired, "interaction_required", CUSTOM_CLAIMS),
    "consent (65001)": (dict(kind="consent_required"), ReauthRequired, "consent_required", None),
    "throttled 429": (dict(kind="throttled", retry_after=17), UpstreamUnavailable, None, 17),
    "server error 500": (dict(kind="server_error", retry_after=3), UpstreamUnavailable, None, 3),
    "throttled (50196)": (dict(kind="invalid_grant", code=50196), UpstreamUnavailable, None, 5),
    "invalid scope (70011)": (dict(kind="invalid_scope"), BadRequest, None, "scopes"),
}


@pytest.mark.parametrize("name", list(REFRESH_OUTCOMES))
def test_refresh_outcomes_map_to_vault_errors(name, provider, entra, tenant, oid):
    fault, raised, reason, carried = REFRESH_OUTCOMES[name]
    token = entra.issue_refresh_token(tenant, oid)
    entra.fault(grant="refresh", refresh_token=token, **fault)

    with pytest.raises(raised) as failure:
        provider.refresh(tenant, Sensitive(token), GRAPH)

    _assert_mapped(failure.value, raised, reason, carried)
    assert entra.counts["refresh"] == 1


OBO_OUTCOMES = {
    "no refresh token": (dict(kind="no_refresh_token"), OfflineAccessMissing, None, None),
    "MFA (50076) with claims": (dict(kind="interaction_required", claims=CUSTOM_CLAIMS),
                                ReauthRequired, "interaction_required", CUSTOM_CLAIMS),
    "consent (65001)": (dict(kind="consent_required"), ReauthRequired, "consent_required", None),
    "password reset (50173)": (dict(kind="invalid_grant", code=50173), ReauthRequired,
                               "grant_refused", None),
    "throttled 429": (dict(kind="throttled", retry_after=30), UpstreamUnavailable, None, 30),
    "server error 503": (dict(kind="server_error", retry_after=2), UpstreamUnavailable, None, 2),
}


@pytest.mark.parametrize("name", list(OBO_OUTCOMES))
def test_obo_outcomes_map_to_vault_errors(name, provider, entra, tenant, oid):
    fault, raised, reason, carried = OBO_OUTCOMES[name]
    entra.fault(grant="obo", user=(tenant, oid), **fault)

    with pytest.raises(raised) as failure:
        provider.on_behalf_of(tenant, Sensitive(entra.user_token(tenant, oid)), GRAPH)

    _assert_mapped(failure.value, raised, reason, carried)


REFUSED_ASSERTIONS = {
    "expired (500133)": lambda e, t, o: e.user_token(t, o, now=time.time() - 7200),
    "unknown signing key (50013)": lambda e, t, o: e.user_token(t, o, headers={"kid": "gone"}),
    "for another client (50013)": lambda e, t, o: e.user_token(t, o, aud=str(uuid.uuid4())),
    "of another tenant (50013)": lambda e, t, o: e.user_token(str(uuid.uuid4()), o),
    "not a JWT (50027)": lambda e, t, o: "not-a-jwt-at-all",
}


@pytest.mark.parametrize("name", list(REFUSED_ASSERTIONS))
def test_obo_with_a_refused_assertion_is_an_invalid_token(name, provider, entra, tenant, oid):
    assertion = REFUSED_ASSERTIONS[name](entra, tenant, oid)

    with pytest.raises(InvalidToken) as failure:
        provider.on_behalf_of(tenant, Sensitive(assertion), GRAPH)

    _assert_mapped(failure.value, InvalidToken, None, None)
    assert entra.counts["obo"] == 1


def _assert_mapped(error, raised, reason, carried) -> None:
    assert type(error) is raised
    assert DESCRIPTION_MARKER not in str(error)  # nothing from upstream in the message
    if raised is BadRequest:
        assert error.field == carried
    else:
        assert str(error) == raised.default_message
    assert DESCRIPTION_MARKER not in repr(error)
    if raised is ReauthRequired:
        assert (error.reason, error.claims) == (reason, carried)
        # Only a dead refresh token may be erased; an OBO has none stored yet.
        assert error.grant_dead == (reason == "invalid_grant")
    if raised is UpstreamUnavailable:
        assert (error.upstream, error.retry_after) == ("identity_provider", carried)


def test_a_refresh_answered_without_a_refresh_token_keeps_the_old_one_in_play(provider, entra,
                                                                             tenant, oid):
    token = entra.issue_refresh_token(tenant, oid)
    entra.fault("no_refresh_token", refresh_token=token)

    grant = provider.refresh(tenant, Sensitive(token), GRAPH)

    assert grant.refresh_token is None
    assert _claims(grant.access_token)["oid"] == oid


def test_a_user_whose_sessions_an_admin_revoked_must_sign_in_again(provider, entra, tenant, oid):
    grant = provider.on_behalf_of(tenant, Sensitive(entra.user_token(tenant, oid)), GRAPH)
    entra.kill_user(tenant, oid)

    with pytest.raises(ReauthRequired) as failure:
        provider.refresh(tenant, grant.refresh_token, GRAPH)

    assert failure.value.reason == "invalid_grant"


def test_a_refresh_token_entra_does_not_know_must_be_replaced(provider, tenant):
    with pytest.raises(ReauthRequired):
        provider.refresh(tenant, Sensitive("1.fake.never-issued-by-the-fake"), GRAPH)


def test_a_slow_answer_beyond_the_timeout_is_an_upstream_outage(entra, entra_session, client_id,
                                                                client_secret, tenant, oid):
    provider = EntraIdentityProvider(client_id=client_id, client_credential=client_secret,
                                     authority_host=entra.authority_host, session=entra_session,
                                     timeout=0.3)
    token = Sensitive(entra.issue_refresh_token(tenant, oid))
    provider.refresh(tenant, token, GRAPH)  # discovery done: only the token call is slow
    entra.fault("slow", delay=1.5)
    started = time.monotonic()

    with pytest.raises(UpstreamUnavailable) as failure:
        provider.refresh(tenant, token, GRAPH)

    assert time.monotonic() - started < 1.2
    assert failure.value.upstream == "identity_provider"


def test_an_unreachable_authority_is_an_upstream_outage(entra_session, client_id, client_secret,
                                                        tenant):
    provider = EntraIdentityProvider(client_id=client_id, client_credential=client_secret,
                                     authority_host="https://127.0.0.1:9", session=entra_session,
                                     timeout=1)

    with pytest.raises(UpstreamUnavailable):
        provider.refresh(tenant, Sensitive("1.fake.whatever-token"), GRAPH)


def test_msal_keeps_no_tokens_after_a_thousand_users(provider, entra, tenant):
    users = [(str(uuid.uuid4()), entra.issue_refresh_token(tenant, oid := str(uuid.uuid4())), oid)
             for _ in range(1000)]

    for _, token, oid in users:
        assert _claims(provider.refresh(tenant, Sensitive(token), GRAPH).access_token)["oid"] == oid

    assert provider.token_cache_size() == 0


def test_msals_own_cache_would_have_kept_every_user(entra, entra_session, client_id,
                                                    client_secret, tenant):
    """The control for the test above: the measure sees tokens when a cache keeps them."""
    app = msal.ConfidentialClientApplication(client_id, client_credential=client_secret,
                                             authority=f"{entra.authority_host}/{tenant}",
                                             instance_discovery=False, http_client=entra_session)
    for _ in range(20):
        app.acquire_token_by_refresh_token(
            entra.issue_refresh_token(tenant, str(uuid.uuid4())), list(GRAPH))

    assert len(list(app.token_cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN))) == 20


def test_nothing_secret_or_upstream_reaches_the_logs(provider, entra, tenant, oid, caplog):
    caplog.set_level(logging.DEBUG)
    grant = provider.on_behalf_of(tenant, Sensitive(entra.user_token(tenant, oid)), GRAPH)
    provider.refresh(tenant, grant.refresh_token, GRAPH)
    for kind in ("invalid_grant", "interaction_required", "consent_required", "throttled"):
        token = entra.issue_refresh_token(tenant, oid)
        entra.fault(kind, refresh_token=token)
        with pytest.raises((ReauthRequired, UpstreamUnavailable)):
            provider.refresh(tenant, Sensitive(token), GRAPH)

    ours = [r.getMessage() for r in caplog.records if r.name.startswith("tokenvault")]
    assert any("70008" in m for m in ours)  # the AADSTS number is logged, for ops
    assert not [m for m in ours if DESCRIPTION_MARKER in m]
    assert not [s for s in entra.issued_secrets() if s in caplog.text]
