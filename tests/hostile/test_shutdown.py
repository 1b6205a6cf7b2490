"""Item 5: SIGTERM always ends the process: in-flight calls get a grace period, a second
signal exits at once, and nothing left running can hold the process.

(A sync handler stuck for ever is covered in test_threads.py.)
"""

from __future__ import annotations

import concurrent.futures
import re
import signal
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
