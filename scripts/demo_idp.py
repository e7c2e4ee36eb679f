"""LOCAL DEMO ONLY: an identity provider that plays Entra ID for ``scripts/run``.

It is the HTTPS fake of Entra ID the test suite uses (``tokenvault.dev.entra_fake.FakeEntra``:
OpenID discovery, JWKS, the token endpoint with OBO and refresh, run against by the unmodified
msal and PyJWT; development code, so the run path needs nothing from tests/) plus one
endpoint that exists nowhere else, so a developer can try the API with curl and no Azure
tenant:

    POST /_demo/user-token   form fields tid, oid   →  text/plain: a user access token for the
                                                       app (audience TOKENVAULT_CLIENT_ID)

Anyone who can reach it can mint tokens for any user: it listens on 127.0.0.1 only, and the
app trusts it only because ``scripts/run`` points ``TOKENVAULT_AUTHORITY_HOST`` and
``REQUESTS_CA_BUNDLE`` at it. Never point a deployed app at it.

Its TLS certificate comes from a throwaway CA written under ``<folder>/tls`` (a new one per
start), so the ``--cacert`` path that ``scripts/run`` prints stays valid while it runs.
"""

from __future__ import annotations

from pathlib import Path

from tokenvault.dev.entra_fake import FakeEntra
from tokenvault.dev.tls import TestCA
from tokenvault.model import is_valid_id

__all__ = ["DemoIdentityProvider", "MINT_PATH"]

MINT_PATH = "/_demo/user-token"


class _DemoEntra(FakeEntra):
    """The fake, with the mint endpoint on the same origin as the authority."""

    def answer(self, method: str, path: str, form: dict[str, str],
               authorization: str | None) -> tuple[int, object, dict]:
        if path != MINT_PATH:
            return super().answer(method, path, form, authorization)
        if method != "POST":
            return 405, "POST tid=<tenant id>&oid=<user object id>\n", {"Allow": "POST"}
        tenant, user = form.get("tid", ""), form.get("oid", "")
        if not (is_valid_id(tenant) and is_valid_id(user)):
            return 400, "tid and oid must be lower-case GUIDs\n", {}
        return 200, self.user_token(tenant, user), {}


class DemoIdentityProvider:
    """``DemoIdentityProvider(Path(".local"), client_id=..., client_secret=...).start()``"""

    def __init__(self, folder: Path, *, client_id: str, client_secret: str) -> None:
        self.ca = TestCA(Path(folder) / "tls")
        self.ca_bundle = self.ca.bundle
        self.entra = _DemoEntra(self.ca, client_id=client_id, client_secret=client_secret)
        self.url = self.entra.authority_host

    def mint_user_token(self, tenant_id: str, user_id: str) -> str:
        """A delegated access token for the app, as Entra would issue it after a sign-in."""
        return self.entra.user_token(tenant_id, user_id)

    def start(self) -> "DemoIdentityProvider":
        self.entra.start()
        return self

    def stop(self) -> None:
        self.entra.stop()

    def __enter__(self) -> "DemoIdentityProvider":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
