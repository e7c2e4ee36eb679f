"""Serve ``function_app.app`` locally where Azure Functions Core Tools are absent.

    python -m tokenvault.dev.devhost [--port N] [--folder DIR]

Like ``func start`` it reads ``local.settings.json`` in the folder (``Values`` become the
environment — variables already set win — and ``Host.LocalHttpPort`` the port, default
7071), serves HTTP functions under ``/api/`` without asking for function keys, fires timer
functions on their NCRONTAB schedule, drains queue-triggered functions with the host's
retry and poison semantics (``host.json`` ``extensions.queues``), and runs any non-HTTP
function now on ``POST /admin/functions/<name>`` (answering 202).

Where a local user would notice, it behaves as the Functions host does (docs/field-notes.md):
routes match case-insensitively, a method a route does not declare answers 404 (not 405), a
queue message that is not valid base64 goes to the poison queue at once (and the queue loop
goes on), and it accepts a burst of connections without resetting any.

A development tool: the deployed app never imports it. It goes through the same
``azure.functions`` request, response, timer and queue-message objects the worker uses, so
what works here exercises the same function code.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from .. import bootstrap
from ..settings import apply_local_settings
from . import logfields
from .ncrontab import Schedule

if TYPE_CHECKING:  # imported where the queue loop starts: only it needs the Storage SDK
    from azure.storage.queue import QueueClient
    from azure.storage.queue import QueueMessage as StoredMessage

log = logging.getLogger("tokenvault.dev.devhost")

__all__ = ["DevHost", "index_functions", "main"]


class _Route:
    def __init__(self, function: func.Function, binding: dict) -> None:
        self.function = function
        self.name = _name(function)
        self.methods = {m.upper() for m in binding.get("methods") or ["GET", "POST"]}
        template = binding.get("route") or self.name
        literal = re.split(r"(\{\w+(?::\w+)?\})", template.strip("/"))
        pattern = "".join(re.sub(r"\{(\w+)(?::\w+)?\}", r"(?P<\1>[^/]+)", part)
                          if part.startswith("{") else re.escape(part) for part in literal)
        # ASP.NET Core routing, which the host uses, compares route literals ignoring case.
        self.pattern = re.compile(pattern + r"\Z", re.IGNORECASE)

    def match(self, method: str, path: str) -> dict | None:
        found = self.pattern.match(path)
        return found.groupdict() if found and method.upper() in self.methods else None


class DevHost:
    """The functions of one app, with the triggers a local host provides."""

    def __init__(self, app: func.FunctionApp, *, host_config: dict | None = None) -> None:
        self.routes: list[_Route] = []
        self.timers: dict[str, tuple[func.Function, Schedule, bool]] = {}
        self.queues: dict[str, tuple[func.Function, dict]] = {}
        queues = ((host_config or {}).get("extensions") or {}).get("queues") or {}
        self.max_dequeue = int(queues.get("maxDequeueCount", 5))
        self.retry_visibility = _seconds(queues.get("visibilityTimeout", "00:00:00"))
        self.max_poll = _seconds(queues.get("maxPollingInterval", "00:00:02")) or 2
        self._stop = threading.Event()
        for function in index_functions(app):
            binding = json.loads(function.get_function_json())["bindings"][0]
            name = _name(function)
            if binding["type"] == "httpTrigger":
                self.routes.append(_Route(function, binding))
            elif binding["type"] == "timerTrigger":
                schedule = Schedule.parse(_resolve(binding["schedule"]))
                self.timers[name] = (function, schedule, bool(binding.get("runOnStartup")))
            elif binding["type"] == "queueTrigger":
                self.queues[name] = (function, binding)

    # --- HTTP ----------------------------------------------------------------------------

    def http(self, method: str, target: str, headers: dict, body: bytes) -> func.HttpResponse:
        parts = urlsplit(target)
        if method == "POST" and parts.path.startswith("/admin/functions/"):
            return self.run_now(parts.path.rsplit("/", 1)[-1], body)
        if not parts.path.lower().startswith("/api/"):
            return func.HttpResponse("Not found", status_code=404)
        path = parts.path[len("/api/"):].strip("/")
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                request = func.HttpRequest(method=method, url=target, headers=headers,
                                           params=dict(parse_qsl(parts.query)),
                                           route_params=params, body=body)
                return route.function.get_user_function()(request)
        # The host has no 405: a route that does not declare the method does not match.
        return func.HttpResponse("Not found", status_code=404)

    def run_now(self, name: str, body: bytes) -> func.HttpResponse:
        """The host's admin call: run a non-HTTP function once, in the background."""
        if name in self.timers:
            job = lambda: self._fire_timer(name, past_due=False)  # noqa: E731
        elif name in self.queues:
            payload = (json.loads(body or b"{}").get("input") or "").encode()
            function = self.queues[name][0]
            job = lambda: function.get_user_function()(  # noqa: E731
                QueueMessage(id="admin", body=payload, dequeue_count=1))
        else:
            return func.HttpResponse("Not found", status_code=404)
        threading.Thread(target=self._guarded, args=(name, job), daemon=True).start()
        return func.HttpResponse(status_code=202)

    # --- timers and queues ---------------------------------------------------------------

    def start_background(self, queue_connection: str | None) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._timer_loop, args=(name,), daemon=True)
                   for name in self.timers]
        if queue_connection:
            threads += [threading.Thread(target=self._queue_loop, args=(name, queue_connection),
                                         daemon=True) for name in self.queues]
        for thread in threads:
            thread.start()
        return threads

    def stop(self) -> None:
        self._stop.set()

    def _timer_loop(self, name: str) -> None:
        _, schedule, on_startup = self.timers[name]
        if on_startup:
            self._guarded(name, lambda: self._fire_timer(name, past_due=False))
        while not self._stop.is_set():
            now = datetime.now(timezone.utc)
            due = schedule.next_after(now)
            if self._stop.wait((due - now).total_seconds()):
                return
            self._guarded(name, lambda: self._fire_timer(name, past_due=False))

    def _fire_timer(self, name: str, *, past_due: bool) -> None:
        self.timers[name][0].get_user_function()(TimerRequest(past_due=past_due))

    def _queue_loop(self, name: str, connection: str) -> None:
        from azure.storage.queue import QueueClient  # a dev-host-only dependency path

        function, binding = self.queues[name]
        queue = QueueClient.from_connection_string(connection, binding["queueName"])
        poison = QueueClient.from_connection_string(connection, binding["queueName"] + "-poison")
        idle = 0.1
        while not self._stop.is_set():
            try:
                messages = list(queue.receive_messages(max_messages=16, visibility_timeout=60))
            except Exception as error:  # noqa: BLE001 - queue missing or Azurite restarting
                log.debug("queue %s not readable: %s", binding["queueName"], type(error).__name__)
                messages = []
            for message in messages:
                try:
                    self._deliver(name, function, queue, poison, message)
                except Exception as error:  # noqa: BLE001 - one message must not stop the loop
                    log.warning("%s: message %s not handled: %s", name, message.id,
                                type(error).__name__)
            idle = 0.1 if messages else min(self.max_poll, idle * 2)
            self._stop.wait(idle if not messages else 0)

    def _deliver(self, name: str, function: func.Function, queue: QueueClient, poison: QueueClient,
                 message: StoredMessage) -> None:
        # The host decodes base64 (its default messageEncoding) before the function sees it;
        # a message it cannot decode never reaches the function and goes to the poison queue.
        try:
            body = base64.b64decode(message.content or "", validate=True)
        except (binascii.Error, ValueError):
            self._poison(name, queue, poison, message, "it is not valid base64")
            return
        # The service counts every receive; the SDK's model types the count Optional.
        attempts = message.dequeue_count or 1
        request = QueueMessage(id=message.id, body=body, dequeue_count=attempts,
                               pop_receipt=message.pop_receipt)
        if self._guarded(name, lambda: function.get_user_function()(request)):
            queue.delete_message(message)
        elif attempts >= self.max_dequeue:
            self._poison(name, queue, poison, message, f"{attempts} attempts")
        else:
            queue.update_message(message, visibility_timeout=self.retry_visibility)

    @staticmethod
    def _poison(name: str, queue: QueueClient, poison: QueueClient, message: StoredMessage,
                why: str) -> None:
        try:
            poison.create_queue()
        except Exception:  # noqa: BLE001 - exists already
            pass
        poison.send_message(message.content)
        queue.delete_message(message)
        log.warning("%s: message %s moved to %s-poison: %s", name, message.id, queue.queue_name,
                    why)

    def _guarded(self, name: str, job: Callable[[], object]) -> bool:
        started = time.monotonic()
        try:
            job()
        except Exception:  # noqa: BLE001 - a failing function must not stop the host
            log.exception("Executed '%s' (Failed)", name)
            return False
        log.info("Executed '%s' (Succeeded, %.0f ms)", name, (time.monotonic() - started) * 1000)
        return True


