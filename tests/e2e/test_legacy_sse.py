"""Legacy HTTP+SSE clients (the 2024-11-05 transport) on `/{name}/sse` and `/{name}/messages`.

The SDK's own `sse_client` against every backend kind, and a raw client for what it cannot
show: statuses, the endpoint event, keepalive comments, caps, the session's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client

from tests.conftest import eventually, token
from tests.e2e.test_remote import Upstream, serving
from tests.e2e.wire import init_body, open_session


@contextlib.asynccontextmanager
async def legacy_client(url: str, bearer: str | None = None, **session_kwargs: Any) -> AsyncIterator[ClientSession]:
    """The official MCP client over the legacy transport, initialized."""
    async with sse_client(url, headers={"Authorization": f"Bearer {bearer or token()}"}, timeout=30) as (read, write):
        async with ClientSession(read, write, **session_kwargs) as session:
            await session.initialize()
            yield session


class RawStream:
    """A legacy stream read by hand: its events, and POSTs to the endpoint it named."""

    def __init__(self, http: httpx2.AsyncClient, response: httpx2.Response, base_url: str) -> None:
        self.http = http
        self.response = response
        self.base_url = base_url
        self._lines = response.aiter_lines()
        self.endpoint = ""

    async def next_event(self, *, comments: bool = False) -> tuple[str, str]:
        """The next event as (event, data); with `comments`, a comment line is ("comment", text)."""
        event, data = "message", []
        while True:
            line = await asyncio.wait_for(anext(self._lines), 10)
            if line.startswith(":"):
                if comments:
                    return "comment", line[1:].strip()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                return event, "\n".join(data)

    async def next_message(self) -> dict[str, Any]:
        event, data = await self.next_event()
        assert event == "message"
        return json.loads(data)

    async def post(self, message: Any, **headers: str) -> httpx2.Response:
        return await self.http.post(self.endpoint, json=message, headers=headers)

    @property
    def session_id(self) -> str:
        return self.endpoint.rsplit("session_id=", 1)[1]


@contextlib.asynccontextmanager
async def raw_stream(base_url: str, name: str = "everything", bearer: str | None = None) -> AsyncIterator[RawStream]:
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {bearer or token()}"}
    async with httpx2.AsyncClient(timeout=10) as http:
        async with http.stream("GET", f"{base_url}/{name}/sse", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            stream = RawStream(http, response, base_url)
            event, data = await stream.next_event()
            assert event == "endpoint" and data.startswith(f"/{name}/messages?session_id=")
            stream.endpoint = base_url + data
            yield stream


async def initialized(stream: RawStream) -> None:
    assert (await stream.post(init_body("2024-11-05"))).status_code == 202
    answer = await stream.next_message()
    assert answer["id"] == 1 and answer["result"]["protocolVersion"] == "2024-11-05"
    assert (await stream.post({"jsonrpc": "2.0", "method": "notifications/initialized"})).status_code == 202


def call(request_id: int, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments or {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


# -- the SDK's client, on every backend kind ------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_the_sdk_sse_client_uses_an_in_process_server(base_url):
    progress, logs = [], []

    async def on_progress(value, total, message):
        progress.append(value)

    async def on_log(params):
        logs.append(params.data)

    async def elicit(context, params):
        assert params.message == "What is your name?"
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    url = f"{base_url}/everything/sse"
    async with legacy_client(url, token(user="lin"), logging_callback=on_log, elicitation_callback=elicit) as client:
        assert "echo" in {t.name for t in (await client.list_tools()).tools}
        assert (await client.call_tool("echo", {"message": "old"})).content[0].text == "old"
        slow = await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
        assert slow.content[0].text == "done 3 steps"
        assert (await client.call_tool("ask_name", {})).content[0].text == "Hello, Ada!"
        clock = await client.read_resource("memo://clock")
        assert clock.contents[0].text == "clock for lin"
        prompt = await client.get_prompt("greet", {"who": "Ada", "mood": "calm"})
        assert prompt.messages[0].content.text == "Say hello to Ada in a calm way."
    assert progress == [1, 2, 3]
    assert logs == ["did step 1", "did step 2", "did step 3"]


@pytest.mark.gen_test(timeout=30)
async def test_session_notifications_reach_the_legacy_stream(base_url):
    changed = asyncio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with legacy_client(f"{base_url}/everything/sse", message_handler=on_message) as client:
        await client.call_tool("announce", {})
        await asyncio.wait_for(changed.wait(), 5)


@pytest.mark.gen_test(timeout=30)
async def test_a_handler_closing_its_stream_does_not_cut_a_legacy_client_off(base_url):
    """SSE polling (a server ends a stream for the client to resume) has no place here: a legacy
    stream cannot be resumed, so the call's events go on arriving on it."""
    progress = []

    async def on_progress(value, total, message):
        progress.append(message)

    async with legacy_client(f"{base_url}/everything/sse") as client:
        result = await client.call_tool("poll_later", {"pause": 0.05}, progress_callback=on_progress)
        assert result.content[0].text == "polled"
        assert (await client.call_tool("echo", {"message": "still here"})).content[0].text == "still here"
    assert progress == ["before the break", "after the break"]


