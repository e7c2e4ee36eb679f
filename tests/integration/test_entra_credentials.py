"""How EntraIdentityProvider authenticates as the app registration, built from settings: a
client secret, a certificate (msal signs a PS256 client assertion that the fake verifies
against the registered certificate), or a user-assigned managed identity as federated
credential (azure.identity fetches its token from an App Service style endpoint)."""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from tokenvault.adapters.entra import EntraIdentityProvider
from tokenvault.clouds import CHINA, PUBLIC, US_GOVERNMENT
from tokenvault.dev.entra_fake import FEDERATION_AUDIENCE
from tokenvault.errors import InternalError, SettingError
from tokenvault.sensitive import Sensitive
from tokenvault.settings import BackendSettings, CredentialKind, Settings

GRAPH = ("https://graph.microsoft.com/User.Read",)


def app_settings(**fields) -> Settings:
    """Settings naming a client credential; the backend is never used here."""
    backend = BackendSettings.from_environ({"TOKENVAULT_LOCAL_KEYRING": "unused.json",
                                            "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    return Settings(backend=backend, **fields)


def _claims(token: Sensitive[str]) -> dict:
    return jwt.decode(token.reveal(), options={"verify_signature": False})


def test_a_client_secret_from_settings_authenticates(entra, entra_session, client_id,
                                                     client_secret, tenant, oid):
    settings = app_settings(client_id=client_id, credential_kind=CredentialKind.SECRET,
                        client_secret=Sensitive(client_secret), authority_host=entra.authority_host)
    provider = EntraIdentityProvider.from_settings(settings, session=entra_session)

    grant = provider.refresh(tenant, Sensitive(entra.issue_refresh_token(tenant, oid)), GRAPH)

    assert _claims(grant.access_token)["azp"] == client_id


def test_a_wrong_client_secret_is_an_internal_error(entra, entra_session, client_id, tenant, oid):
    provider = EntraIdentityProvider(client_id=client_id, client_credential="not-the-secret",
                                     authority_host=entra.authority_host, session=entra_session)

    with pytest.raises(InternalError) as failure:
        provider.refresh(tenant, Sensitive(entra.issue_refresh_token(tenant, oid)), GRAPH)

    assert str(failure.value) == InternalError.default_message



# --- client credentials from settings ---------------------------------------------------------


def _certificate_pem(key, *, signed_by=None) -> tuple[x509.Certificate, bytes]:
    """A self-signed certificate of ``key`` (or one of ``key`` signed by ``signed_by``'s key,
    whose public key is then ``signed_by``'s) and the PEM file of ``key`` plus it."""
    signer = signed_by or key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenvault-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(signer.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .sign(signer, None if isinstance(signer, ed25519.Ed25519PrivateKey)
                         else hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return certificate, pem + certificate.public_bytes(serialization.Encoding.PEM)


def _certificate_settings(entra, client_id: str, path) -> Settings:
    return app_settings(client_id=client_id, credential_kind=CredentialKind.CERTIFICATE,
                    client_certificate_path=path, authority_host=entra.authority_host)


def test_a_certificate_credential_signs_the_client_assertion(entra, entra_session, tmp_path,
                                                             tenant, oid):
    app_id = str(uuid.uuid4())
    certificate, pem = _certificate_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    entra.register_client(app_id, certificate=certificate)
    (tmp_path / "client.pem").write_bytes(pem)
    provider = EntraIdentityProvider.from_settings(
        _certificate_settings(entra, app_id, tmp_path / "client.pem"), session=entra_session)

    grant = provider.on_behalf_of(tenant, Sensitive(entra.user_token(tenant, oid, aud=app_id)), GRAPH)

    assert _claims(grant.access_token)["azp"] == app_id


def test_a_certificate_entra_does_not_know_is_an_internal_error(entra, entra_session, tmp_path,
                                                                tenant, oid):
    app_id = str(uuid.uuid4())
    registered, _ = _certificate_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    _, other_pem = _certificate_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    entra.register_client(app_id, certificate=registered)
    (tmp_path / "client.pem").write_bytes(other_pem)
    provider = EntraIdentityProvider.from_settings(
        _certificate_settings(entra, app_id, tmp_path / "client.pem"), session=entra_session)

    with pytest.raises(InternalError):
        provider.refresh(tenant, Sensitive(entra.issue_refresh_token(tenant, oid, client_id=app_id)), GRAPH)


def test_a_certificate_file_without_a_key_stops_start_up_naming_the_setting(entra, tmp_path):
    certificate, _ = _certificate_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    (tmp_path / "cert-only.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    with pytest.raises(SettingError) as failure:
        EntraIdentityProvider.from_settings(
            _certificate_settings(entra, str(uuid.uuid4()), tmp_path / "cert-only.pem"))

    assert failure.value.name == "TOKENVAULT_CLIENT_CERTIFICATE_PATH"


@pytest.mark.parametrize("kind", ["Ed25519", "EC P-256", "RSA key, another key's certificate"])
def test_a_certificate_msal_cannot_use_stops_start_up_naming_the_setting(entra, tmp_path, kind):
    """msal signs client assertions with RSA only: anything else is a setting error at start,
    one line naming the setting, not an AttributeError deep in the first request."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, pem = {
        "Ed25519": lambda: _certificate_pem(ed25519.Ed25519PrivateKey.generate()),
        "EC P-256": lambda: _certificate_pem(ec.generate_private_key(ec.SECP256R1())),
        "RSA key, another key's certificate": lambda: _certificate_pem(
            rsa_key, signed_by=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }[kind]()
    (tmp_path / "client.pem").write_bytes(pem)

    with pytest.raises(SettingError) as failure:
        EntraIdentityProvider.from_settings(
            _certificate_settings(entra, str(uuid.uuid4()), tmp_path / "client.pem"))

    assert failure.value.name == "TOKENVAULT_CLIENT_CERTIFICATE_PATH"
    assert str(failure.value).startswith("setting TOKENVAULT_CLIENT_CERTIFICATE_PATH: ")


class _ManagedIdentityEndpoint:
    """The App Service managed-identity endpoint (plain HTTP on localhost, as in Azure),
    answering with a token the Entra fake minted for the identity."""

    def __init__(self, token: str, header: str) -> None:
        endpoint = self
        self.asked: list[tuple[str | None, str | None]] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                endpoint.asked.append((query.get("resource"), query.get("client_id")))
                ok = self.headers.get("X-IDENTITY-HEADER") == header
                body = json.dumps({"access_token": token, "token_type": "Bearer",
                                   "expires_on": str(_claims(Sensitive(token))["exp"]),
                                   "resource": query.get("resource")} if ok else
                                  {"statusCode": 401, "message": "bad header"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "_ManagedIdentityEndpoint":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.mark.parametrize("cloud", [PUBLIC, US_GOVERNMENT, CHINA], ids=lambda c: c.name)
def test_a_managed_identity_is_the_federated_credential(entra, entra_session, monkeypatch,
                                                        tenant, oid, cloud):
    app_id, identity, home = (str(uuid.uuid4()) for _ in range(3))
    identity_token = entra.app_token(home, identity, aud=FEDERATION_AUDIENCE)
    federated = _claims(Sensitive(identity_token))
    entra.register_client(app_id, federated=(federated["iss"], federated["sub"]))
    settings = app_settings(client_id=app_id, credential_kind=CredentialKind.MANAGED_IDENTITY,
                            managed_identity_client_id=identity,
                            authority_host=entra.authority_host).with_backend(cloud=cloud)

    with _ManagedIdentityEndpoint(identity_token, header="identity-header-value") as endpoint:
        monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
        monkeypatch.setenv("IDENTITY_HEADER", "identity-header-value")
        provider = EntraIdentityProvider.from_settings(settings, session=entra_session)
        grant = provider.on_behalf_of(tenant, Sensitive(entra.user_token(tenant, oid, aud=app_id)),
                                      GRAPH)
        provider.refresh(tenant, grant.refresh_token, GRAPH)

    assert _claims(grant.access_token)["azp"] == app_id
    # azure.identity asked once, for the cloud's federation audience, as the user-assigned
    # identity (the fake Entra stands in for any cloud's here).
    assert endpoint.asked == [(cloud.token_exchange_audience, identity)]


def test_a_managed_identity_entra_does_not_trust_is_an_internal_error(entra, entra_session,
                                                                      monkeypatch, tenant, oid):
    app_id, identity = str(uuid.uuid4()), str(uuid.uuid4())
    entra.register_client(app_id, federated=(entra.issuer(tenant), str(uuid.uuid4())))
    settings = app_settings(client_id=app_id, credential_kind=CredentialKind.MANAGED_IDENTITY,
                        managed_identity_client_id=identity, authority_host=entra.authority_host)

    with _ManagedIdentityEndpoint(entra.app_token(tenant, identity, aud=FEDERATION_AUDIENCE),
                                  header="h") as endpoint:
        monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
        monkeypatch.setenv("IDENTITY_HEADER", "h")
        provider = EntraIdentityProvider.from_settings(settings, session=entra_session)
        with pytest.raises(InternalError):
            provider.on_behalf_of(tenant, Sensitive(entra.user_token(tenant, oid, aud=app_id)),
                                  GRAPH)
