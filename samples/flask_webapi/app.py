"""A Flask web API protected by Entra ID that calls Microsoft Graph for its users through
TokenVault.

    cd samples && flask --app flask_webapi.app run

Settings (environment, or ``create_app(config)``):

- ``TOKENVAULT_ENDPOINT``: the vault's base URL (``scripts/run`` prints the local one);
- ``TOKENVAULT_CLIENT_ID``: this API's app registration, which is also the vault's;
- ``TOKENVAULT_FUNCTION_KEY``: the Functions key (none locally);
- ``AUTHORITY_HOST``: Entra ID, or a local identity provider;
- ``GRAPH_URL``: Microsoft Graph, or a stand-in.

In code only: ``APP_CREDENTIAL``, the app's ``TokenCredential`` for the background job
(``DefaultAzureCredential()`` with a managed identity in Azure), ``TLS_CONTEXT`` to trust a
local identity provider, and ``CLIENT_OPTIONS`` / ``GRAPH_OPTIONS`` (azure-core keywords, e.g.
``connection_verify``).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from flask import Flask, g

from entra_tokens import PUBLIC_AUTHORITY, EntraTokenValidator
from graph import GRAPH, GRAPH_SCOPES, GraphClient
from tokenvault_client import TokenVaultClient

from .vault_token import EXTENSION, VaultTokens, vault_token

__all__ = ["create_app"]


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        TOKENVAULT_ENDPOINT=os.environ.get("TOKENVAULT_ENDPOINT", "http://127.0.0.1:7071"),
        TOKENVAULT_CLIENT_ID=os.environ.get("TOKENVAULT_CLIENT_ID", ""),
        TOKENVAULT_FUNCTION_KEY=os.environ.get("TOKENVAULT_FUNCTION_KEY") or None,
        AUTHORITY_HOST=os.environ.get("AUTHORITY_HOST", PUBLIC_AUTHORITY),
        GRAPH_URL=os.environ.get("GRAPH_URL", GRAPH),
        APP_CREDENTIAL=None, TLS_CONTEXT=None, CLIENT_OPTIONS={}, GRAPH_OPTIONS={},
    )
    app.config.update(config or {})
    settings = app.config
    client = TokenVaultClient(settings["TOKENVAULT_ENDPOINT"],
                              client_id=settings["TOKENVAULT_CLIENT_ID"],
                              credential=settings["APP_CREDENTIAL"],
                              function_key=settings["TOKENVAULT_FUNCTION_KEY"],
                              **settings["CLIENT_OPTIONS"])
    validator = EntraTokenValidator(client_id=settings["TOKENVAULT_CLIENT_ID"],
                                    authority_host=settings["AUTHORITY_HOST"],
                                    ssl_context=settings["TLS_CONTEXT"])
    app.extensions[EXTENSION] = VaultTokens(client, validator,
                                            authority_host=settings["AUTHORITY_HOST"])

    @app.get("/me")
    @vault_token(scopes=GRAPH_SCOPES)
    def me():
        """The caller's Graph profile, fetched with the token the vault redeemed for them."""
        with GraphClient.for_token(g.vault_token, base_url=settings["GRAPH_URL"],
                                   **settings["GRAPH_OPTIONS"]) as graph:
            profile = graph.me()
        return {"id": profile.get("id"), "displayName": profile.get("displayName")}

    return app
