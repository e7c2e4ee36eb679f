"""The dev host under a burst of connections: a local load test sees answers, not resets."""

from __future__ import annotations

import socket
import threading

import azure.functions as func
import pytest

from tokenvault.dev.devhost import DevHost, _serve


def test_twenty_four_clients_connecting_at_once_are_all_queued_then_answered():
    # With Python's default listen backlog of 5, connections beyond the backlog are dropped
    # (Linux) or reset (macOS) while the server is busy accepting. Hold the server still
    # so the kernel's queue alone decides, connect 24 clients, then serve them all.
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="health", methods=["GET"])
    def health(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")

    server = _serve(DevHost(app), 0)
    address = server.server_address
    clients, serving = [], None
    try:
        for _ in range(24):
            try:
                clients.append(socket.create_connection(address, timeout=2))
            except OSError as error:  # dropped (timeout) or reset: the backlog was full
                pytest.fail(f"client {len(clients) + 1} not queued: {type(error).__name__}")
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()
        for client in clients:
            client.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = [_read_all(client) for client in clients]
    finally:
        if serving is not None:
            server.shutdown()
        for client in clients:
            client.close()
        server.server_close()
    assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"ok") for a in answers)


def _read_all(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)
