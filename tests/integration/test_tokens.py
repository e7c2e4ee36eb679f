"""CallerTokenValidator against the Entra fake: real PyJWT, real HTTPS, JWKS fetched and counted at
the fake. Hostile tokens are refused with one ``InvalidToken`` that says nothing, and the ones
that can be refused before a fetch cause none."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid

import jwt
import msal
import pytest
import requests
from requests.adapters import HTTPAdapter

from tokenvault.adapters.caller_tokens import CallerTokenValidator
from tokenvault.clouds import PUBLIC_CLOUD
from tokenvault.dev.entra_fake import SigningKey
from tokenvault.errors import InvalidToken, UpstreamUnavailable
from tokenvault.model import CallerKind

CALLER_APP = "9d2c8a51-7e3f-4b6a-8c1d-2e3f4a5b6c7d"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_validator(entra, entra_session, client_id, clock):
    def make(**options) -> CallerTokenValidator:
        options.setdefault("authority_host", entra.authority_host)
        return CallerTokenValidator(client_id=client_id, session=entra_session, clock=clock, **options)

    return make


@pytest.fixture
def attacker() -> SigningKey:
    return SigningKey()


def _b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _resigned(token: str, header: dict, sign) -> str:
    """The token's payload under a new header, signed by ``sign(signing_input)``."""
    payload = token.split(".")[1]
    signing_input = f"{_b64(header)}.{payload}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def test_a_user_token_becomes_a_user_caller_carrying_its_own_token(make_validator, entra, tenant, oid):
    token = entra.user_token(tenant, oid, scp="access_as_user Files.Read")

    caller = make_validator()(f"Bearer {token}")

    assert caller.kind is CallerKind.USER
    assert (caller.tenant_id, caller.object_id) == (tenant, oid)
    assert caller.scopes == {"access_as_user", "Files.Read"}
    assert caller.assertion.reveal() == token
    assert token not in repr(caller)


def test_the_api_uri_is_an_accepted_audience(make_validator, entra, client_id, tenant, oid):
    token = entra.user_token(tenant, oid, aud=f"api://{client_id}")

    assert make_validator()(f"Bearer {token}").object_id == oid


# Each row: a way to build a bad Authorization header, and how many JWKS fetches it may cause
# (0: refused before any network call).
HOSTILE = {
    "no header": (lambda t: None, 0),
    "empty header": (lambda t: "", 0),
    "basic scheme": (lambda t: "Basic dXNlcjpwYXNzd29yZA==", 0),
    "not a JWT": (lambda t: "Bearer not-a-jwt", 0),
    "bad base64": (lambda t: "Bearer !!!.@@@.###", 0),
    "header not JSON": (lambda t: "Bearer " + _b64(b"hello") + "." + t.good().split(".", 1)[1], 0),
    "too long": (lambda t: "Bearer " + "a" * 20_000 + ".b.c", 0),
    "alg none": (lambda t: "Bearer " + _resigned(t.good(), {"alg": "none", "kid": t.kid},
                                                  lambda _: b""), 0),
    "HS256 keyed with the RSA public key": (
        lambda t: "Bearer " + _resigned(t.good(), {"alg": "HS256", "typ": "JWT", "kid": t.kid},
                                        lambda data: hmac.new(t.entra.public_pem(), data,
                                                              hashlib.sha256).digest()), 0),
    "PS256 with the tenant's own key": (
        lambda t: "Bearer " + jwt.encode(jwt.decode(t.good(), options={"verify_signature": False}),
                                         t.entra.current_key.private, algorithm="PS256",
                                         headers={"kid": t.kid}), 0),
    "crit header": (lambda t: "Bearer " + t.good(headers={"crit": ["exp"]}), 0),
    "kid missing": (lambda t: "Bearer " + t.good(headers={"kid": None}), 0),
    "tid missing": (lambda t: "Bearer " + t.good(claims={"tid": None}), 0),
    "tid not a GUID": (lambda t: "Bearer " + t.good(claims={"tid": "contoso.onmicrosoft.com"}), 0),
    "tid upper case": (lambda t: "Bearer " + t.good(claims={"tid": t.tenant.upper()}), 0),
    "unknown kid": (lambda t: "Bearer " + t.good(key=t.attacker), 2),
    "known kid, other key": (lambda t: "Bearer " + t.good(key=t.attacker, headers={"kid": t.kid}), 1),
    "wrong audience": (lambda t: "Bearer " + t.good(aud=str(uuid.uuid4())), 1),
    "audience of another API": (lambda t: "Bearer " + t.good(aud="https://graph.microsoft.com"), 1),
    "issuer of another tenant": (
        lambda t: "Bearer " + t.good(claims={"iss": t.entra.issuer(str(uuid.uuid4()))}), 1),
    "v1 issuer off the public cloud": (
        lambda t: "Bearer " + t.good(claims={"iss": f"https://sts.windows.net/{t.tenant}/"}), 1),
    "oid missing": (lambda t: "Bearer " + t.good(claims={"oid": None}), 1),
    "neither scp nor roles": (lambda t: "Bearer " + t.good(scp=None), 1),
    "expired beyond leeway": (lambda t: "Bearer " + t.good(now=t.clock.now - 3600 - 301), 1),
    "not yet valid beyond leeway": (lambda t: "Bearer " + t.good(now=t.clock.now + 301), 1),
    "exp not a number": (lambda t: "Bearer " + t.good(claims={"exp": "tomorrow"}), 1),
}


