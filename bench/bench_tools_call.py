"""Benchmark `tools/call` throughput: mcp-tornado against the official MCP SDK server.

Run from the repository root:

    .venv/bin/python bench/bench_tools_call.py [--calls N] [--concurrency C] [--warmup W]

It writes a throwaway servers dir holding one tool, `add`, and starts three peers as
subprocesses on free ports of 127.0.0.1:

* mcp-tornado (`python -m mcp_tornado serve`), hosting `add` as an in-process handler;
* the SDK's `MCPServer` under uvicorn with its defaults (stateful sessions, SSE responses);
* the same SDK server with `json_response=True`.

Every peer is driven by the same raw httpx2 client: initialize, `notifications/initialized`,
W warm-up calls, then N `tools/call` requests on that one session, first one at a time
(sequential) and then C at a time (concurrent). Each result is checked. It prints calls/s
and mean latency per peer and mode, and the ratio mcp-tornado / SDK for each mode.
Client and servers share the machine's CPUs, so compare ratios rather than absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import jwt

PROTOCOL_VERSION = "2025-11-25"
BASE_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
STARTUP_TIMEOUT = 30.0

BENCH_YAML = """\
name: bench
tools:
  - name: add
    description: add two numbers
    inputSchema: {type: object, properties: {a: {type: number}, b: {type: number}}, required: [a, b]}
    handler: bench_tools:add
"""

BENCH_TOOLS = """\
async def add(arguments, context):
    return str(arguments["a"] + arguments["b"])
"""

SDK_SERVER = """\
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("bench")


@mcp.tool()
async def add(a: float, b: float) -> str:
    return str(a + b)


