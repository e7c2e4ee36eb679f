"""``_refusal``: what an error answer from Entra means, decided from the plain dict msal returns.

One case per row of the table in ``tokenvault/adapters/entra_answers.py``'s docstring, plus the order in
which the rows apply. What msal raises, and grants, are mapped by ``_call`` and ``_grant``; those
are checked against the fake Entra in tests/integration/test_entra.py.
"""

from __future__ import annotations

import pytest

from tokenvault.adapters.entra_answers import _refusal
from tokenvault.errors import (
    BadRequest,
    InternalError,
    InvalidToken,
    ReauthRequired,
    UpstreamUnavailable,
)

CLAIMS = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'


def answer(error: str | None, *codes, **more) -> dict:
    """An error answer as msal returns it (description and ids are not decided on)."""
    result = {"error_description": "AADSTS: not ours to repeat", "correlation_id": "c0ffee"}
    if error is not None:
        result["error"] = error
    return {**result, "error_codes": list(codes), **more}


def reauth(reason: str, claims: str | None = None, *, dead: bool = False) -> tuple:
    """ReauthRequired for ``reason``; ``dead``: the refresh token itself is dead (and only then
    may the vault erase it)."""
    return ReauthRequired, {"reason": reason, "claims": claims, "grant_dead": dead}


def dead(claims: str | None = None) -> tuple:
    return reauth("invalid_grant", claims, dead=True)


# name → (flow, answer, error type, the attributes it must carry)
REFUSALS = {
    # suberror consent_required / 65001
    "consent suberror": ("refresh", answer("invalid_grant", 65001, suberror="consent_required"),
                         *reauth("consent_required")),
    "consent suberror without codes": ("obo", answer("invalid_grant", suberror="consent_required"),
                                       *reauth("consent_required")),
    "65001 alone": ("obo", answer("invalid_grant", 65001), *reauth("consent_required")),
    "65001 under interaction_required, claims kept": (
        "refresh", answer("interaction_required", 65001, claims=CLAIMS),
        *reauth("consent_required", CLAIMS)),
    # 50196, temporarily_unavailable
    "throttled (50196)": ("refresh", answer("invalid_grant", 50196),
                          UpstreamUnavailable, {"upstream": "identity_provider", "retry_after": 5}),
    "temporarily_unavailable": ("obo", answer("temporarily_unavailable"),
                                UpstreamUnavailable, {"upstream": "identity_provider"}),
    # interaction_required
    "MFA (50076) with claims": ("refresh", answer("interaction_required", 50076, claims=CLAIMS),
                                *reauth("interaction_required", CLAIMS)),
    "MFA (50079)": ("obo", answer("interaction_required", 50079),
                    *reauth("interaction_required")),
    "CA policy (53003)": ("refresh", answer("interaction_required", 53003, claims=CLAIMS),
                          *reauth("interaction_required", CLAIMS)),
    "claims that are not a string are dropped": (
        "refresh", answer("interaction_required", 50076, claims={"access_token": {}}),
        *reauth("interaction_required")),
    # invalid_grant, OBO assertion refused
    "OBO assertion refused (50013)": ("obo", answer("invalid_grant", 50013), InvalidToken, {}),
    "OBO assertion refused (50027)": ("obo", answer("invalid_grant", 50027), InvalidToken, {}),
    "OBO assertion expired (500133)": ("obo", answer("invalid_grant", 500133), InvalidToken, {}),
    "OBO assertion refused among other codes": ("obo", answer("invalid_grant", 70000, 50013),
                                                InvalidToken, {}),
    # invalid_grant on refresh: the refresh token itself is dead — the only rows that erase it
    "expired (70008)": ("refresh", answer("invalid_grant", 70008), *dead()),
    "expired by inactivity (700082)": ("refresh", answer("invalid_grant", 700082), *dead()),
    "a SPA's fixed lifetime (700084)": ("refresh", answer("invalid_grant", 700084), *dead()),
    "revoked (50173)": ("refresh", answer("invalid_grant", 50173), *dead()),
    "sign-in frequency (70043)": ("refresh", answer("invalid_grant", 70043), *dead()),
    "session expired (50132) with claims": ("refresh", answer("invalid_grant", 50132, claims=CLAIMS),
                                            *dead(CLAIMS)),
    "session revoked (50133)": ("refresh", answer("invalid_grant", 50133), *dead()),
    "a dead code among others": ("refresh", answer("invalid_grant", 70000, 70008), *dead()),
    # invalid_grant that leaves the token alive
    "scopes unauthorized or expired (70000)": ("refresh", answer("invalid_grant", 70000),
                                               *reauth("scope_refused")),
    "scopes refused, with claims": ("refresh", answer("invalid_grant", 70000, claims=CLAIMS),
                                    *reauth("scope_refused", CLAIMS)),
    "MFA sent as invalid_grant (50076)": ("refresh", answer("invalid_grant", 50076, claims=CLAIMS),
                                          *reauth("interaction_required", CLAIMS)),
    "MFA registration as invalid_grant (50079)": ("refresh", answer("invalid_grant", 50079),
                                                  *reauth("interaction_required")),
    "a code we do not know is kept": ("refresh", answer("invalid_grant", 123456),
                                      *reauth("grant_refused")),
    "user disabled (50057) is kept: the account may be enabled again": (
        "refresh", answer("invalid_grant", 50057), *reauth("grant_refused")),
    "invalid_grant without codes is kept": ("refresh", answer("invalid_grant"),
                                            *reauth("grant_refused")),
    "an assertion code in a refresh is kept": ("refresh", answer("invalid_grant", 50013),
                                               *reauth("grant_refused")),
    "OBO: a dead code is no stored token's death": ("obo", answer("invalid_grant", 50173),
                                                    *reauth("grant_refused")),
    "codes that are not ints are ignored": ("obo", answer("invalid_grant", "50013", None),
                                            *reauth("grant_refused")),
    # invalid_scope
    "invalid scope (70011)": ("refresh", answer("invalid_scope", 70011),
                              BadRequest, {"field": "scopes"}),
    "invalid scope in OBO": ("obo", answer("invalid_scope"), BadRequest, {"field": "scopes"}),
    # anything else
    "invalid_client (7000215)": ("refresh", answer("invalid_client", 7000215), InternalError, {}),
    "unauthorized_client": ("obo", answer("unauthorized_client", 700016), InternalError, {}),
    "an error we do not know": ("refresh", answer("something_new"), InternalError, {}),
    "no error at all": ("refresh", answer(None), InternalError, {}),
    "an empty answer": ("obo", {}, InternalError, {}),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_an_error_answer_maps_to_its_vault_error(name):
    flow, result, raised, carried = REFUSALS[name]

    error = _refusal(flow, result)

    assert type(error) is raised
    assert {attribute: getattr(error, attribute) for attribute in carried} == carried
    assert "not ours to repeat" not in str(error) and "not ours to repeat" not in repr(error)

