"""Server-to-client requests: the handler's own timeout, and requests on the GET stream.

Written to kill mutants (tests/MUTANTS.md) in mcp_tornado/transport/session.py and
mcp_tornado/transport/exchange.py: the timeout a handler gives the SDK for a request of its own
reaches the wait for the client's answer, the handler hears why it gave up, and a request made
outside any call goes out on the session's GET stream (or fails at once without one).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest

from tests.conftest import token
from tests.e2e.wire import headers, open_session, read_events, sse_events, stream_headers

IMPATIENT_MODULE = """\
import mcp_types as types
from mcp.shared.message import ServerMessageMetadata


async def impatient(arguments, context):
    try:
        await context.session.send_request(
            types.PingRequest(),
            types.EmptyResult,
            request_read_timeout_seconds=arguments.get("patience", 0.3),
            metadata=ServerMessageMetadata(related_request_id=context.request_id),
        )
    except Exception as exc:
        return f"gave up: {exc}"
    return "answered"


# The same, but not on behalf of the call: the request goes out on the session's GET stream.
async def lonely(arguments, context):
    try:
        await context.session.send_request(types.PingRequest(), types.EmptyResult, request_read_timeout_seconds=10)
    except Exception as exc:
        return f"gave up: {exc}"
    return "answered"
"""
IMPATIENT = """\
tools:
  - name: impatient
    handler: impatient_tools:impatient
    inputSchema: {type: object, properties: {patience: {type: number}}}
  - name: lonely
    handler: impatient_tools:lonely
"""


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    (servers_dir / "impatient_tools.py").write_text(IMPATIENT_MODULE)
    (servers_dir / "impatient.yaml").write_text(IMPATIENT)
    return servers_dir


@pytest.mark.gen_test(timeout=20)
async def test_a_request_to_the_client_gives_up_after_the_handlers_timeout(base_url):
    url = f"{base_url}/impatient/mcp"
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "impatient", "arguments": {}}}
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token("impatient", api_key=None))
        response = await http.post(url, json=call, headers=headers(session=session))
    assert response.status_code == 200
    events = [event["data"] for event in sse_events(response.text)]
    # The server's ping went out on the call's stream, unanswered; then the call's result.
    assert events[0]["method"] == "ping" and events[0]["id"].startswith("mcpt-")
    assert events[-1]["id"] == 2
    assert events[-1]["result"]["content"][0]["text"] == "gave up: client did not answer ping in 0.3 s"


@pytest.mark.gen_test(timeout=20)
async def test_an_answered_request_to_the_client_returns_its_answer(base_url):
    """The client answers the ping on the same session before the timeout: the handler goes on."""
    url = f"{base_url}/impatient/mcp"
    call = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "impatient", "arguments": {"patience": 10}},
    }
    async with httpx2.AsyncClient(timeout=15) as http:
        session = await open_session(http, url, token("impatient", api_key=None))
        async with http.stream("POST", url, json=call, headers=headers(session=session)) as stream:
            buffer = ""
            answered = False
            async for chunk in stream.aiter_text():
                buffer += chunk
                events = sse_events(buffer[: buffer.rfind("\n\n") + 2]) if "\n\n" in buffer else []
                pings = [e["data"] for e in events if e["data"].get("method") == "ping"]
                if pings and not answered:
                    answer = {"jsonrpc": "2.0", "id": pings[0]["id"], "result": {}}
                    posted = await http.post(url, json=answer, headers=headers(session=session))
                    assert posted.status_code == 202
                    answered = True
                results = [e["data"] for e in events if e["data"].get("id") == 3]
                if results:
                    assert results[0]["result"]["content"][0]["text"] == "answered"
                    break
            else:
                raise AssertionError(f"the call never ended: {buffer!r}")


LONELY = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "lonely", "arguments": {}}}


@pytest.mark.gen_test(timeout=20)
async def test_a_request_outside_any_call_goes_out_on_the_get_stream(base_url):
    url = f"{base_url}/impatient/mcp"
    async with httpx2.AsyncClient(timeout=15) as http:
        session = await open_session(http, url, token("impatient", api_key=None))
        async with http.stream("GET", url, headers=stream_headers(session)) as stream:
            assert stream.status_code == 200
            call = asyncio.ensure_future(http.post(url, json=LONELY, headers=headers(session=session)))
            ping = (await asyncio.wait_for(read_events(stream, 1), 10))[0]["data"]
            assert ping["method"] == "ping"
            answer = {"jsonrpc": "2.0", "id": ping["id"], "result": {}}
            assert (await http.post(url, json=answer, headers=headers(session=session))).status_code == 202
            response = await asyncio.wait_for(call, 10)
    assert response.json()["result"]["content"][0]["text"] == "answered"


@pytest.mark.gen_test(timeout=20)
async def test_a_request_outside_any_call_without_a_get_stream_fails_at_once(base_url):
    url = f"{base_url}/impatient/mcp"
    async with httpx2.AsyncClient(timeout=15) as http:
        session = await open_session(http, url, token("impatient", api_key=None))
        response = await http.post(url, json=LONELY, headers=headers(session=session))
    text = response.json()["result"]["content"][0]["text"]
    assert text.startswith("gave up: Cannot send 'ping'") and "no back-channel" in text


async def events_of(stream: httpx2.Response):
    """The events of a streaming SSE response, one by one (priming events skipped)."""
    buffer = ""
    async for chunk in stream.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            for event in sse_events(block + "\n\n"):
                yield event["data"]


@pytest.mark.gen_test(timeout=20)
async def test_an_error_answer_from_the_client_reaches_the_handler(base_url):
    url = f"{base_url}/impatient/mcp"
    arguments = {"patience": 10}
    call = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "impatient", "arguments": arguments}}
    async with httpx2.AsyncClient(timeout=15) as http:
        session = await open_session(http, url, token("impatient", api_key=None))
        async with http.stream("POST", url, json=call, headers=headers(session=session)) as stream:
            events = events_of(stream)
            ping = await asyncio.wait_for(anext(events), 10)
            refusal = {"jsonrpc": "2.0", "id": ping["id"], "error": {"code": -32601, "message": "no pings here"}}
            assert (await http.post(url, json=refusal, headers=headers(session=session))).status_code == 202
            result = await asyncio.wait_for(anext(events), 10)
    assert result["id"] == 8 and result["result"]["content"][0]["text"] == "gave up: no pings here"
