"""The background job of the Flask sample, async: for each stored user, as the app, Graph
through an async ``VaultUserCredential`` — all users at once, at most ``concurrency`` at a
time. A job runs apart from the web app (a timer, a queue worker), so it makes its own client.

    python -m fastapi_webapi.background <tenant>/<user> ...
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from graph import GRAPH_SCOPES, AsyncGraphClient
from tokenvault_client import NotFound, ReauthRequired, TokenVaultAuthenticationError
from tokenvault_client.aio import TokenVaultClient, VaultUserCredential

__all__ = ["refresh_profiles", "SIGN_IN_AGAIN"]

SIGN_IN_AGAIN = "sign-in required"


async def refresh_profiles(client: TokenVaultClient, users: Iterable[Tuple[str, str]], *,
                           graph_url: str, graph_options: Optional[Mapping[str, Any]] = None,
                           concurrency: int = 8) -> Dict[str, str]:
    """Each user's Graph display name, or why there is none; keyed ``<tenant>/<user>``."""
    limit = asyncio.Semaphore(concurrency)

    async def one(tenant_id: str, user_id: str) -> Tuple[str, str]:
        key = f"{tenant_id}/{user_id}"
        async with limit:
            credential = VaultUserCredential(client, tenant_id, user_id)
            try:
                async with AsyncGraphClient(credential, GRAPH_SCOPES, base_url=graph_url,
                                            **(graph_options or {})) as graph:
                    return key, (await graph.me()).get("displayName") or ""
            except (NotFound, ReauthRequired):
                return key, SIGN_IN_AGAIN
            except TokenVaultAuthenticationError as error:
                return key, f"refused: {error.code}"

    return dict(await asyncio.gather(*(one(t, u) for t, u in users)))


async def _main(pairs) -> Dict[str, str]:  # pragma: no cover - a manual run
    from azure.identity.aio import DefaultAzureCredential

    from .app import settings_from, vault_client

    async with DefaultAzureCredential() as credential:
        settings = settings_from({"APP_CREDENTIAL": credential})
        async with vault_client(settings) as client:
            return await refresh_profiles(client, pairs, graph_url=settings["GRAPH_URL"])


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(asyncio.run(_main([tuple(a.split("/", 1)) for a in sys.argv[1:]])), indent=2))
