"""What every benchmark scenario shares: processes (pinned to a CPU), tokens, a raw HTTP/1.1 client, wrk.

`bench.py` is the entry point; this module holds no scenario of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
NODE_MODULES = ROOT / ".tools" / "bench-node" / "node_modules"
PYTHON = sys.executable

HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"
BASE_HEADERS = {"Accept": ACCEPT, "Content-Type": "application/json"}
STARTUP_TIMEOUT = 30.0


class BenchError(RuntimeError):
    """A peer failed to start, or answered wrongly: the benchmark stops (exit 1)."""


# -- CPUs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pinning:
    """Servers on one CPU, load generators (wrk, this process) on another, when taskset and 2 CPUs exist."""

    server_cpu: int | None = None
    client_cpu: int | None = None

    @classmethod
    def detect(cls, enabled: bool = True) -> Pinning:
        if not enabled or not hasattr(os, "sched_getaffinity") or shutil.which("taskset") is None:
            return cls()
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls()
        return cls(cpus[0], cpus[1])

    def server(self, cmd: Sequence[str]) -> list[str]:
        return ["taskset", "-c", str(self.server_cpu), *cmd] if self.server_cpu is not None else list(cmd)

    def client(self, cmd: Sequence[str]) -> list[str]:
        return ["taskset", "-c", str(self.client_cpu), *cmd] if self.client_cpu is not None else list(cmd)

    def describe(self) -> str:
        if self.server_cpu is None:
            return "not pinned (needs taskset and 2 CPUs): servers and load share the CPUs"
        return f"servers on CPU {self.server_cpu} (taskset), wrk and the Python client on CPU {self.client_cpu}"


def cpu_busy(seconds: float = 1.0) -> dict[int, float]:
    """Fraction of each CPU busy over `seconds` (from /proc/stat): before the run, that is other work."""

    def read() -> dict[int, tuple[int, int]]:
        found = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values]
                idle = ticks[3] + ticks[4]  # idle + iowait
                found[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
        return found

    try:
        before = read()
        time.sleep(seconds)
        after = read()
    except OSError:
        return {}
    return {
        cpu: (after[cpu][0] - before[cpu][0]) / max(1, after[cpu][1] - before[cpu][1]) for cpu in before if cpu in after
    }


# -- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """One peer process; its output goes to `log`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid  # taskset execs the command: the same pid

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise BenchError(f"{self.name}: no VmRSS")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def spawn(
    name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None, port: int = 0, cwd: Path = ROOT
) -> Proc:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:  # the child keeps its own handle
        popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    return Proc(name, popen, log, port)


def wait_until_up(proc: Proc, path: str = "/", timeout: float = STARTUP_TIMEOUT) -> None:
    """Wait until `proc` answers any HTTP request on its port; fail if it dies or time runs out."""

    async def probe() -> bool:
        try:
            conn = await HTTPConn.open(proc.port)
        except OSError:
            return False
        try:
            await conn.request("GET", path, {})
            return True
        except (OSError, asyncio.IncompleteReadError):
            return False
        finally:
            conn.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        if asyncio.run(probe()):
            return
        time.sleep(0.05)
    raise BenchError(f"{proc.name} did not answer on port {proc.port} within {timeout:.0f} s:\n{proc.tail()}")


def token(secret: str, server: str, ttl: float = 3600, user: str | None = None) -> str:
    claims: dict[str, Any] = {"serverName": server, "iat": int(time.time()), "exp": int(time.time() + ttl)}
    if user is not None:
        claims["userId"] = user
    return jwt.encode(claims, secret, algorithm="HS256")