def index_functions(app: func.FunctionApp) -> list[func.Function]:
    """``app.get_functions()``, repeatable. azure-functions remembers the names an indexing saw
    (``functions_bindings``) and refuses them as duplicates the next time, so a second index of
    the same app (a test that indexed it already, a second DevHost) would fail; the check for
    duplicates within one app still runs."""
    app.functions_bindings = None
    return app.get_functions()


def _name(function: func.Function) -> str:
    name = function.get_function_name()
    # azure-functions types it Optional (a function_name setting's value); its decorators
    # always set one, the Python function's own name by default.
    assert name is not None
    return name


def _resolve(value: str) -> str:
    """`%NAME%` binding expressions resolve from app settings, as in the host."""
    def setting(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SystemExit(f"devhost: app setting {name} is not set (used in a binding)")
        return os.environ[name]
    return re.sub(r"%(\w+)%", setting, value)


def _seconds(timespan: str) -> int:
    hours, minutes, seconds = (int(float(p)) for p in str(timespan).split(":"))
    return hours * 3600 + minutes * 60 + seconds


def _storage_connection(value: str | None) -> str | None:
    if value == "UseDevelopmentStorage=true":
        return ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
                "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
                "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;")
    return value


def _serve(host: DevHost, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in two writes; with Nagle on, the body waits for the
        # client's delayed ACK and every answer takes ~40 ms more on a kept-alive connection.
        disable_nagle_algorithm = True

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            response = host.http(self.command, self.path, dict(self.headers.items()), body)
            payload = response.get_body() or b""
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "content-type"):
                    self.send_header(name, value)
            if payload:
                content_type = response.mimetype or "text/plain"
                if response.charset:
                    content_type += f"; charset={response.charset}"
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        def log_message(self, fmt: str, *args: object) -> None:
            log.info("%s %s", self.command, self.path.split("?")[0])

    server = _Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of clients (a local load test) then
    # sees connections reset before a thread accepts them. The kernel caps this at somaxconn.
    request_queue_size = 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenvault.dev.devhost",
                                     description="Serve function_app locally without Core Tools.")
    parser.add_argument("--port", type=int, help="default: Host.LocalHttpPort or 7071")
    parser.add_argument("--folder", type=Path, default=Path.cwd(),
                        help="the function app folder (default: the current one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    bootstrap.log_levels()  # the app's own levels, as in Azure
    logfields.install()  # ids, codes and correlation ids on the console, as in Azure

    folder = args.folder.resolve()
    settings_file = folder / "local.settings.json"
    local = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    apply_local_settings(folder, os.environ)  # the same reading as the ops CLI's
    # Spans (one line each) and metrics (every minute) on the console unless the settings say
    # otherwise; with APPLICATIONINSIGHTS_CONNECTION_STRING set they go to Application Insights.
    os.environ.setdefault("TOKENVAULT_TELEMETRY", "console")
    host_file = folder / "host.json"
    host_config = json.loads(host_file.read_text()) if host_file.exists() else {}
    port = args.port or int((local.get("Host") or {}).get("LocalHttpPort") or 7071)

    os.chdir(folder)
    sys.path.insert(0, str(folder))
    app = importlib.import_module("function_app").app
    host = DevHost(app, host_config=host_config)
    host.start_background(_storage_connection(os.environ.get("AzureWebJobsStorage")))
    server = _serve(host, port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"devhost: serving {folder.name} on http://127.0.0.1:{port}/api/ "
          f"({len(host.routes)} HTTP, {len(host.timers)} timer, {len(host.queues)} queue functions)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