@pytest.mark.gen_test(timeout=30)
async def test_the_sdk_sse_client_uses_a_stdio_child(base_url):
    progress = []

    async def on_progress(value, total, message):
        progress.append(value)

    async def elicit(context, params):
        return types.ElicitResult(action="accept", content={"colour": "teal"})

    async with legacy_client(f"{base_url}/child/sse", token("child", api_key=None), elicitation_callback=elicit) as c:
        assert (await c.call_tool("add", {"a": 2, "b": 40})).structured_content == {"result": 42.0}
        assert (await c.call_tool("count", {"steps": 2}, progress_callback=on_progress)).content[0].text == "counted 2"
        assert (await c.call_tool("ask", {})).content[0].text == "you said teal"
    assert progress == [1, 2]


@pytest.fixture
def remote(servers_dir: Path) -> Iterator[Upstream]:
    """As test_remote's `upstream`: a remote MCP server the gateway serves at /remote."""
    up = Upstream()
    up.start()
    (servers_dir / "remote.yaml").write_text(f"url: {up.url}\nstart: lazy\ntimeout: 5\n")
    yield up
    up.stop()


@pytest.mark.gen_test(timeout=40)
async def test_the_sdk_sse_client_uses_a_remote_upstream(remote, base_url, gateway):
    await serving(remote, gateway)
    async with legacy_client(f"{base_url}/remote/sse", token("remote", api_key=None)) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"upstream_pid", "shout"}
        assert (await client.call_tool("shout", {"text": "hi"})).content[0].text == "HI"


# -- who may open and use a legacy session --------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("bearer", "status"),
    [("garbage", 401), (token(ttl=-60), 401), (token("other", api_key=None), 403)],
    ids=["malformed", "expired", "another-server"],
)
async def test_the_stream_needs_this_servers_token(base_url, bearer, status):
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(f"{base_url}/everything/sse", headers={"Authorization": f"Bearer {bearer}"})
        assert response.status_code == status
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == types.INVALID_REQUEST
    with pytest.raises(httpx2.HTTPStatusError) as refused:  # what the SDK client makes of it
        async with legacy_client(f"{base_url}/everything/sse", bearer):
            pass
    assert refused.value.response.status_code == status


