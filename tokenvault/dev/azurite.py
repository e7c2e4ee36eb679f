"""Azurite, the storage emulator, started and stopped by whoever needs it.

Used by the test fixtures, the benchmarks and ``scripts/run``. It runs from the repository's
``node_modules`` (``npm ci`` installs it; ``scripts/test`` and ``scripts/run`` do that), in a
folder of its own, on free ports, in its own process group so that stopping it stops all of
it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["Azurite", "ACCOUNT", "ACCOUNT_KEY", "free_port"]

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key: public, documented, useless outside the emulator.
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Azurite:
    """``with Azurite(folder) as storage: storage.connection_string ...``"""

    def __init__(self, folder: Path, *, ports: tuple[int, int, int] | None = None) -> None:
        self.folder = Path(folder)
        self.blob_port, self.queue_port, self.table_port = ports or (free_port(), free_port(),
                                                                     free_port())
        self._process: subprocess.Popen | None = None

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.queue_port}/{ACCOUNT}"

    @property
    def table_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.table_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
                f"TableEndpoint={self.table_endpoint};")

    def start(self, *, timeout: float = 60) -> "Azurite":
        binary = ROOT / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            raise RuntimeError(f"Azurite is not installed ({binary} is missing): run scripts/test "
                               "or scripts/run, which run `npm ci`")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = open(self.folder / "azurite.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [str(binary), "--silent", "--skipApiVersionCheck", "--loose",
             "--location", str(self.folder), "--blobPort", str(self.blob_port),
             "--queuePort", str(self.queue_port), "--tablePort", str(self.table_port)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        pending = {self.blob_port, self.queue_port, self.table_port}
        while pending:
            if self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"Azurite exited early:\n{self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Azurite did not open its ports in {timeout:.0f} s:\n{self._tail()}")
            for port in list(pending):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            time.sleep(0.05)
        return self

    def stop(self, *, grace: float = 10) -> None:
        """Stop Azurite, killing it if it has not exited after ``grace`` seconds."""
        if self._process is None:
            return
        try:
            # Azurite waits for clients' idle keep-alive connections to close before it exits
            # (10 s and more); tests, which throw its data away, give it a short grace.
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        finally:
            self._process = None
            self._log.close()

    def _tail(self) -> str:
        log = self.folder / "azurite.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no output)"

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