# -- a raw HTTP/1.1 client: cheap enough to hold 10,000 streams in one process ---------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HTTPConn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port; requests go one at a time."""

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.port, self.reader, self.writer = port, reader, writer

    @classmethod
    async def open(cls, port: int) -> HTTPConn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(port, reader, writer)

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    async def read_head(self) -> tuple[int, dict[str, str]]:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() != "chunked":
            return b""
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def request(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Response:
        raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        self.send(method, path, headers, raw)
        status, response_headers = await self.read_head()
        return Response(status, response_headers, await self.read_body(response_headers))

    def close(self) -> None:
        self.writer.close()


def sse_payloads(body: bytes) -> list[Any]:
    """The JSON `data:` payloads of an SSE body."""
    payloads = []
    for event in body.decode().replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")]
        if data and "".join(data).strip():  # a priming event has an id and no data
            payloads.append(json.loads("\n".join(data)))
    return payloads


def answer_of(response: Response, request_id: Any) -> dict[str, Any]:
    """The JSON-RPC answer to `request_id` in a JSON or SSE response (BenchError if none)."""
    if response.status != 200:
        raise BenchError(f"HTTP {response.status}: {response.body[:300]!r}")
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        found = [p for p in sse_payloads(response.body) if isinstance(p, dict) and p.get("id") == request_id]
    else:
        found = [response.json()]
    if not found or found[0].get("id") != request_id:
        raise BenchError(f"no answer to request {request_id}: {response.body[:300]!r}")
    return dict(found[0])


def initialize_message(request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
    }


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


async def open_session(conn: HTTPConn, path: str, auth: dict[str, str]) -> dict[str, str]:
    """initialize + notifications/initialized on `conn`; returns the headers that carry the session."""
    response = await conn.request("POST", path, {**BASE_HEADERS, **auth}, initialize_message())
    answer = answer_of(response, 1)
    session_id = response.headers.get("mcp-session-id")
    if "result" not in answer or not session_id:
        raise BenchError(f"initialize failed: {response.status} {response.body[:300]!r}")
    headers = {**auth, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": HANDSHAKE}
    note = await conn.request("POST", path, {**BASE_HEADERS, **headers}, INITIALIZED)
    if note.status != 202:
        raise BenchError(f"notifications/initialized: HTTP {note.status}: {note.body[:300]!r}")
    return headers


# -- wrk -------------------------------------------------------------------------------------------


@dataclass
class WrkRun:
    rate: float  # requests/s as wrk counts them
    mean_ms: float
    p99_ms: float
    requests: int
    seconds: float
    counters: dict[str, float] = field(default_factory=dict)


# The response hook counts every answer that is not 2xx, or whose body fails the scenario's check
# (`ok`, written per scenario); `done` prints one machine-readable line. Each thread numbers its
# requests from its own base, so no two requests in flight share a JSON-RPC id (the SDK stalls on that).
WRK_CALL_SCRIPT = r"""
wrk.method = "POST"
local threads = {}

function setup(thread)
  thread:set("base", 1000000 * (#threads + 1))
  table.insert(threads, thread)
end

function init(args)
  counter, bad_status, bad_body, first_bad = 0, 0, 0, ""
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, table.concat(BODY_PARTS, string.format("%d", base + counter)))
end

local function header(headers, name)
  for k, v in pairs(headers) do
    if string.lower(k) == name then return v end
  end
  return ""
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad_status = bad_status + 1
    if first_bad == "" then first_bad = status .. " " .. body:sub(1, 300) end
  elseif not ok(headers, body) then
    bad_body = bad_body + 1
    if first_bad == "" then first_bad = status .. " " .. header(headers, "content-type") .. " " .. body:sub(1, 300) end
  end
end

function done(summary, latency, requests)
  local bad_status, bad_body, first_bad = 0, 0, ""
  for _, thread in ipairs(threads) do
    bad_status = bad_status + thread:get("bad_status")
    bad_body = bad_body + thread:get("bad_body")
    if first_bad == "" then first_bad = thread:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d mean_us=%.1f p99_us=%d "
    .. "bad_status=%d bad_body=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency.mean, latency:percentile(99), bad_status, bad_body,
    e.connect + e.read + e.write + e.timeout))
  if first_bad ~= "" then io.write("BENCHBAD " .. first_bad:gsub("\n", " ") .. "\n") end
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for our ASCII bodies


def call_script(headers: dict[str, str], body: str, must_contain: Sequence[str], content_type: str | None) -> str:
    """A wrk script POSTing `body` (where `{id}` is replaced by a fresh request id) and checking each answer:
    2xx, every string of `must_contain` in the body, no `"isError": true`, and the content type if given."""
    lines = [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
    lines.append("BODY_PARTS = {" + ", ".join(lua_string(p) for p in body.split("{id}")) + "}")
    checks = [f"body:find({lua_string(s)}, 1, true)" for s in must_contain]
    checks.append("not body:find('\"isError\"%s*:%s*true')")
    if content_type:
        checks.append(f"header(headers, 'content-type'):sub(1, {len(content_type)}) == {lua_string(content_type)}")
    ok = "function ok(headers, body)\n  return " + "\n    and ".join(checks) + "\nend\n"
    # `ok` refers to `header`, defined as a local in the main script: define `ok` after it.
    script = WRK_CALL_SCRIPT.replace("function response(", ok + "\nfunction response(", 1)
    return "\n".join(lines) + "\n" + script


# Session churn: each connection (one per wrk thread) loops initialize -> notifications/initialized
# [-> DELETE], taking the session id from the initialize answer. Every answer is checked. With a QUOTA,
# a thread stops once it has opened that many sessions (wrk still runs for its whole duration).
WRK_SESSIONS_SCRIPT = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  state, sid, sessions, bad_status, bad_body, first_bad = 0, nil, 0, 0, 0, ""
end

local function header(headers, name)
  for k, v in pairs(headers) do
    if string.lower(k) == name then return v end
  end
  return nil
end

local function with_session()
  local h = {}
  for k, v in pairs(SESSION_HEADERS) do h[k] = v end
  h["Mcp-Session-Id"] = sid
  return h
end

function request()
  if state == 0 then
    return wrk.format("POST", nil, INIT_HEADERS, INIT_BODY)
  elseif state == 1 then
    return wrk.format("POST", nil, with_session(), INITIALIZED_BODY)
  else
    return wrk.format("DELETE", nil, with_session(), nil)
  end
end

local function bad(kind, status, body)
  if kind == "status" then bad_status = bad_status + 1 else bad_body = bad_body + 1 end
  if first_bad == "" then first_bad = "state " .. state .. ": " .. status .. " " .. body:sub(1, 300) end
  state = 0
end

local function opened()
  sessions = sessions + 1
  state = 0
  if QUOTA > 0 and sessions >= QUOTA then wrk.thread:stop() end
end

function response(status, headers, body)
  if state == 0 then
    sid = header(headers, "mcp-session-id")
    if status ~= 200 then return bad("status", status, body) end
    if not sid or not body:find('"result"', 1, true) then return bad("body", status, body) end
    state = 1
  elseif state == 1 then
    if status ~= 202 then return bad("status", status, body) end
    if DELETE then state = 2 else opened() end
  else
    if status < 200 or status > 299 then return bad("status", status, body) end
    opened()
  end
end

function done(summary, latency, requests)
  local sessions, bad_status, bad_body, first_bad = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    sessions = sessions + thread:get("sessions")
    bad_status = bad_status + thread:get("bad_status")
    bad_body = bad_body + thread:get("bad_body")
    if first_bad == "" then first_bad = thread:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d mean_us=%.1f p99_us=%d "
    .. "bad_status=%d bad_body=%d socket_errors=%d sessions=%d\n",
    summary.requests, summary.duration, latency.mean, latency:percentile(99), bad_status, bad_body,
    e.connect + e.read + e.write + e.timeout, sessions))
  if first_bad ~= "" then io.write("BENCHBAD " .. first_bad:gsub("\n", " ") .. "\n") end
end
"""


def lua_table(values: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in values.items()) + "}"


def sessions_script(auth: dict[str, str], *, delete: bool, quota: int = 0) -> str:
    """wrk script opening sessions: churn (`delete`: each one is ended at once), or idle ones (a `quota` per
    thread)."""
    session_headers = {**BASE_HEADERS, **auth, "MCP-Protocol-Version": HANDSHAKE}
    return "\n".join(
        [
            f"INIT_HEADERS = {lua_table({**BASE_HEADERS, **auth})}",
            f"SESSION_HEADERS = {lua_table(session_headers)}",
            f"INIT_BODY = {lua_string(json.dumps(initialize_message()))}",
            f"INITIALIZED_BODY = {lua_string(json.dumps(INITIALIZED))}",
            f"DELETE = {'true' if delete else 'false'}",
            f"QUOTA = {quota}",
            WRK_SESSIONS_SCRIPT,
        ]
    )


def run_wrk(
    label: str,
    url: str,
    script: Path,
    pinning: Pinning,
    *,
    connections: int,
    seconds: int,
    threads: int = 1,
) -> WrkRun:
    """Run wrk once; BenchError if any answer was wrong or any socket error happened."""
    cmd = pinning.client(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 60)
    stats = re.search(r"^BENCH (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not stats:
        raise BenchError(f"{label}: wrk failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    fields = {k: float(v) for k, v in (item.split("=") for item in stats.group(1).split())}
    first_bad = re.search(r"^BENCHBAD (.*)$", proc.stdout, re.M)
    if fields["requests"] == 0 or fields["bad_status"] or fields["bad_body"] or fields["socket_errors"]:
        detail = f"\n  first bad answer: {first_bad.group(1)}" if first_bad else ""
        raise BenchError(f"{label}: wrong answers or socket errors under wrk: {stats.group(1)}{detail}")
    seconds_run = fields["duration_us"] / 1e6
    return WrkRun(
        rate=fields["requests"] / seconds_run,
        mean_ms=fields["mean_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        requests=int(fields["requests"]),
        seconds=seconds_run,
        counters=fields,
    )
