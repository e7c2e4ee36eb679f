"""The Microsoft identity platform's public cloud, named once.

Settings default to it; adapters compare the configured authority host with it, because some
behaviour is Microsoft's public cloud's alone (instance discovery, the v1 token issuer).
"""

from __future__ import annotations

__all__ = ["PUBLIC_CLOUD"]

#: The public cloud's authority host (https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud).
PUBLIC_CLOUD = "https://login.microsoftonline.com"
