"""Item 5: SIGTERM always ends the process: in-flight calls get a grace period, a second
signal exits at once, and nothing left running can hold the process.

(A sync handler stuck for ever is covered in test_threads.py.)
"""

from __future__ import annotations

import concurrent.futures
import re
import signal
import socket
import time

import httpx2

from tests.conftest import token, wait_until
from tests.e2e.wire import headers, init_body
from tests.hostile.conftest import GatewayProcess


def _session(http: httpx2.Client, url: str) -> str:
    session = http.post(url, json=init_body(), headers=headers(token())).headers["Mcp-Session-Id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    http.post(url, json=note, headers=headers(session=session, version="2025-11-25"))
    return session


def _start_wait(gateway: GatewayProcess, seconds: float) -> concurrent.futures.Future[httpx2.Response]:
    """A `wait` tool call in flight on its own session (answered on another thread)."""
    url = f"{gateway.base_url}/everything/mcp"
    http = httpx2.Client(timeout=60)
    session = _session(http, url)
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "wait", "arguments": {"seconds": seconds}},
    }
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(http.post, url, json=call, headers=headers(session=session, version="2025-11-25"))
    future.add_done_callback(lambda _: http.close())
    pool.shutdown(wait=False)
    wait_until(lambda: _in_flight(gateway) == 1, message="the call never got in flight")
    return future


def _in_flight(gateway: GatewayProcess) -> int:
    metrics = httpx2.get(f"{gateway.base_url}/metrics").text
    match = re.search(r'mcp_tornado_requests_in_flight\{kind="inprocess",server="everything"\} (\d+)\.0', metrics)
    return int(match.group(1)) if match else -1


def test_a_call_in_flight_finishes_within_the_grace_period(spawn_gateway, servers_dir):
    gateway = spawn_gateway(servers_dir, env={"MCP_SHUTDOWN_GRACE": "20"})
    answer = _start_wait(gateway, 1.5)
    gateway.proc.send_signal(signal.SIGTERM)
    assert answer.result(10).json()["result"]["content"][0]["text"] == "waited"
    assert gateway.wait_exit(10) == 0


def test_past_the_grace_period_calls_end_and_the_process_exits(spawn_gateway, servers_dir):
    gateway = spawn_gateway(servers_dir, env={"MCP_SHUTDOWN_GRACE": "1"})
    answer = _start_wait(gateway, 3600)
    began = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.wait_exit(15) == 0
    assert time.monotonic() - began < 10
    assert answer.result(10).json()["error"]["message"] == "session ended"


def test_a_second_signal_exits_at_once(spawn_gateway, servers_dir):
    gateway = spawn_gateway(servers_dir, env={"MCP_SHUTDOWN_GRACE": "60"})
    _start_wait(gateway, 3600)
    gateway.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "shutting down" in gateway.log_text())
    began = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.wait_exit(5) == 128 + signal.SIGTERM
    assert time.monotonic() - began < 2


def _kept_alive(gateway: GatewayProcess) -> socket.socket:
    """A connection that has had one answer (`/health`) and waits, kept alive, as a proxy's do."""
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def test_a_stopping_gateway_takes_no_new_request_on_a_kept_alive_connection(spawn_gateway, servers_dir):
    # A proxy (nginx) keeps connections to the gateway alive and sends requests on them. Once
    # the gateway is stopping, its routes go away: a request coming in on such a connection
    # would hear 404, and a proxy does not retry a POST. So the idle ones close at once, and
    # the proxy opens a new connection, which a stopping host refuses: it goes to another.
    gateway = spawn_gateway(servers_dir, env={"MCP_SHUTDOWN_GRACE": "20"})
    idle = _kept_alive(gateway)
    answer = _start_wait(gateway, 4)  # a call in flight keeps the gateway in its grace period
    before = gateway.fds()
    fresh = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)  # no request yet
    wait_until(lambda: gateway.fds() > before, message="the fresh connection was never accepted")
    began = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    with idle:
        idle.settimeout(3)
        assert idle.recv(1) == b"", "the kept-alive connection stayed open"
    assert time.monotonic() - began < 3
    with fresh:  # accepted before the signal: its first request is still answered
        fresh.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert fresh.recv(64).startswith(b"HTTP/1.1 200")
    assert answer.result(15).json()["result"]["content"][0]["text"] == "waited"  # in flight: answered
    assert gateway.wait_exit(15) == 0
