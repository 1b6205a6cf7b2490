"""Sessions in Redis (`MCP_REDIS_URL`): two hosts (`serve` processes on ports of their own) share
every session. One official `mcp` client talks to whichever host a `Switchboard` points at, so a
test can move a live session from host to host between two calls, or in the middle of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import mcp_types as types
import pytest
import redis
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.cluster.test_workers import health
from tests.conftest import eventually, token, wait_until

PROTOCOL = "2025-11-25"


class Switchboard(httpx2.AsyncBaseTransport):
    """Sends each request to the host (port) chosen at that moment, and notes where each went."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: list[tuple[str, int, bytes]] = []  # (method, port, body)
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(port=self.port)
        self.sent.append((request.method, self.port, request.content if request.method == "POST" else b""))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.asynccontextmanager
async def client_through(board: Switchboard, **session_kwargs: Any) -> AsyncIterator[ClientSession]:
    """The official client, initialized on the host `board` points at now."""
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30, transport=board) as http:
        url = f"http://127.0.0.1:{board.port}/everything/mcp"
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, **session_kwargs) as session:
                await session.initialize()
                yield session


def two_hosts(serve: Callable[..., Any], servers_dir: Any, url: str, **env: str) -> list[Any]:
    return [serve(servers_dir, workers=1, env={"MCP_REDIS_URL": url, **env}) for _ in range(2)]


async def whoami(client: ClientSession) -> dict[str, Any]:
    result = await client.call_tool("whoami", {})
    assert not result.is_error, result
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.gen_test(timeout=30)
async def test_a_session_opened_on_one_host_is_used_on_the_other(serve, servers_dir, redis_server):
    a, b = two_hosts(serve, servers_dir, redis_server.url)
    board = Switchboard(a.port)
    async with client_through(board) as client:
        opened = await whoami(client)
        board.port = b.port
        assert await whoami(client) == opened  # the same session, caller and key, now served by B
        echoed = await client.call_tool("echo", {"message": "from B"})
        assert echoed.content[0].text == "from B"
        assert "echo" in {tool.name for tool in (await client.list_tools()).tools}
        board.port = a.port
        assert (await client.call_tool("echo", {"message": "back on A"})).content[0].text == "back on A"
    assert {port for method, port, _ in board.sent if method == "POST"} == {a.port, b.port}


@pytest.mark.gen_test(timeout=30)
async def test_the_get_stream_on_one_host_hears_a_call_served_by_the_other(serve, servers_dir, redis_server):
    a, b = two_hosts(serve, servers_dir, redis_server.url)
    board = Switchboard(a.port)
    heard: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            heard.put_nowait(message)

    async def announced() -> bool:
        await client.call_tool("announce", {})
        try:
            await asyncio.wait_for(heard.get(), 0.3)
        except TimeoutError:
            return False
        return True

    async with client_through(board, message_handler=on_message) as client:
        # The client opens its GET stream on its own after initialize: on A, where it stays.
        await eventually(announced, timeout=10, interval=0, message="no notification on the GET stream")
        assert [port for method, port, _ in board.sent if method == "GET"] == [a.port]
        board.port = b.port
        await client.call_tool("announce", {})  # served by B; the GET stream is read on A
        await asyncio.wait_for(heard.get(), 5)
    assert [port for method, port, _ in board.sent if method == "GET"] == [a.port]


def _events(lines: Iterator[str], count: int) -> list[tuple[str, dict[str, Any] | None]]:
    """The next `count` SSE events of a streamed response's lines: (id, message or None when empty)."""
    events: list[tuple[str, dict[str, Any] | None]] = []
    event_id, data = "", ""
    for line in lines:
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif line == "" and event_id:
            events.append((event_id, json.loads(data) if data else None))
            event_id, data = "", ""
            if len(events) == count:
                break
    return events


def _headers(session_id: str | None = None) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {token()}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": PROTOCOL,
    }
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
    return headers


def _initialize() -> dict[str, Any]:
    params = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}


def _open_session(base_url: str) -> str:
    opened = httpx2.post(f"{base_url}/everything/mcp", json=_initialize(), headers=_headers())
    assert opened.status_code == 200, opened.text
    session_id = opened.headers["Mcp-Session-Id"]
    ready = httpx2.post(
        f"{base_url}/everything/mcp",
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=_headers(session_id),
    )
    assert ready.status_code == 202
    return session_id


def _call(base_url: str, session_id: str, tool: str, request_id: int) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": {}}}
    return httpx2.post(f"{base_url}/everything/mcp", json=body, headers=_headers(session_id))


