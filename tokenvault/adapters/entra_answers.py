"""What an error answer from Entra ID means: the plain dict msal returns, mapped to a VaultError.

Split from entra.py because the mapping is a pure function of the answer (no msal, no HTTP):
this module is the table and the code sets it is made of, and tests/unit/test_entra_refusal.py
checks it row by row. What msal raises, and what a success must hold, are entra.py's (``_call``
and ``_grant``), where the request runs.

``_refusal`` decides from error, error_codes, suberror and claims alone; the first row that
matches decides, and ReauthRequired carries Entra's claims challenge when there is one::

    answer                                                   raised
    suberror consent_required / 65001                        ReauthRequired(consent_required)
    50196, temporarily_unavailable                           UpstreamUnavailable
    interaction_required (50076, 50079, 53003, ...)          ReauthRequired(interaction_required)
    invalid_grant, OBO assertion refused (50013, 50027,
      500133)                                                InvalidToken
    invalid_grant on refresh, the token itself dead
      (``DEAD_GRANT``: 70008, 700082, 700084, 50173, 70043,
      50132, 50133)                                          ReauthRequired(invalid_grant, grant_dead)
    invalid_grant 70000 (scopes unauthorized or expired)     ReauthRequired(scope_refused)
    invalid_grant 50076, 50079 (a step-up)                   ReauthRequired(interaction_required)
    any other invalid_grant                                  ReauthRequired(grant_refused)
    invalid_scope (the caller asked for scopes Entra refuses) BadRequest(field="scopes")
    anything else (invalid_client, ...)                      InternalError

Only a dead grant erases a stored refresh token (``grant_dead``): Entra also answers
``invalid_grant`` when it refuses only the requested scopes while the grant lives, and a code
we do not know is kept too — when in doubt, keep. The codes and where each comes from are in
docs/design.md "Identity-provider answers".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import (
    BadRequest,
    InternalError,
    InvalidToken,
    ReauthRequired,
    UpstreamUnavailable,
    VaultError,
)

__all__ = ["DEAD_GRANT"]

# The identity provider's logger, as before the split: what an answer meant is logged beside
# the request that got it.
log = logging.getLogger("tokenvault.adapters.entra")

#: The upstream named in UpstreamUnavailable for every answer of the identity provider.
_IDP = "identity_provider"
# invalid_grant codes that in OBO mean the user's token was refused, not that a grant died.
_ASSERTION_REFUSED = frozenset({50013, 50027, 500133})
# invalid_grant codes that are throttling: the refresh token is alive.
_THROTTLED = frozenset({50196})
#: invalid_grant codes that say the refresh token itself is dead
#: (https://learn.microsoft.com/entra/identity-platform/reference-error-codes):
#: 70008 ExpiredOrRevokedGrant, 700082 ExpiredOrRevokedGrantInactiveToken, 700084 a SPA's
#: token past its fixed lifetime, 50173 FreshTokenNeeded (revoked by an admin or the user),
#: 70043 BadTokenDueToSignInFrequency, 50132 SsoArtifactInvalidOrExpired and 50133
#: SsoArtifactRevoked (a password change).
DEAD_GRANT = frozenset({70008, 700082, 700084, 50173, 70043, 50132, 50133})
#: invalid_grant 70000: Entra's answer when it refuses the requested scopes ("one or more
#: scopes requested are unauthorized or expired") while the refresh token lives.
_SCOPES_REFUSED = frozenset({70000})
#: MFA required / MFA registration required, sometimes sent as invalid_grant.
_STEP_UP = frozenset({50076, 50079})


def _refusal(flow: str, result: Mapping[str, Any]) -> VaultError:
    """The error an msal error answer means, from the answer alone: the module's table.

    ``flow`` is ``"obo"`` or ``"refresh"``: only OBO has a user's token for Entra to refuse.
    """
    error, codes = result.get("error"), _codes(result)
    claims = result.get("claims") if isinstance(result.get("claims"), str) else None
    if result.get("suberror") == "consent_required" or 65001 in codes:
        return ReauthRequired(reason="consent_required", claims=claims)
    if codes & _THROTTLED or error == "temporarily_unavailable":
        return UpstreamUnavailable(upstream=_IDP)
    if error == "interaction_required":
        return ReauthRequired(reason="interaction_required", claims=claims)
    if error == "invalid_grant":
        if flow == "obo" and codes & _ASSERTION_REFUSED:
            return InvalidToken()
        if flow == "refresh" and codes & DEAD_GRANT:
            return ReauthRequired(reason="invalid_grant", claims=claims, grant_dead=True)
        if codes & _SCOPES_REFUSED:
            return ReauthRequired(reason="scope_refused", claims=claims)
        if codes & _STEP_UP:
            return ReauthRequired(reason="interaction_required", claims=claims)
        # Not a code we know to mean a dead grant: keep the token, and say which code it was.
        log.warning("%s: invalid_grant with codes %s kept as not dead (code=grant_refused)",
                    flow, sorted(codes))
        return ReauthRequired(reason="grant_refused", claims=claims)
    if error == "invalid_scope":
        # The caller's own mistake, and one it can fix: say which field.
        return BadRequest("The identity provider refused the requested scopes.", field="scopes")
    return InternalError()


def _codes(result: Mapping[str, Any]) -> frozenset[int]:
    """The answer's AADSTS numbers (msal's ``error_codes``); anything not an int is ignored."""
    return frozenset(c for c in result.get("error_codes") or () if isinstance(c, int))
