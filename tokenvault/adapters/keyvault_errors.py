"""The one translation of Key Vault errors (azure-core exceptions) into ``VaultError``s, for the
reader (``keyvault_keys``) and the ops writer (``key_admin``) alike.

    Key Vault answers                                   VaultError
    404, or 403 with inner code SecretDisabled          ``missing`` (the caller says what absence means)
    409 (a set on a soft-deleted name)                  KeyDeleted
    no answer, 408, 429, 5xx                            UpstreamUnavailable (its Retry-After, else 5 s)
    401, 403                                            InternalError, the log naming the role needed
    anything else                                       InternalError
"""

from __future__ import annotations

import logging

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from ..errors import InternalError, KeyDeleted, TenantNotOnboarded, UpstreamUnavailable, VaultError
from .upstream import retry_after_of

__all__ = ["translate", "READER_ROLE", "OFFICER_ROLE"]

_log = logging.getLogger(__name__)

#: Built-in roles (https://learn.microsoft.com/azure/key-vault/general/rbac-guide#azure-built-in-roles-for-key-vault-data-plane-operations).
READER_ROLE = "Key Vault Secrets User"
OFFICER_ROLE = "Key Vault Secrets Officer"
_DEFAULT_RETRY_AFTER = 5


def translate(exc: AzureError, *, missing: type[VaultError] = TenantNotOnboarded,
              role: str = READER_ROLE) -> VaultError:
    """The VaultError for an Azure SDK error from a Key Vault call.

    ``missing`` is what an absent secret means to the caller (not onboarded for "latest",
    revoked for a version); a disabled secret counts as absent. ``role`` is named in the log
    line when Key Vault refuses access, which is a deployment mistake, not a caller's.
    """
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return missing()
    if status == 403 and _inner_code(exc) == "SecretDisabled":
        return missing()
    if isinstance(exc, ResourceExistsError) or status == 409:
        return KeyDeleted()
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)) or status in (408, 429) \
            or (status is not None and status >= 500):
        retry_after = retry_after_of(exc, default=_DEFAULT_RETRY_AFTER)
        _log.warning("Key Vault unavailable: code=upstream_unavailable status=%s retry_after=%s "
                     "error=%s", status, retry_after, type(exc).__name__)
        return UpstreamUnavailable(retry_after=retry_after, upstream="key_vault")
    if status in (401, 403) or isinstance(exc, ClientAuthenticationError):
        _log.error("Key Vault refused access: code=internal status=%s; the identity needs the "
                   "'%s' role on the vault", status, role)
        return InternalError()
    _log.error("Key Vault call failed: code=internal status=%s error=%s", status, type(exc).__name__)
    return InternalError()


def _inner_code(exc: AzureError) -> str | None:
    inner = getattr(getattr(exc, "error", None), "innererror", None)
    return inner.get("code") if isinstance(inner, dict) else None