def test_a_get_stream_resumes_on_the_other_host_with_last_event_id(serve, servers_dir, redis_server):
    a, b = two_hosts(serve, servers_dir, redis_server.url)
    session_id = _open_session(a.base_url)
    with httpx2.stream("GET", f"{a.base_url}/everything/mcp", headers=_headers(session_id)) as stream:
        lines = stream.iter_lines()
        ((primed, empty),) = _events(lines, 1)  # the priming event: an id to resume from
        assert empty is None
        assert _call(b.base_url, session_id, "announce", 2).status_code == 200
        ((first, heard),) = _events(lines, 1)
        assert heard == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    # The client lost its stream; meanwhile two more events happen (on A, the other host).
    for request_id in (3, 4):
        assert _call(a.base_url, session_id, "announce", request_id).status_code == 200
    headers = {**_headers(session_id), "Last-Event-ID": first}
    with httpx2.stream("GET", f"{b.base_url}/everything/mcp", headers=headers, timeout=10) as resumed:
        assert resumed.status_code == 200
        replayed = _events(resumed.iter_lines(), 2)
    assert [message for _, message in replayed] == [heard, heard]
    assert first not in [event_id for event_id, _ in replayed]
    assert len({primed, first, *(event_id for event_id, _ in replayed)}) == 4


@pytest.mark.gen_test(timeout=30)
async def test_a_sampling_answer_posted_to_the_other_host_reaches_the_waiting_call(serve, servers_dir, redis_server):
    a, b = two_hosts(serve, servers_dir, redis_server.url)
    board = Switchboard(a.port)

    async def sample(context: Any, params: Any) -> types.CreateMessageResult:
        board.port = b.port  # the answer goes to B; the call waits for it on A
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="old pond"), model="test-model"
        )

    async with client_through(board, sampling_callback=sample) as client:
        result = await client.call_tool("haiku", {})
    assert result.content[0].text == "model said: old pond"
    posts = [(port, body) for method, port, body in board.sent if method == "POST"]
    call_port = next(port for port, body in posts if b'"tools/call"' in body)
    answer_port = next(port for port, body in posts if b'"result"' in body and b"old pond" in body)
    assert (call_port, answer_port) == (a.port, b.port)


@pytest.mark.gen_test(timeout=40)
async def test_a_session_carries_on_when_its_host_is_killed(serve, servers_dir, redis_server):
    a, b = two_hosts(serve, servers_dir, redis_server.url)
    board = Switchboard(a.port)
    heard: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            heard.put_nowait(message)

    async with client_through(board, message_handler=on_message) as client:
        before = await whoami(client)
        board.port = b.port
        a.proc.send_signal(signal.SIGKILL)
        assert a.wait_exit(10) is not None
        assert await whoami(client) == before
        # Its GET stream broke with host A; the client comes back for it (Last-Event-ID), on B.
        await client.call_tool("announce", {})
        await asyncio.wait_for(heard.get(), 15)
    assert b.port in [port for method, port, _ in board.sent if method == "GET"]


def test_redis_stopped_means_503_then_service_resumes_by_itself(serve, servers_dir, own_redis):
    a, b = two_hosts(serve, servers_dir, own_redis.url)
    session_id = _open_session(a.base_url)
    own_redis.stop()
    try:
        refused = _call(b.base_url, session_id, "echo", 2)  # B has no copy and cannot read the record
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        opening = httpx2.post(f"{a.base_url}/everything/mcp", json=_initialize(), headers=_headers())
        assert opening.status_code == 503
        assert "Retry-After" in opening.headers
        assert health(a.base_url)["status"] == "ok"  # the hosts stay up
        assert health(b.base_url)["status"] == "ok"
        local = _call(a.base_url, session_id, "whoami", 3)  # A's own copy serves on meanwhile
        assert local.status_code == 200, local.text
    finally:
        own_redis.start()

    def served_by_b() -> bool:
        return _call(b.base_url, session_id, "whoami", 4).status_code == 200

    wait_until(served_by_b, timeout=15, message="B never served the session once Redis was back")
    assert _open_session(b.base_url)


def test_the_per_user_cap_holds_across_hosts(serve, servers_dir, redis_server):
    a, b = two_hosts(serve, servers_dir, redis_server.url, MCP_MAX_SESSIONS_PER_USER="2")
    first = _open_session(a.base_url)
    assert _open_session(b.base_url)
    assert _call(b.base_url, first, "whoami", 2).status_code == 200
    assert _open_session(b.base_url)  # the third of this caller: the longest-idle one ends
    wait_until(lambda: _call(a.base_url, first, "whoami", 3).status_code == 404, message="evicted session lived on")
    assert _call(b.base_url, first, "whoami", 4).status_code == 404


def test_the_store_keeps_no_key_and_another_key_cannot_take_the_session_elsewhere(serve, servers_dir, redis_server):
    """A record holds neither the token nor its apiKey (a reader of Redis learns neither); the
    host rebuilding a session gets the key back from the request's own token, and a token of
    the same user with another key the server also accepts is refused there, as on the first host."""
    a, b = two_hosts(serve, servers_dir, redis_server.url)
    session_id = _open_session(a.base_url)
    with redis.Redis.from_url(redis_server.url) as store:
        stored = b"".join(store.get(key) or b"" for key in store.scan_iter("mcpt:s:*"))
    assert stored and b"plain-key" not in stored and b"eyJ" not in stored  # no key, no JWT
    other_key = {**_headers(session_id), "Authorization": f"Bearer {token(api_key='secret')}"}
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    refused = httpx2.post(f"{b.base_url}/everything/mcp", json=body, headers=other_key)
    assert refused.status_code == 403, refused.text
    served = _call(b.base_url, session_id, "whoami", 3)
    assert served.status_code == 200 and "plain-key" in served.text  # the session's own key, back on B