port, mode = int(sys.argv[1]), sys.argv[2]
uvicorn.run(mcp.streamable_http_app(json_response=mode == "json"), host="127.0.0.1", port=port, access_log=False)
"""


@dataclass
class Peer:
    label: str
    url: str
    headers: dict[str, str]  # extra headers for initialize (auth)


@dataclass
class Result:
    peer: str
    mode: str
    calls: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def mean_ms(self) -> float:
        return 1000 * sum(self.latencies) / len(self.latencies)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own handle; ours can close
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `url` until it answers with any HTTP response; fail if the process dies or time runs out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{log.stem} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            httpx2.get(url, timeout=1.0)
            return
        except httpx2.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {STARTUP_TIMEOUT} s:\n{log.read_text()[-2000:]}")


Reply = tuple[httpx2.Response, dict[str, Any]]


def sse_messages(lines: list[str]) -> list[Any]:
    """The JSON payloads of the events in `lines` of an SSE stream (one event ends at a blank line)."""
    messages: list[Any] = []
    data: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            messages.append(json.loads("\n".join(data)))
            data = []
    return messages


async def rpc(client: httpx2.AsyncClient, url: str, message: dict[str, Any], headers: dict[str, str]) -> Reply:
    """POST one JSON-RPC request and return the HTTP response with the JSON-RPC response.

    The body may be JSON or an SSE stream; a stream is read only up to the event carrying our id.
    """
    async with client.stream("POST", url, json=message, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"{message['method']}: HTTP {response.status_code}: {response.text}")
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return response, json.loads(await response.aread())
        lines: list[str] = []
        async for line in response.aiter_lines():
            lines.append(line)
            if line:
                continue
            for reply in sse_messages(lines):
                if isinstance(reply, dict) and reply.get("id") == message["id"]:
                    return response, reply
            lines = []
        for reply in sse_messages(lines):  # a last event without its blank line
            if isinstance(reply, dict) and reply.get("id") == message["id"]:
                return response, reply
        raise RuntimeError(f"{message['method']}: SSE stream ended without response {message['id']}")


class Session:
    """One MCP session over raw HTTP."""

    def __init__(self, client: httpx2.AsyncClient, peer: Peer) -> None:
        self.client, self.peer = client, peer
        self.headers: dict[str, str] = {}
        self.ids = itertools.count(1)

    async def open(self) -> None:
        init = {
            "jsonrpc": "2.0",
            "id": next(self.ids),
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
        }
        response, reply = await rpc(self.client, self.peer.url, init, self.peer.headers)
        if "result" not in reply:
            raise RuntimeError(f"{self.peer.label}: initialize failed: {reply}")
        session_id = response.headers.get("mcp-session-id")
        if not session_id:
            raise RuntimeError(f"{self.peer.label}: initialize returned no Mcp-Session-Id")
        self.headers = {**self.peer.headers, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": PROTOCOL_VERSION}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response = await self.client.post(self.peer.url, json=note, headers=self.headers)
        if response.status_code != 202:
            raise RuntimeError(f"{self.peer.label}: initialized: HTTP {response.status_code}: {response.text}")

    async def add(self) -> float:
        """Call `add`, check the answer, and return the latency in seconds."""
        request_id = next(self.ids)
        a, b = request_id, 0.5
        message = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": a, "b": b}},
        }
        start = time.perf_counter()
        _, reply = await rpc(self.client, self.peer.url, message, self.headers)
        elapsed = time.perf_counter() - start
        result = reply.get("result")
        if not result or result.get("isError") or float(result["content"][0]["text"]) != a + b:
            raise RuntimeError(f"{self.peer.label}: bad reply to add({a}, {b}): {reply}")
        return elapsed

    async def close(self) -> None:
        await self.client.delete(self.peer.url, headers=self.headers)  # best effort; 405 is allowed


async def run_calls(session: Session, calls: int, concurrency: int) -> tuple[float, list[float]]:
    remaining = iter(range(calls))
    latencies: list[float] = []

    async def worker() -> None:
        for _ in remaining:  # the shared iterator hands out the calls
            latencies.append(await session.add())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


async def bench_peer(peer: Peer, calls: int, concurrency: int, warmup: int) -> list[Result]:
    limits = httpx2.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with httpx2.AsyncClient(headers=BASE_HEADERS, limits=limits, timeout=30.0) as client:
        session = Session(client, peer)
        await session.open()
        await run_calls(session, warmup, concurrency)
        results = []
        for mode, width in (("sequential", 1), (f"concurrent x{concurrency}", concurrency)):
            seconds, latencies = await run_calls(session, calls, width)
            results.append(Result(peer.label, mode, calls, seconds, latencies))
        await session.close()
        return results


def report(results: list[Result]) -> None:
    print(f"\n{'peer':<22} {'mode':<16} {'calls/s':>9} {'mean ms':>9}")
    for r in results:
        print(f"{r.peer:<22} {r.mode:<16} {r.rate:>9.0f} {r.mean_ms:>9.2f}")
    ours = {r.mode: r for r in results if r.peer == "mcp-tornado"}
    print("\nratio mcp-tornado / SDK (calls/s; >1 means mcp-tornado is faster)")
    for r in results:
        if r.peer != "mcp-tornado":
            print(f"  vs {r.peer:<19} {r.mode:<16} {ours[r.mode].rate / r.rate:>6.2f}x")


@contextlib.contextmanager
def running_peers() -> Iterator[list[Peer]]:
    """Start the three peers in a throwaway directory, wait until they answer, and stop them all on exit."""
    secret = secrets.token_urlsafe(32)
    token = jwt.encode({"serverName": "bench", "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="mcp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        servers = tmp / "servers"
        servers.mkdir()
        (servers / "bench.yaml").write_text(BENCH_YAML)
        (servers / "bench_tools.py").write_text(BENCH_TOOLS)
        (tmp / "sdk_server.py").write_text(SDK_SERVER)
        try:
            port = free_port()
            cmd = [sys.executable, "-m", "mcp_tornado", "serve", "--host", "127.0.0.1", "--port", str(port)]
            log = tmp / "mcp-tornado.log"
            procs.append(spawn([*cmd, "--servers-dir", str(servers)], log, {**os.environ, "JWT_SECRET": secret}))
            wait_until_up(f"http://127.0.0.1:{port}/health", procs[-1], log)
            peers = [Peer("mcp-tornado", f"http://127.0.0.1:{port}/bench/mcp", {"Authorization": f"Bearer {token}"})]
            for mode in ("sse", "json"):
                port = free_port()
                log = tmp / f"sdk-{mode}.log"
                procs.append(spawn([sys.executable, str(tmp / "sdk_server.py"), str(port), mode], log))
                wait_until_up(f"http://127.0.0.1:{port}/mcp", procs[-1], log)
                label = "SDK (default, SSE)" if mode == "sse" else "SDK (json_response)"
                peers.append(Peer(label, f"http://127.0.0.1:{port}/mcp", {}))
            yield peers
        finally:
            for proc in procs:
                stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per peer and mode")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight in the concurrent mode")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per peer first")
    args = parser.parse_args()

    with running_peers() as peers:
        print(f"{args.calls} calls per peer and mode, {args.warmup} warm-up, concurrency {args.concurrency}")
        results: list[Result] = []
        for peer in peers:
            print(f"benchmarking {peer.label} at {peer.url} ...", flush=True)
            results += asyncio.run(bench_peer(peer, args.calls, args.concurrency, args.warmup))
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
