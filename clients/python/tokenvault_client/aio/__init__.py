"""The async client and credential: ``from tokenvault_client.aio import TokenVaultClient``.
Needs azure-core's aiohttp transport (``pip install tokenvault-client[aio]``)."""

from ._client import TokenVaultClient
from ._credential import VaultUserCredential

__all__ = ["TokenVaultClient", "VaultUserCredential"]
