"""What the ops commands work on: built from the environment on first use, through the same
builders as the app (``bootstrap``). Tests pass their own adapters instead."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..adapters.key_admin import KeyAdmin
    from ..adapters.table_records import TableRecords
    from ..bootstrap import App
    from ..settings import BackendSettings

__all__ = ["Context"]


class Context:
    """The key admin, the record table and (for ``sweep``) the whole app, each made once.

    ``keys`` and ``records`` commands need only the backend settings: they run without the
    app's client credential, as a person or a pipeline signed in with ``az login`` or OIDC
    (``DefaultAzureCredential``).
    """

    def __init__(self, *, key_admin: "KeyAdmin | None" = None,
                 records: "TableRecords | None" = None,
                 app: Callable[[], "App"] | None = None,
                 out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self._key_admin, self._records, self._app = key_admin, records, app
        self._backend: BackendSettings | None = None
        self._credentials: Any = None
        self.out, self.err = out or sys.stdout, err or sys.stderr

    @property
    def key_admin(self) -> "KeyAdmin":
        if self._key_admin is None:
            from ..bootstrap import build_key_admin

            self._key_admin = build_key_admin(self._backend_settings(), self._azure())
        return self._key_admin

    @property
    def records(self) -> "TableRecords":
        if self._records is None:
            from ..bootstrap import build_records

            self._records = build_records(self._backend_settings(), self._azure())
        return self._records

    def app(self) -> "App":
        if self._app is None:
            from ..bootstrap import compose
            from ..settings import Settings

            built = compose(Settings.from_environ())
            self._app = lambda: built
        return self._app()

    def _backend_settings(self) -> "BackendSettings":
        if self._backend is None:
            from ..settings import BackendSettings

            self._backend = BackendSettings.from_environ()
        return self._backend

    def _azure(self) -> Any:
        if self._credentials is None:
            from ..bootstrap import Credentials

            self._credentials = Credentials(in_azure=self._backend_settings().in_azure)
        return self._credentials
