"""The client credential TokenVault presents to Entra ID, as msal takes it, built from the
settings: the client secret, a certificate file, or the user-assigned managed identity as a
federated credential.

Split from entra.py because building a credential happens once, from the settings, and needs
other libraries (``cryptography`` for the PEM file, ``azure.identity`` for the managed
identity) than the requests do; entra.py's ``EntraIdentityProvider.from_settings`` calls
``_msal_credential`` and knows nothing of the kinds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from ..errors import SettingError
from ..sensitive import Sensitive
from ..settings import CredentialKind, Settings


def _msal_credential(settings: Settings) -> Sensitive[str] | dict:
    """The credential the settings name, as ``EntraIdentityProvider`` takes it.

    :raises SettingError: the certificate file is not a PEM key and certificate.
    """
    # Settings.from_environ sets the secret or the certificate path as the kind says.
    if settings.credential_kind is CredentialKind.SECRET:
        assert settings.client_secret is not None
        return settings.client_secret
    if settings.credential_kind is CredentialKind.CERTIFICATE:
        assert settings.client_certificate_path is not None
        return _certificate_credential(settings.client_certificate_path)
    return {"client_assertion": _managed_identity_assertion(
        settings.managed_identity_client_id, settings.cloud.token_exchange_scope)}


def _certificate_credential(path: Path) -> dict:
    """msal's certificate credential from one PEM file holding the private key and the
    certificate (SHA-256 thumbprint, PS256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    name = "TOKENVAULT_CLIENT_CERTIFICATE_PATH"
    try:
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        certificate = x509.load_pem_x509_certificates(data)[0]
    except (OSError, ValueError, TypeError, IndexError):
        raise SettingError(name, "must be a PEM file with an unencrypted private key and its "
                                 "certificate") from None
    public = certificate.public_key()
    if not isinstance(key, rsa.RSAPrivateKey) or not isinstance(public, rsa.RSAPublicKey):
        # msal signs client assertions with RS256/PS256: an RSA key is the only kind it can use.
        raise SettingError(name, "the private key and certificate must be RSA")
    if public.public_numbers() != key.public_key().public_numbers():
        raise SettingError(name, "the certificate does not belong to the private key")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"private_key": key_pem,
            "public_certificate": certificate.public_bytes(serialization.Encoding.PEM).decode()}


def _managed_identity_assertion(client_id: str | None, scope: str) -> Callable[[], str]:
    """The client assertion callable: a token of the user-assigned managed identity for the
    cloud's token exchange audience (``api://AzureADTokenExchange/.default`` in the public
    cloud; tokenvault/clouds.py). azure.identity caches it until shortly before expiry."""
    lock = threading.Lock()
    credential = None

    def assertion() -> str:
        nonlocal credential
        with lock:
            if credential is None:
                # Imported on first use: azure.identity is heavy and only Azure needs it.
                from azure.identity import ManagedIdentityCredential

                credential = ManagedIdentityCredential(client_id=client_id)
        return credential.get_token(scope).token

    return assertion