@pytest.mark.gen_test
async def test_a_session_is_used_only_on_its_route_and_only_while_it_lives(base_url, gateway):
    async with raw_stream(base_url) as stream:
        await initialized(stream)
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        elsewhere = f"{base_url}/other/messages?session_id={stream.session_id}"
        assert (await stream.http.post(elsewhere, json=listing)).status_code == 404
        unknown = f"{base_url}/everything/messages?session_id=no-such-session"
        assert (await stream.http.post(unknown, json=listing)).status_code == 404
        missing = f"{base_url}/everything/messages"
        assert (await stream.http.post(missing, json=listing)).status_code == 400
        other_user = await stream.post(listing, Authorization=f"Bearer {token(user='bob')}")
        assert other_user.status_code == 403
        wrong_type = await stream.http.post(stream.endpoint, content=b"{}", headers={"Content-Type": "text/plain"})
        assert wrong_type.status_code == 415
        not_json = await stream.http.post(stream.endpoint, content=b"{", headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400 and not_json.json()["error"]["code"] == types.PARSE_ERROR
        again = await stream.post(init_body("2024-11-05", request_id=9))
        assert again.status_code == 400
        accepted = await stream.post(listing)
        assert accepted.status_code == 202 and accepted.text == "Accepted"
        answer = await stream.next_message()
        assert answer["id"] == 2 and "echo" in {t["name"] for t in answer["result"]["tools"]}
        hosted = gateway.registry.get("everything")
        assert hosted.sessions.get(stream.session_id) is not None
        endpoint = stream.endpoint
    # The stream closed: the session ended with it.
    await eventually(lambda: _no_sessions(gateway))
    async with httpx2.AsyncClient(timeout=10) as http:
        assert (await http.post(endpoint, json={"jsonrpc": "2.0", "id": 3, "method": "ping"})).status_code == 404


@pytest.mark.gen_test
async def test_a_batchs_answers_arrive_one_message_each(base_url):
    async with raw_stream(base_url) as stream:
        await initialized(stream)  # at 2024-11-05, whose JSON-RPC takes batches
        batch = [call(2, "echo", {"message": "a"}), {"jsonrpc": "2.0", "id": 3, "method": "ping"}]
        assert (await stream.post(batch)).status_code == 202
        answers = {message["id"]: message for message in [await stream.next_message(), await stream.next_message()]}
        assert answers[2]["result"]["content"][0]["text"] == "a" and answers[3]["result"] == {}
        opening = [init_body("2024-11-05", request_id=4), {"jsonrpc": "2.0", "id": 5, "method": "ping"}]
        assert (await stream.post(opening)).status_code == 400


@pytest.mark.gen_test
async def test_a_streamable_http_session_is_not_a_legacy_one(base_url):
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, f"{base_url}/everything/mcp", token())
        response = await http.post(
            f"{base_url}/everything/messages?session_id={session}", json={"jsonrpc": "2.0", "id": 2, "method": "ping"}
        )
        assert response.status_code == 404


async def _no_sessions(gateway) -> bool:
    return len(gateway.registry.get("everything").sessions) == 0


# -- what the stream holds, and for how long ------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"max_in_flight_per_session": 2}])
async def test_requests_past_the_sessions_cap_are_429(base_url):
    async with raw_stream(base_url) as stream:
        await initialized(stream)
        for request_id in (2, 3):
            assert (await stream.post(call(request_id, "wait", {"seconds": 30}))).status_code == 202
        refused = await stream.post(call(4, "echo", {"message": "one too many"}))
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}}
        assert (await stream.post(cancel)).status_code == 202

        async def admitted() -> bool:
            response = await stream.post(call(5, "echo", {"message": "room again"}))
            return response.status_code == 202

        await eventually(admitted)
        answer = await stream.next_message()
        assert answer["id"] == 5 and answer["result"]["content"][0]["text"] == "room again"


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"sse_keepalive_interval": 0.05}])
async def test_an_idle_stream_gets_keepalive_comments(base_url):
    async with raw_stream(base_url) as stream:
        assert await stream.next_event(comments=True) == ("comment", "keepalive")


@pytest.mark.gen_test
async def test_health_counts_the_legacy_session(base_url, gateway):
    async def sessions() -> int:
        async with httpx2.AsyncClient() as http:
            return (await http.get(f"{base_url}/health")).json()["servers"]["everything"]["sessions"]

    async with legacy_client(f"{base_url}/everything/sse"):
        assert await sessions() == 1
    await eventually(lambda: _no_sessions(gateway))
    assert await sessions() == 0
