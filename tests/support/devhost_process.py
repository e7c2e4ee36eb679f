"""The dev host as a real process: ``python -m tokenvault.dev.devhost`` in an app folder of its own.

``app_folder`` makes a folder that looks like a function app (``function_app.py`` and
``host.json`` linked from the repository, a ``local.settings.json`` holding the given
``Values``), so the dev host is started exactly as a developer starts it: it reads its
settings from that file. The process gets the caller's environment minus every setting the
app reads, so nothing of the shell (or of a developer's own ``local.settings.json``) leaks in.

``DevHostProcess`` starts it on a free port, waits until ``/api/health`` answers, and stops
it (SIGTERM, then SIGKILL of its process group); its output goes to a file in the folder,
which ``output()`` returns so a test can check it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from tokenvault.dev.azurite import free_port

__all__ = ["DevHostProcess", "app_folder", "local_values", "local_devhost", "ROOT"]

ROOT = Path(__file__).resolve().parents[2]
# Settings the app (or the libraries under it) read from the environment: never inherited.
_APP_SETTINGS = ("TOKENVAULT_", "AzureWebJobs", "AZURE_", "WEBSITE_", "FUNCTIONS_",
                 "APPLICATIONINSIGHTS_", "OTEL_", "PYTHON_ENABLE_OPENTELEMETRY",
                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "MSAL_")


def app_folder(folder: Path, values: dict[str, str]) -> Path:
    """A function app folder under ``folder`` whose ``local.settings.json`` holds ``values``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("function_app.py", "host.json"):
        link = folder / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    settings = {"IsEncrypted": False,
                "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", **values}}
    (folder / "local.settings.json").write_text(json.dumps(settings, indent=2))
    return folder


def local_values(*, storage: str, authority_host: str, ca_bundle: Path, client_id: str,
                 client_secret: str, keyring: Path, table: str, redeem_callers: str = "") -> dict:
    """``Values`` for a local run against Azurite, a local identity provider and a keyring
    file. Every setting of ``local.settings.sample.json`` is given, blank when unused."""
    return {
        "AzureWebJobsStorage": storage,
        "TOKENVAULT_CLIENT_ID": client_id,
        "TOKENVAULT_CLIENT_SECRET": client_secret,
        "TOKENVAULT_CLIENT_CERTIFICATE_PATH": "",
        "TOKENVAULT_CLIENT_ASSERTION": "",
        "TOKENVAULT_AUTHORITY_HOST": authority_host,
        "TOKENVAULT_ALLOWED_TENANTS": "",
        "TOKENVAULT_REDEEM_CALLERS": redeem_callers,
        "TOKENVAULT_KEY_VAULT_URL": "",
        "TOKENVAULT_LOCAL_KEYRING": str(keyring),
        "TOKENVAULT_KEY_CACHE_TTL": "300",
        "TOKENVAULT_STORAGE": "",
        "TOKENVAULT_TABLE": table,
        "TOKENVAULT_REFRESH_SCHEDULE": "0 0 */6 * * *",
        "TOKENVAULT_REFRESH_AFTER": "P7D",
        # spans and metrics on the dev host's console; no Application Insights locally
        "TOKENVAULT_TELEMETRY": "console",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "",
        # msal and the JWKS fetches use requests, which trusts this CA bundle.
        "REQUESTS_CA_BUNDLE": str(ca_bundle),
    }


def local_devhost(folder: Path, *, storage: str, authority_host: str, ca_bundle: Path,
                  client_id: str, client_secret: str, redeem_callers: str = "") -> "DevHostProcess":
    """A dev host (not started) over a keyring file of its own and a table of its own."""
    keyring = folder / "keyring.json"
    values = local_values(storage=storage, authority_host=authority_host, ca_bundle=ca_bundle,
                          client_id=client_id, client_secret=client_secret, keyring=keyring,
                          table="t" + uuid.uuid4().hex[:20], redeem_callers=redeem_callers)
    return DevHostProcess(app_folder(folder / "app", values), keyring=keyring)


def onboarded_devhost(folder: Path, tenant_id: str, *, azurite, entra, ca, client_id: str,
                      client_secret: str, redeem_callers: str = "") -> "DevHostProcess":
    """A dev host (not started) on the session's Azurite and Entra fake, with a key for
    ``tenant_id`` in its keyring."""
    from tokenvault.adapters.key_admin import LocalKeyringAdmin

    host = local_devhost(folder, storage=azurite.connection_string,
                         authority_host=entra.authority_host, ca_bundle=ca.bundle,
                         client_id=client_id, client_secret=client_secret,
                         redeem_callers=redeem_callers)
    LocalKeyringAdmin(host.keyring).create(tenant_id)
    return host


class DevHostProcess:
    """``with DevHostProcess(folder) as host: requests.get(host.api + "/health")``"""

    def __init__(self, folder: Path, *, port: int | None = None,
                 environ: dict[str, str] | None = None, keyring: Path | None = None) -> None:
        self.folder = Path(folder)
        #: the local keyring file the app reads its tenant keys from, when the caller made one.
        self.keyring = keyring
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api"
        self._environ = environ or {}
        self._log_path = self.folder / "devhost.log"
        self._process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 60) -> "DevHostProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith(_APP_SETTINGS)}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **self._environ)
        log = open(self._log_path, "wb")  # noqa: SIM115 - the child holds it; closed below
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tokenvault.dev.devhost", "--port", str(self.port),
                 "--folder", str(self.folder)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the dev host exited with {self._process.returncode}:\n"
                                   f"{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.api}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dev host did not answer /api/health in {timeout:.0f} s:\n"
                                   f"{self.output()[-3000:]}")
            time.sleep(0.1)

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self, *, grace: float = 10) -> int | None:
        """Stop it as Ctrl-C or a service manager would (SIGTERM); kill it after ``grace``."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                return process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)

    def output(self) -> str:
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def __enter__(self) -> "DevHostProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
