"""The Flask sample's web API in FastAPI, on the async client.

    cd samples && uvicorn fastapi_webapi.app:app      # settings as in flask_webapi/app.py

``create_app(config)`` takes the same settings as the Flask sample (``TOKENVAULT_ENDPOINT``,
``TOKENVAULT_CLIENT_ID``, ``TOKENVAULT_FUNCTION_KEY``, ``AUTHORITY_HOST``, ``GRAPH_URL``,
``APP_CREDENTIAL`` — an async credential here —, ``TLS_CONTEXT``, ``CLIENT_OPTIONS``,
``GRAPH_OPTIONS``). The async client lives as long as the app (its lifespan).
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator, Mapping, Optional

from azure.core.credentials import AccessToken
from fastapi import Depends, FastAPI

from entra_tokens import PUBLIC_AUTHORITY, EntraTokenValidator
from graph import GRAPH, GRAPH_SCOPES, AsyncGraphClient
from tokenvault_client.aio import TokenVaultClient

from .dependency import Problem, VaultTokens, problem_response, vault_token

__all__ = ["create_app", "GraphToken"]

#: A view's parameter of this type gets an access token for Graph for the calling user.
GraphToken = Annotated[AccessToken, Depends(vault_token(GRAPH_SCOPES))]


def settings_from(config: Optional[Mapping[str, Any]]) -> dict:
    return {
        "TOKENVAULT_ENDPOINT": os.environ.get("TOKENVAULT_ENDPOINT", "http://127.0.0.1:7071"),
        "TOKENVAULT_CLIENT_ID": os.environ.get("TOKENVAULT_CLIENT_ID", ""),
        "TOKENVAULT_FUNCTION_KEY": os.environ.get("TOKENVAULT_FUNCTION_KEY") or None,
        "AUTHORITY_HOST": os.environ.get("AUTHORITY_HOST", PUBLIC_AUTHORITY),
        "GRAPH_URL": os.environ.get("GRAPH_URL", GRAPH),
        "APP_CREDENTIAL": None, "TLS_CONTEXT": None, "CLIENT_OPTIONS": {}, "GRAPH_OPTIONS": {},
        **(config or {}),
    }


def vault_client(settings: Mapping[str, Any]) -> TokenVaultClient:
    return TokenVaultClient(settings["TOKENVAULT_ENDPOINT"],
                            client_id=settings["TOKENVAULT_CLIENT_ID"],
                            credential=settings["APP_CREDENTIAL"],
                            function_key=settings["TOKENVAULT_FUNCTION_KEY"],
                            **settings["CLIENT_OPTIONS"])


def create_app(config: Optional[Mapping[str, Any]] = None) -> FastAPI:
    settings = settings_from(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with vault_client(settings) as client:
            validator = EntraTokenValidator(client_id=settings["TOKENVAULT_CLIENT_ID"],
                                            authority_host=settings["AUTHORITY_HOST"],
                                            ssl_context=settings["TLS_CONTEXT"])
            app.state.vault = VaultTokens(client, validator,
                                          authority_host=settings["AUTHORITY_HOST"])
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.settings = settings
    app.add_exception_handler(Problem, problem_response)

    @app.get("/me")
    async def me(token: GraphToken) -> dict:
        """The caller's Graph profile, fetched with the token the vault redeemed for them."""
        async with AsyncGraphClient.for_token(token, base_url=settings["GRAPH_URL"],
                                              **settings["GRAPH_OPTIONS"]) as graph:
            profile = await graph.me()
        return {"id": profile.get("id"), "displayName": profile.get("displayName")}

    return app
