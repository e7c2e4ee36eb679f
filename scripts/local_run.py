"""What ``scripts/run`` does once the venv and Azurite are installed.

Starts Azurite (in ``.azurite/``), writes ``local.settings.json`` from the sample and a local
keyring with a demo tenant when they are missing, starts the local identity provider for a
full try (``--no-demo`` skips it: then the app talks to the real authority host of the
settings), and serves the app with ``func start`` if Core Tools are installed, else with the
dev host. It prints how to call the app and stops everything it started on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tokenvault.dev.azurite import Azurite

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / ".local"
DEMO_TENANT = "d3e0c0de-0000-4000-8000-00000000d3e0"
DEMO_USER = "d3e0c0de-0000-4000-8000-0000000000a1"
DEMO_SCOPE = "https://graph.microsoft.com/User.Read"
AZURITE_PORTS = (10000, 10001, 10002)  # what UseDevelopmentStorage=true means
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-demo", action="store_true",
                        help="do not start the local identity provider")
    parser.add_argument("--port", type=int, help="HTTP port (default: Host.LocalHttpPort or 7071)")
    args = parser.parse_args(argv)

    LOCAL.mkdir(exist_ok=True)
    settings = _local_settings()
    values = settings["Values"]
    port = args.port or int(settings.get("Host", {}).get("LocalHttpPort") or 7071)
    if not _free(port):
        sys.exit(f"scripts/run: port {port} is in use; pass --port N")
    env = {**os.environ, **{k: str(v) for k, v in values.items() if k not in os.environ}}

    stack: list = []
    _stop_on_signals()
    try:
        storage = _azurite(env)
        stack.append(storage)  # before it starts: an interrupt while it starts still stops it
        storage.start()
        print(f"scripts/run: Azurite on {storage.table_endpoint}", flush=True)
        keyring = ROOT / values["TOKENVAULT_LOCAL_KEYRING"]
        _ensure_demo_tenant(keyring)
        demo = None
        if not args.no_demo:
            from scripts.demo_idp import DemoIdentityProvider

            demo = DemoIdentityProvider(LOCAL, client_id=values["TOKENVAULT_CLIENT_ID"],
                                        client_secret=values["TOKENVAULT_CLIENT_SECRET"])
            stack.append(demo)
            demo.start()
            env.update(TOKENVAULT_AUTHORITY_HOST=demo.url, REQUESTS_CA_BUNDLE=str(demo.ca_bundle))
        app = subprocess.Popen(_host_command(port), cwd=ROOT, env=env, start_new_session=True)
        stack.append(app)
        base = f"http://127.0.0.1:{port}/api"
        _wait_for(f"{base}/health", app)
        print(_instructions(base, demo), flush=True)
        return app.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        # Stopping is bounded (each part is killed after a grace period); a second Ctrl-C
        # must not cut it short and leave Azurite or the app running on their own.
        for signum in _STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if stack:
            print("scripts/run: stopping", flush=True)
        for part in reversed(stack):
            _stop(part)


def _local_settings() -> dict:
    path = ROOT / "local.settings.json"
    if not path.exists():
        shutil.copyfile(ROOT / "local.settings.sample.json", path)
        print(f"scripts/run: wrote {path.name} from the sample", flush=True)
    return json.loads(path.read_text())


def _stop_on_signals() -> None:
    """SIGTERM (``kill``, a service manager) and SIGHUP (the terminal went away) stop
    everything as Ctrl-C does. By default they would end this process at once, and Azurite and
    the app, each in a session of its own, would keep running with the ports taken."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's choice is respected
            signal.signal(signum, interrupt)


def _azurite(env: dict) -> Azurite:
    """Azurite (not started yet) on the default ports, or on free ones if they are taken."""
    if all(_free(p) for p in AZURITE_PORTS):
        return Azurite(ROOT / ".azurite", ports=AZURITE_PORTS)
    # Something holds the default ports (another Azurite?): use free ones and say so to the
    # app through the environment, which wins over local.settings.json.
    storage = Azurite(ROOT / ".azurite")
    env["AzureWebJobsStorage"] = storage.connection_string
    return storage


def _ensure_demo_tenant(keyring: Path) -> None:
    from tokenvault.adapters.key_admin import LocalKeyringAdmin

    admin = LocalKeyringAdmin(keyring)
    if DEMO_TENANT not in admin.tenants():
        admin.create(DEMO_TENANT)
        print(f"scripts/run: created a key for demo tenant {DEMO_TENANT} in {keyring}", flush=True)


def _host_command(port: int) -> list[str]:
    if shutil.which("func"):
        return ["func", "start", "--port", str(port)]
    return [sys.executable, "-m", "tokenvault.dev.devhost", "--port", str(port)]


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"scripts/run: the app exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"scripts/run: {url} did not answer within {timeout:.0f} s")


def _instructions(base: str, demo) -> str:
    lines = [
        "",
        f"TokenVault is running at {base}/   (Ctrl-C stops it, Azurite and the demo parts)",
        f"  curl -s {base}/health",
        f"  curl -s {base}/openapi.json",
    ]
    if demo is not None:
        body = json.dumps({"scopes": [DEMO_SCOPE]})
        lines += [
            "",
            f"A local identity provider plays Entra ID at {demo.url}. Store and redeem a token:",
            f"  TOKEN=$(curl -s --cacert {demo.ca_bundle} -X POST "
            f"{demo.url}/_demo/user-token -d tid={DEMO_TENANT} -d oid={DEMO_USER})",
            f"  curl -s -X POST {base}/tokens -H \"Authorization: Bearer $TOKEN\" "
            f"-H 'Content-Type: application/json' -d '{body}'",
            f"  curl -s -X POST {base}/tokens/redeem -H \"Authorization: Bearer $TOKEN\" "
            f"-H 'Content-Type: application/json' -d '{body}'",
            f"  curl -s {base}/tokens/{DEMO_TENANT}/{DEMO_USER} -H \"Authorization: Bearer $TOKEN\"",
            f"  curl -s -X DELETE {base}/tokens/{DEMO_TENANT}/{DEMO_USER} "
            "-H \"Authorization: Bearer $TOKEN\" -o /dev/null -w '%{http_code}\\n'",
        ]
    return "\n".join(lines) + "\n"


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _stop(part) -> None:
    if isinstance(part, subprocess.Popen):
        if part.poll() is None:
            os.killpg(part.pid, signal.SIGTERM)
            try:
                part.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(part.pid, signal.SIGKILL)
    elif isinstance(part, Azurite):
        # Once used, Azurite closes its services (and saves its data) at once on SIGTERM but
        # its process lingers on for good; three seconds is plenty, then it is killed.
        part.stop(grace=3)
    else:
        part.stop()


if __name__ == "__main__":
    raise SystemExit(main())
