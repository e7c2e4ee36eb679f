"""A typed client for TokenVault, and an Azure ``TokenCredential`` backed by the vault.

    from tokenvault_client import TokenVaultClient, VaultUserCredential

    client = TokenVaultClient("https://tokenvault.azurewebsites.net", client_id=CLIENT_ID,
                              credential=DefaultAzureCredential())
    record = client.store(["https://graph.microsoft.com/User.Read"], user_token=token)
    access = client.redeem(["https://graph.microsoft.com/User.Read"], user_token=token)
    graph_credential = VaultUserCredential(client, record.tenant_id, record.user_id)

The async twins are in ``tokenvault_client.aio``.
"""

from ._client import TokenVaultClient
from ._credential import VaultUserCredential
from ._errors import (
    ERRORS_BY_CODE,
    BadRequest,
    InsufficientPermissions,
    InternalError,
    InvalidToken,
    NotFound,
    OfflineAccessMissing,
    PayloadTooLarge,
    ReauthRequired,
    ScopeNotStored,
    TenantNotOnboarded,
    TenantRevoked,
    TokenVaultAuthenticationError,
    TokenVaultError,
    UpstreamUnavailable,
)
from ._models import StoredRecord
from ._version import VERSION

__version__ = VERSION

__all__ = [
    "TokenVaultClient",
    "VaultUserCredential",
    "StoredRecord",
    "TokenVaultError",
    "TokenVaultAuthenticationError",
    "InvalidToken",
    "InsufficientPermissions",
    "BadRequest",
    "PayloadTooLarge",
    "NotFound",
    "ReauthRequired",
    "OfflineAccessMissing",
    "TenantNotOnboarded",
    "TenantRevoked",
    "ScopeNotStored",
    "UpstreamUnavailable",
    "InternalError",
    "ERRORS_BY_CODE",
]
