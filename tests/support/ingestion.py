"""A local stand-in for Application Insights' ingestion endpoint, for the Azure Monitor exporter.

The exporter POSTs batches of telemetry items ("envelopes": JSON, one list per request, maybe
gzip-compressed) to ``{IngestionEndpoint}/v2.1/track``; each envelope has a ``name``, ``tags``
(``ai.operation.id`` is the trace id) and ``data.baseData`` — a ``MessageData`` (a trace: a log
record), ``RemoteDependencyData``/``RequestData`` (a span), ``MetricData`` or
``ExceptionData`` — whose ``properties`` become the ``customDimensions`` of the row in Log
Analytics. This server keeps every envelope and answers as the service does
(``itemsReceived``/``itemsAccepted``). Live Metrics' ping and post are answered "not
subscribed"; anything else 200 with an empty object.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Ingestion"]


class Ingestion:
    def __init__(self) -> None:
        self.envelopes: list[dict] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        ingestion = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with ingestion._lock:
                    ingestion.paths.append(self.path.split("?")[0])
                if self.path.startswith("/v2.1/track"):
                    items = json.loads(body)
                    with ingestion._lock:
                        ingestion.envelopes.extend(items)
                    answer = {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
                else:
                    answer = {}
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-ms-qps-subscribed", "false")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, fmt: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def connection_string(self) -> str:
        return (f"InstrumentationKey=00000000-0000-4000-8000-0000000000a1;"
                f"IngestionEndpoint={self.url};LiveEndpoint={self.url}")

    def start(self) -> "Ingestion":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def of_type(self, base_type: str) -> list[dict]:
        """The ``baseData`` of every envelope of that type, with the envelope's tags added as
        ``_tags``."""
        with self._lock:
            return [{**e["data"]["baseData"], "_tags": e.get("tags", {})}
                    for e in self.envelopes if e["data"]["baseType"] == base_type]