class _Toolkit:
    def __init__(self, entra, tenant, oid, attacker, clock) -> None:
        self.entra, self.tenant, self.oid, self.attacker, self.clock = entra, tenant, oid, attacker, clock
        self.kid = entra.current_key.kid

    def good(self, **overrides) -> str:
        return self.entra.user_token(self.tenant, self.oid, **overrides)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_tokens_are_refused_without_detail(name, make_validator, entra, tenant, oid,
                                                   attacker, clock):
    build, max_fetches = HOSTILE[name]
    header = build(_Toolkit(entra, tenant, oid, attacker, clock))
    validator = make_validator()

    with pytest.raises(InvalidToken) as refused:
        validator(header)

    assert str(refused.value) == InvalidToken.default_message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert entra.counts["jwks"] <= max_fetches
    if max_fetches == 0:
        assert entra.counts["jwks"] == 0


@pytest.mark.parametrize("issued", [-3600 - 200, 200], ids=["expired 200 s ago", "valid in 200 s"])
def test_leeway_lets_a_token_just_past_exp_or_before_nbf_through(make_validator, entra, tenant,
                                                                 oid, clock, issued):
    header = "Bearer " + entra.user_token(tenant, oid, now=clock.now + issued)  # lifetime 3600 s

    caller = make_validator()(header)  # the default leeway, five minutes

    assert (caller.tenant_id, caller.object_id) == (tenant, oid)
    with pytest.raises(InvalidToken):  # the same token is out of date without the leeway
        make_validator(leeway=0)(header)


def test_a_tenant_outside_the_allowed_list_is_refused_before_any_fetch(make_validator, entra,
                                                                       tenant, oid):
    validator = make_validator(allowed_tenants=frozenset({str(uuid.uuid4())}),
                               caller_tenants=frozenset({str(uuid.uuid4())}))

    with pytest.raises(InvalidToken):
        validator("Bearer " + entra.user_token(tenant, oid))

    assert entra.counts["jwks"] == 0


def test_an_allowed_tenant_is_accepted(make_validator, entra, tenant, oid):
    validator = make_validator(allowed_tenants=frozenset({tenant}))

    assert validator("Bearer " + entra.user_token(tenant, oid)).tenant_id == tenant


def test_a_listed_callers_home_tenant_passes_the_tenant_filter(make_validator, entra, tenant):
    """The vendor's own tenant is not a customer tenant, but its apps' tokens must get through
    to be checked as (app id, tenant) pairs."""
    validator = make_validator(allowed_tenants=frozenset({str(uuid.uuid4())}),
                               caller_tenants=frozenset({tenant}))

    caller = validator("Bearer " + entra.app_token(tenant, CALLER_APP, roles=["TokenVault.Redeem"]))

    assert caller.app == (CALLER_APP, tenant)


def test_a_hundred_forged_kids_cause_at_most_one_refetch(make_validator, entra, tenant, oid,
                                                         attacker):
    validator = make_validator()
    validator("Bearer " + entra.user_token(tenant, oid))
    assert entra.jwks_fetches["common"] == 1

    for _ in range(100):
        forged = entra.user_token(tenant, oid, key=attacker, headers={"kid": uuid.uuid4().hex})
        with pytest.raises(InvalidToken):
            validator("Bearer " + forged)

    assert entra.jwks_fetches["common"] == 2


def test_one_key_set_serves_every_tenant(make_validator, entra, oid):
    """Entra signs every tenant's tokens with the common key set: a new tenant costs no fetch."""
    validator = make_validator()
    tenants = [str(uuid.uuid4()) for _ in range(20)]

    callers = [validator("Bearer " + entra.user_token(t, oid)) for t in tenants]

    assert [c.tenant_id for c in callers] == tenants
    assert entra.counts["jwks"] == entra.jwks_fetches["common"] == 1


