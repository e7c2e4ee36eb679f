"""A background job for users who are not here: it acts for each stored user as the app.

The web API redeems as itself (an app token from its ``APP_CREDENTIAL`` — client credentials
or a managed identity of an app listed in ``TOKENVAULT_REDEEM_CALLERS`` with the
``TokenVault.Redeem`` role) and hands Graph a ``VaultUserCredential`` per user: the Graph
client asks the credential for a token as any Azure SDK client would, and the credential
redeems it (once, then from its cache until shortly before it expires).

    python -m flask_webapi.background   # with the app's settings in the environment
"""

from __future__ import annotations

from typing import Dict, Iterable, Tuple

from flask import Flask

from graph import GRAPH_SCOPES, GraphClient
from tokenvault_client import (
    NotFound,
    ReauthRequired,
    TokenVaultAuthenticationError,
    VaultUserCredential,
)

from .vault_token import EXTENSION

__all__ = ["refresh_profiles", "SIGN_IN_AGAIN"]

#: What the job reports for a user whose stored grant is gone or dead.
SIGN_IN_AGAIN = "sign-in required"


def refresh_profiles(app: Flask, users: Iterable[Tuple[str, str]]) -> Dict[str, str]:
    """Each user's Graph display name, or why there is none; keyed ``<tenant>/<user>``."""
    client = app.extensions[EXTENSION].client
    report: Dict[str, str] = {}
    for tenant_id, user_id in users:
        credential = VaultUserCredential(client, tenant_id, user_id)
        key = f"{tenant_id}/{user_id}"
        try:
            with GraphClient(credential, GRAPH_SCOPES, base_url=app.config["GRAPH_URL"],
                             **app.config["GRAPH_OPTIONS"]) as graph:
                report[key] = graph.me().get("displayName") or ""
        except (NotFound, ReauthRequired):
            # Only the user can fix this: at their next visit, @vault_token stores again.
            report[key] = SIGN_IN_AGAIN
        except TokenVaultAuthenticationError as error:
            report[key] = f"refused: {error.code}"
    return report


if __name__ == "__main__":  # pragma: no cover - a manual run against a configured app
    import json
    import sys

    from azure.identity import DefaultAzureCredential

    from .app import create_app

    pairs = [tuple(arg.split("/", 1)) for arg in sys.argv[1:]]
    print(json.dumps(refresh_profiles(create_app({"APP_CREDENTIAL": DefaultAzureCredential()}),
                                      pairs), indent=2))
