"""A session's GET stream takes its connection over from Tornado once its headers are out
(`SseResponse(hand_over=True)`), so that an idle stream holds no handler or request. The
connection is still ours to bound: it counts against `MCP_MAX_CONNECTIONS` while it is open,
stops counting once it closes, and a stopping gateway ends it.
"""

from __future__ import annotations

import signal
import socket

import httpx2

from tests.conftest import token, wait_until
from tests.e2e.wire import headers, init_body
from tests.hostile.conftest import GatewayProcess

CAP = 6


def _session(base_url: str) -> str:
    url = f"{base_url}/everything/mcp"
    with httpx2.Client(timeout=10) as http:
        session = http.post(url, json=init_body(), headers=headers(token())).headers["Mcp-Session-Id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        http.post(url, json=note, headers=headers(token(), session=session, version="2025-11-25"))
    return session


def _open_stream(port: int, session: str) -> tuple[socket.socket, bytes]:
    """A GET stream on a raw socket, read up to the end of its headers (and what came with them)."""
    lines = f"Authorization: Bearer {token()}\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\n"
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /everything/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the headers: {received!r}"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received
    head = received.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert b"transfer-encoding: chunked" in head  # and this connection ends with the stream:
    assert b"connection: close" in head  # the client knows not to send another request on it
    return sock, received


def _health_served(port: int) -> bool:
    """Whether a new connection gets `/health` answered (at the cap, with every connection
    busy, the gateway closes a new one at once)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _read_to_eof(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_open_get_streams_hold_their_place_under_the_connection_cap(spawn_gateway, servers_dir):
    gateway: GatewayProcess = spawn_gateway(servers_dir, env={"MCP_MAX_CONNECTIONS": str(CAP)})
    baseline = gateway.fds()
    streams = [_open_stream(gateway.port, _session(gateway.base_url))[0] for _ in range(CAP)]
    try:
        # Every connection is a stream, none idle: a new one is turned away (once the short
        # connections that opened the sessions are gone).
        wait_until(lambda: not _health_served(gateway.port), message="handed-over streams do not count")
        streams.pop().close()
        wait_until(lambda: _health_served(gateway.port), message="a closed stream still counts")
        streams.append(_open_stream(gateway.port, _session(gateway.base_url))[0])  # the cap is full again
        wait_until(lambda: not _health_served(gateway.port), message="a new stream does not count")
    finally:
        for sock in streams:
            sock.close()
    wait_until(lambda: gateway.fds() <= baseline, message="descriptors of closed streams not given back")


def test_a_stopping_gateway_ends_its_get_streams(spawn_gateway, servers_dir):
    gateway: GatewayProcess = spawn_gateway(servers_dir, env={"MCP_SHUTDOWN_GRACE": "1"})
    sock, received = _open_stream(gateway.port, _session(gateway.base_url))
    with sock:
        gateway.proc.send_signal(signal.SIGTERM)
        received += _read_to_eof(sock)
    assert received.endswith(b"0\r\n\r\n"), received[-200:]  # the chunked body ended properly
    assert gateway.wait_exit(15) == 0