def test_forged_tokens_naming_random_tenants_cost_at_most_one_refetch(make_validator, entra,
                                                                      attacker, oid, tenant):
    validator = make_validator()

    for _ in range(150):
        with pytest.raises(InvalidToken):
            validator("Bearer " + entra.user_token(str(uuid.uuid4()), oid, key=attacker))

    assert entra.counts["jwks"] <= 2  # the first fetch, and the one refetch of the interval
    # ... and a real user of a tenant never seen before is served from the same set.
    assert validator("Bearer " + entra.user_token(tenant, oid)).tenant_id == tenant
    assert entra.counts["jwks"] <= 2


def test_the_refetch_interval_renews_with_time(make_validator, entra, tenant, oid, attacker,
                                               clock):
    validator = make_validator(refetch_interval=300)
    validator("Bearer " + entra.user_token(tenant, oid))
    forged = entra.user_token(str(uuid.uuid4()), oid, key=attacker)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            validator("Bearer " + forged)
    assert entra.jwks_fetches["common"] == 2

    clock.now += 301
    with pytest.raises(InvalidToken):
        validator("Bearer " + forged)

    assert entra.jwks_fetches["common"] == 3


def test_a_key_roll_at_entra_is_picked_up_through_the_unknown_kid_refetch(make_validator, entra,
                                                                          tenant, oid):
    validator = make_validator()
    old_key = entra.current_key
    validator("Bearer " + entra.user_token(tenant, oid))

    entra.roll_keys()

    assert validator("Bearer " + entra.user_token(tenant, oid)).object_id == oid
    assert entra.jwks_fetches["common"] == 2
    with pytest.raises(InvalidToken):  # the old key left the JWKS, and our cache with it
        validator("Bearer " + entra.user_token(tenant, oid, key=old_key))


def test_a_key_whose_issuer_names_one_tenant_verifies_no_other(make_validator, entra, tenant, oid):
    """Where a key carries an issuer (not a {tenantid} template), a token of another tenant
    signed with it is refused even though its iss and tid agree."""
    entra.key_issuers[entra.current_key.kid] = entra.issuer(tenant)
    validator = make_validator()

    assert validator("Bearer " + entra.user_token(tenant, oid)).tenant_id == tenant
    with pytest.raises(InvalidToken):
        validator("Bearer " + entra.user_token(str(uuid.uuid4()), oid))


def test_jku_x5u_and_jwk_headers_are_never_followed(make_validator, entra, tenant, oid, attacker):
    elsewhere = f"{entra.authority_host}/attacker"
    headers = {"jku": f"{elsewhere}/jwks.json", "x5u": f"{elsewhere}/cert.pem",
               "jwk": dict(attacker.jwk)}
    validator = make_validator()

    with pytest.raises(InvalidToken):
        validator("Bearer " + entra.user_token(tenant, oid, key=attacker, headers=headers))
    genuine = validator("Bearer " + entra.user_token(tenant, oid, headers=headers))

    assert genuine.object_id == oid
    assert not [path for _, path in entra.requests if path.startswith("/attacker")]


CLASSIFIED = {
    "user token": (lambda t: t.entra.user_token(t.tenant, t.oid),
                   CallerKind.USER, "5f1c2b7e-0000-4000-8000-00000000f00d", frozenset()),
    "user token with roles": (lambda t: t.entra.user_token(t.tenant, t.oid,
                                                           claims={"roles": ["Reader"]}),
                              CallerKind.USER, "5f1c2b7e-0000-4000-8000-00000000f00d",
                              frozenset({"Reader"})),
    "app token v2 (azp)": (lambda t: t.entra.app_token(t.tenant, CALLER_APP,
                                                       roles=["TokenVault.Redeem"]),
                           CallerKind.APP, CALLER_APP, frozenset({"TokenVault.Redeem"})),
    "app token v1 (appid)": (lambda t: t.entra.app_token(
        t.tenant, CALLER_APP, roles=["TokenVault.Admin"], ver="1.0",
        claims={"iss": t.entra.issuer(t.tenant)}),
        CallerKind.APP, CALLER_APP, frozenset({"TokenVault.Admin"})),
    "roles without scp or idtyp": (lambda t: t.entra.app_token(
        t.tenant, CALLER_APP, roles=["TokenVault.Redeem"], claims={"idtyp": None}),
        CallerKind.APP, CALLER_APP, frozenset({"TokenVault.Redeem"})),
    "idtyp app wins over scp": (lambda t: t.entra.app_token(
        t.tenant, CALLER_APP, claims={"scp": "access_as_user"}),
        CallerKind.APP, CALLER_APP, frozenset()),
}


