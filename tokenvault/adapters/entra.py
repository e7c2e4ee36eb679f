"""The identity provider: Entra ID through MSAL, acting as TokenVault's confidential client.

One ``ConfidentialClientApplication`` per tenant (OBO must be asked of the user's own tenant),
created on first use and kept in a small LRU map, all sharing one HTTP session. MSAL's token
cache is replaced by one that stores nothing: a shared app would otherwise keep every user's
refresh, access and ID tokens in memory for the life of the process, and the vault's table
is the only place a refresh token may live.

Every outcome of an MSAL call is mapped in three steps, the first two here. ``_call`` runs the
request and maps what it raises::

    the request raised                                       raised
    429 or 5xx (with its Retry-After), timeout, connection
    error, msal's MsalServiceError                           UpstreamUnavailable(retry_after)
    any other exception (a VaultError passes through as it
    is), or no answer dict at all                            InternalError

``_grant`` checks a success: an OBO grant without refresh_token is OfflineAccessMissing, one
without an access token or expiry InternalError. Third, what an error answer means is decided
from the plain dict alone by ``_refusal``, in entra_answers.py with its table. The client
credential is built from the settings in entra_credentials.py.

Only the error, its AADSTS numbers, suberror and correlation id are logged: Entra's
``error_description`` is not ours to repeat, and no token ever is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import msal
import requests
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from ..clouds import PUBLIC_CLOUD
from ..errors import InternalError, OfflineAccessMissing, UpstreamUnavailable, VaultError
from ..model import TokenGrant
from ..ports import IdentityProvider
from ..scopes import is_reserved, without_reserved
from ..sensitive import Sensitive
from ..settings import Settings
from ..singleflight import SingleFlight
from .entra_answers import _IDP, _codes, _refusal
from .entra_credentials import _msal_credential
from .upstream import retry_after_of

__all__ = ["EntraIdentityProvider"]

log = logging.getLogger("tokenvault.adapters.entra")


class _Unavailable(Exception):
    """429 or 5xx from Entra, caught below msal because msal drops the headers (Retry-After)."""

    def __init__(self, status: int, retry_after: int) -> None:
        super().__init__(status)
        self.status, self.retry_after = status, retry_after


class _Transport:
    """msal's ``http_client``: the shared session with our timeout.

    msal applies ``timeout=`` only to a session it builds itself, and turns 429/5xx into a
    dict or an exception without the response headers; this raises them with Retry-After.
    """

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self._session, self._timeout = session, timeout

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return self._checked(self._session.post(url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return self._checked(self._session.get(url, **kwargs))

    def close(self) -> None:
        """The session is shared; whoever made it closes it."""

    @staticmethod
    def _checked(response: requests.Response) -> requests.Response:
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = retry_after_of(response, default=5)
            response.close()
            raise _Unavailable(response.status_code, retry_after)
        return response


class _NoTokenCache(msal.TokenCache):
    """msal's cache interface, holding nothing: each answer still comes back whole in the
    result dict, but memory and time per call stay flat however many users pass through."""

    def add(self, event: dict, now: Any = None) -> None:
        pass

    def modify(self, credential_type: str, old_entry: dict, new_key_value_pairs: Any = None) -> None:
        pass


class EntraIdentityProvider(IdentityProvider):
    """OBO and refresh at Entra ID as the app registration ``client_id``.

    ``client_credential`` is a client secret (``str`` or ``Sensitive``) or an msal credential
    dict (certificate: ``private_key`` + ``public_certificate``; federated:
    ``client_assertion`` callable). ``session`` is shared by every tenant's client.
    """

    def __init__(self, *, client_id: str, client_credential: str | Sensitive[str] | dict,
                 authority_host: str, session: requests.Session | None = None,
                 timeout: float = 10, max_tenants: int = 256,
                 clock: Callable[[], float] = time.time) -> None:
        self._client_id = client_id
        self._credential = Sensitive(client_credential) if isinstance(client_credential, str) \
            else client_credential
        self._host = authority_host.rstrip("/")
        self._transport = _Transport(session or requests.Session(), timeout)
        self._max_tenants = max_tenants
        self._clock = clock
        self._apps: OrderedDict[str, msal.ConfidentialClientApplication] = OrderedDict()
        self._lock = threading.Lock()
        self._building: SingleFlight[msal.ConfidentialClientApplication] = SingleFlight()

    @classmethod
    def from_settings(cls, settings: Settings,
                      session: requests.Session | None = None) -> "EntraIdentityProvider":
        """Build the client credential the settings name: secret, certificate file, or the
        user-assigned managed identity as federated credential.

        :raises SettingError: the certificate file is not a PEM key and certificate.
        """
        return cls(client_id=settings.client_id, client_credential=_msal_credential(settings),
                   authority_host=settings.authority_host, session=session)

    def on_behalf_of(self, tenant_id: str, assertion: Sensitive[str],
                     scopes: Sequence[str]) -> TokenGrant:
        """OBO for the user's token, at the user's tenant; the grant must hold a refresh token.

        No Azure RBAC role: the app registration needs the downstream API's delegated
        permissions, consented in the user's tenant.
        """
        wanted = _requested(scopes)
        return self._outcome("obo", tenant_id, wanted, lambda: self._app(tenant_id)
                             .acquire_token_on_behalf_of(assertion.reveal(), list(wanted)))

    def refresh(self, tenant_id: str, refresh_token: Sensitive[str],
                scopes: Sequence[str]) -> TokenGrant:
        """Redeem a refresh token at its tenant. No Azure RBAC role (as for OBO)."""
        wanted = _requested(scopes)
        return self._outcome("refresh", tenant_id, wanted, lambda: self._app(tenant_id)
                             .acquire_token_by_refresh_token(refresh_token.reveal(), list(wanted)))

    def token_cache_size(self) -> int:
        """How many entries the msal clients' token caches hold (zero, by design)."""
        with self._lock:
            apps = list(self._apps.values())
        kinds = [v for k, v in vars(msal.TokenCache.CredentialType).items() if not k.startswith("_")]
        return sum(len(list(app.token_cache.search(kind))) for app in apps for kind in kinds)

    # --- msal clients ----------------------------------------------------------------------

    def _app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        with self._lock:
            app = self._apps.get(tenant_id)
            if app is not None:
                self._apps.move_to_end(tenant_id)
                return app
        app = self._building.do(tenant_id, lambda: self._build(tenant_id))
        with self._lock:
            app = self._apps.setdefault(tenant_id, app)
            while len(self._apps) > self._max_tenants:
                self._apps.popitem(last=False)
        return app

    def _build(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        # Building fetches the tenant's OpenID configuration: once per tenant and process.
        options: dict[str, Any] = {}
        if self._host != PUBLIC_CLOUD:
            # Instance discovery asks login.microsoftonline.com about the host; another
            # host (a sovereign cloud, the local fake) is trusted as configured.
            options["instance_discovery"] = False
        credential = self._credential.reveal() if isinstance(self._credential, Sensitive) \
            else self._credential
        return msal.ConfidentialClientApplication(
            self._client_id, client_credential=credential,
            authority=f"{self._host}/{tenant_id}", http_client=self._transport,
            token_cache=_NoTokenCache(), **options)

    # --- the one mapping ---------------------------------------------------------------------

    def _outcome(self, flow: str, tenant_id: str, scopes: tuple[str, ...],
                 request: Callable[[], dict]) -> TokenGrant:
        """Run one msal request; return its grant or raise the VaultError its outcome means."""
        result = _call(flow, tenant_id, request)
        if "error" not in result and "access_token" in result:
            return self._grant(flow, tenant_id, scopes, result)
        log.info("%s at tenant %s refused: %s %s suberror=%s correlation_id=%s", flow, tenant_id,
                 result.get("error"), sorted(_codes(result)), result.get("suberror"),
                 result.get("correlation_id"))
        raise _refusal(flow, result)

    def _grant(self, flow: str, tenant_id: str, scopes: tuple[str, ...], result: dict) -> TokenGrant:
        access, refresh = result.get("access_token"), result.get("refresh_token")
        if flow == "obo" and not refresh:
            log.info("obo at tenant %s: no refresh token granted", tenant_id)
            raise OfflineAccessMissing()
        try:
            expires_on = int(result["expires_on"]) if "expires_on" in result \
                else int(self._clock()) + int(result["expires_in"])
        except (KeyError, TypeError, ValueError):
            expires_on = None
        if not isinstance(access, str) or expires_on is None \
                or (refresh is not None and not isinstance(refresh, str)):
            log.error("%s at tenant %s: malformed answer", flow, tenant_id)
            raise InternalError()
        granted = tuple(s for s in str(result.get("scope") or "").split()
                        if not is_reserved(s))
        return TokenGrant(access_token=Sensitive(access),
                          refresh_token=Sensitive(refresh) if refresh else None,
                          expires_on=expires_on, scopes=granted or scopes,
                          token_type=str(result.get("token_type") or "Bearer"))


def _call(flow: str, tenant_id: str, request: Callable[[], dict]) -> dict:
    """Run one msal request and return its answer, or raise what its exception means."""
    try:
        result = request()
    except _Unavailable as exc:
        log.warning("%s at tenant %s: HTTP %d, retry after %ds", flow, tenant_id, exc.status,
                    exc.retry_after)
        raise UpstreamUnavailable(retry_after=exc.retry_after, upstream=_IDP) from exc
    except (requests.RequestException, msal.exceptions.MsalServiceError,
            ServiceRequestError, ServiceResponseError) as exc:
        log.warning("%s at tenant %s: %s", flow, tenant_id, type(exc).__name__)
        raise UpstreamUnavailable(upstream=_IDP) from exc
    except VaultError:
        raise
    except Exception as exc:
        log.error("%s at tenant %s failed: %s", flow, tenant_id, type(exc).__name__)
        raise InternalError() from exc
    if not isinstance(result, dict):
        log.error("%s at tenant %s: no answer", flow, tenant_id)
        raise InternalError()
    return result


def _requested(scopes: Sequence[str]) -> tuple[str, ...]:
    return without_reserved(scopes)
