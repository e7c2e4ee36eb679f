"""The Microsoft clouds TokenVault knows, told apart by their Entra authority host.

Settings default to the public cloud; adapters compare the configured authority host with it,
because some behaviour is Microsoft's public cloud's alone (instance discovery, the v1 token
issuer). What differs per cloud and is derived here rather than set:

- the audience a managed identity's token must carry to serve as a federated credential
  (https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity);
- the storage endpoint suffix, for identity-based storage given by account name
  (https://learn.microsoft.com/azure/storage/common/storage-powershell-independent-clouds).

Authority hosts: https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud
(plus the aliases ARM's ``environment().authentication.loginEndpoint`` answers in each cloud).
An unknown host (a local identity provider, a test fake) gets the public cloud's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Cloud", "PUBLIC_CLOUD", "PUBLIC", "US_GOVERNMENT", "CHINA", "CLOUDS", "cloud_of"]

#: The public cloud's authority host (https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud).
PUBLIC_CLOUD = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class Cloud:
    name: str
    #: every authority host of the cloud, the documented one first.
    authority_hosts: tuple[str, ...]
    token_exchange_audience: str
    storage_suffix: str

    @property
    def token_exchange_scope(self) -> str:
        """What a managed identity asks for, to present its token as a client assertion."""
        return f"{self.token_exchange_audience}/.default"


PUBLIC = Cloud("AzureCloud", (PUBLIC_CLOUD,), "api://AzureADTokenExchange", "core.windows.net")
US_GOVERNMENT = Cloud("AzureUSGovernment",
                      ("https://login.microsoftonline.us", "https://login.usgovcloudapi.net"),
                      "api://AzureADTokenExchangeUSGov", "core.usgovcloudapi.net")
CHINA = Cloud("AzureChinaCloud",
              ("https://login.partner.microsoftonline.cn", "https://login.chinacloudapi.cn"),
              "api://AzureADTokenExchangeChina", "core.chinacloudapi.cn")
CLOUDS = (PUBLIC, US_GOVERNMENT, CHINA)

_BY_HOST = {urlsplit(host).hostname: cloud for cloud in CLOUDS for host in cloud.authority_hosts}


def cloud_of(authority_host: str | None) -> Cloud:
    """The cloud whose Entra answers at ``authority_host``; the public cloud for any other."""
    host = urlsplit(authority_host or PUBLIC_CLOUD).hostname or ""
    return _BY_HOST.get(host.lower(), PUBLIC)