@pytest.mark.parametrize("name", list(CLASSIFIED))
def test_tokens_are_classified_as_user_or_app(name, make_validator, entra, tenant, oid, attacker,
                                              clock):
    build, kind, app_id, roles = CLASSIFIED[name]

    caller = make_validator()("Bearer " + build(_Toolkit(entra, tenant, oid, attacker, clock)))

    assert (caller.kind, caller.app_id, caller.roles) == (kind, app_id, roles)
    assert caller.tenant_id == tenant
    assert (caller.assertion is not None) == (kind is CallerKind.USER)
    assert (caller.object_id == oid) == (kind is CallerKind.USER)


def test_an_app_token_without_an_app_id_is_refused(make_validator, entra, tenant):
    token = entra.app_token(tenant, CALLER_APP, roles=["TokenVault.Redeem"], claims={"azp": None})

    with pytest.raises(InvalidToken):
        make_validator()("Bearer " + token)


class _PublicCloudToFake(HTTPAdapter):
    """Routes requests for login.microsoftonline.com to the fake (an edge fake of DNS)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self._target = target

    def send(self, request, **kwargs):
        request.url = request.url.replace(PUBLIC_CLOUD, self._target, 1)
        return super().send(request, **kwargs)


def test_the_v1_issuer_is_accepted_for_the_public_cloud_only(entra, entra_session, client_id,
                                                            tenant, clock):
    entra_session.mount(PUBLIC_CLOUD + "/", _PublicCloudToFake(entra.authority_host))
    # The public cloud's common keys name its own issuer template.
    entra.key_issuers[entra.current_key.kid] = PUBLIC_CLOUD + "/{tenantid}/v2.0"
    public = CallerTokenValidator(client_id=client_id, authority_host=PUBLIC_CLOUD,
                            session=entra_session, clock=clock)
    v1 = entra.app_token(tenant, CALLER_APP, roles=["TokenVault.Redeem"], ver="1.0")

    assert public("Bearer " + v1).app_id == CALLER_APP
    with pytest.raises(InvalidToken):
        CallerTokenValidator(client_id=client_id, authority_host=entra.authority_host,
                       session=entra_session, clock=clock)("Bearer " + v1)


def test_unreachable_keys_are_an_upstream_outage_not_a_bad_token(entra, entra_session, client_id,
                                                                 tenant, oid, clock):
    closed = requests.Session()
    closed.trust_env = False
    validator = CallerTokenValidator(client_id=client_id, authority_host="https://127.0.0.1:9",
                               session=closed, clock=clock, timeout=1)
    try:
        with pytest.raises(UpstreamUnavailable) as outage:
            validator("Bearer " + entra.user_token(tenant, oid))
    finally:
        closed.close()

    assert outage.value.upstream == "identity_provider"


def test_refusals_are_logged_by_reason_and_tokens_never(make_validator, entra, tenant, oid,
                                                        attacker, clock, caplog):
    caplog.set_level(logging.DEBUG)
    validator = make_validator()
    validator("Bearer " + entra.user_token(tenant, oid))
    for token in (entra.user_token(tenant, oid, now=clock.now - 7200),
                  entra.user_token(tenant, oid, key=attacker),
                  entra.user_token(tenant, oid, aud=str(uuid.uuid4()))):
        with pytest.raises(InvalidToken) as refused:
            validator("Bearer " + token)
        assert token not in str(refused.value) and token not in repr(refused.value)

    reasons = [r.getMessage() for r in caplog.records if r.name == "tokenvault.adapters.caller_tokens"]
    assert any("expired" in m for m in reasons)
    assert any("kid_unknown" in m for m in reasons)
    assert any("audience" in m for m in reasons)
    leaked = [s for s in entra.issued_secrets() if s in caplog.text]
    assert not leaked


def test_an_app_token_from_the_client_credentials_grant_is_an_app_caller(make_validator, entra,
                                                                         entra_session, client_id,
                                                                         tenant):
    secret = "caller-secret-" + uuid.uuid4().hex
    entra.register_client(CALLER_APP, secret=secret, roles=["TokenVault.Redeem"])
    caller_app = msal.ConfidentialClientApplication(
        CALLER_APP, client_credential=secret, authority=f"{entra.authority_host}/{tenant}",
        instance_discovery=False, http_client=entra_session)

    result = caller_app.acquire_token_for_client([f"api://{client_id}/.default"])
    caller = make_validator()("Bearer " + result["access_token"])

    assert (caller.kind, caller.app_id, caller.roles) == (CallerKind.APP, CALLER_APP,
                                                          {"TokenVault.Redeem"})
    assert entra.counts["client_credentials"] == 1
