"""Item 2: a client that asks for a flood of progress and never reads it cannot grow our memory.

Before: `slow` with 10^5 steps, a progress token and a socket nobody reads grew the gateway by
hundreds of MB (every SSE frame queued in Tornado's write buffer) and kept it. Now the reader
is dropped once it is `MCP_SSE_MAX_BUFFER_BYTES` behind; its events stay in the session's
bounded buffer for a `Last-Event-ID` resume.
"""

from __future__ import annotations

import json
import socket
import time

import httpx2

from tests.conftest import token, wait_until
from tests.e2e.wire import headers, init_body, sse_events

STEPS = 100_000
# The flood is ~40 MB of frames; a bounded writer holds at most the setting plus kernel buffers.
RSS_CEILING_KB = 40 * 1024
LIMITS = {"MCP_SSE_MAX_BUFFER_BYTES": "65536", "MCP_EVENT_BUFFER": "200"}


def _session(base_url: str) -> str:
    url = f"{base_url}/everything/mcp"
    with httpx2.Client(timeout=10) as http:
        response = http.post(url, json=init_body(), headers=headers(token()))
        session = response.headers["Mcp-Session-Id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        http.post(url, json=note, headers=headers(session=session, version="2025-11-25"))
    return session


def _call_slowly(port: int, session: str, steps: int) -> socket.socket:
    """POST a `slow` call with a progress token on a socket with a tiny receive buffer; read nothing."""
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "slow", "arguments": {"steps": steps, "delay": 0}, "_meta": {"progressToken": "p"}},
    }
    body = json.dumps(call).encode()
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers(session=session, version="2025-11-25").items())
    request = f"POST /everything/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Content-Length: {len(body)}\r\n\r\n"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader as slow as they come
    sock.connect(("127.0.0.1", port))
    sock.sendall(request.encode() + body)
    return sock


def test_a_reader_that_never_reads_is_dropped_not_buffered(spawn_gateway, servers_dir):
    gateway = spawn_gateway(servers_dir, env=LIMITS)
    session = _session(gateway.base_url)
    before = gateway.rss_kb()
    sock = _call_slowly(gateway.port, session, STEPS)
    try:
        peak = 0
        with httpx2.Client(timeout=1) as http:  # /health must answer within 1 s throughout
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                assert http.get(f"{gateway.base_url}/health").status_code == 200
                peak = max(peak, gateway.rss_kb() - before)
        wait_until(lambda: "dropping an SSE reader that fell behind" in gateway.log_text())
        assert peak < RSS_CEILING_KB, f"RSS grew {peak} KB for a reader that never reads"
    finally:
        sock.close()


def test_a_dropped_reader_resumes_and_misses_nothing(spawn_gateway, servers_dir):
    steps = 20_000  # ~6 MB of events: more than the kernel's buffers hold, all kept in the session's
    env = {"MCP_SSE_MAX_BUFFER_BYTES": "65536", "MCP_EVENT_BUFFER": "100000", "MCP_EVENT_BUFFER_BYTES": "67108864"}
    gateway = spawn_gateway(servers_dir, env=env)
    session = _session(gateway.base_url)
    sock = _call_slowly(gateway.port, session, steps)
    with sock:
        wait_until(lambda: "dropping an SSE reader that fell behind" in gateway.log_text())
        received = b""
        while chunk := sock.recv(65536):  # what the kernel still held, then the end: we were dropped
            received += chunk
    seen = sse_events(received.partition(b"\r\n\r\n")[2].decode(errors="replace").rpartition("\n\n")[0] + "\n\n")
    assert seen and not any(e["data"].get("id") == 7 for e in seen), "dropped before the result"
    last_id = seen[-1]["id"]

    with httpx2.Client(timeout=30) as http:
        get = {"Accept": "text/event-stream", "Mcp-Session-Id": session, "Last-Event-ID": last_id}
        with http.stream("GET", f"{gateway.base_url}/everything/mcp", headers=get) as stream:
            assert stream.status_code == 200
            rest = sse_events(stream.read().decode())  # replayed up to the result, then the stream ends
    progress = [
        e["data"]["params"]["progress"] for e in seen + rest if e["data"].get("method") == "notifications/progress"
    ]
    assert progress == list(range(1, steps + 1)), "a progress event was lost or repeated"
    assert rest[-1]["data"] == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"content": [{"type": "text", "text": f"done {steps} steps"}], "isError": False},
    }


def test_the_shipped_calculator_with_a_million_numbers(spawn_gateway, tmp_path):
    """The issue's own attack: `sum_slowly` of 10^6 numbers, `delay: 0`, a progress token, a
    client that never reads. Checking a million-item argument runs off the event loop."""
    import shutil

    from tests.conftest import HERE

    servers = tmp_path / "shipped"
    shutil.copytree(HERE.parent / "servers.d", servers, ignore=shutil.ignore_patterns("__pycache__"))
    gateway = spawn_gateway(servers, env=LIMITS)
    url = f"{gateway.base_url}/calculator/mcp"
    bearer = token("calculator", api_key="demo-key")
    with httpx2.Client(timeout=10) as http:
        session = http.post(url, json=init_body(), headers=headers(bearer)).headers["Mcp-Session-Id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        http.post(url, json=note, headers=headers(session=session, version="2025-11-25"))
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "sum_slowly",
            "arguments": {"numbers": [1] * 1_000_000, "delay": 0},
            "_meta": {"progressToken": "p"},
        },
    }
    body = json.dumps(call, separators=(",", ":")).encode()
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers(session=session, version="2025-11-25").items())
    request = f"POST /calculator/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Content-Length: {len(body)}\r\n\r\n"
    before = gateway.rss_kb()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    try:
        sock.sendall(request.encode() + body)
        peak = 0
        with httpx2.Client(timeout=1) as http:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                assert http.get(f"{gateway.base_url}/health").status_code == 200
                peak = max(peak, gateway.rss_kb() - before)
        wait_until(lambda: "dropping an SSE reader that fell behind" in gateway.log_text(), timeout=20)
        # The request itself (a million numbers, parsed) is most of this; the flood adds little.
        assert peak < 2 * RSS_CEILING_KB, f"RSS grew {peak} KB"
    finally:
        sock.close()
