"""Server-to-client requests that the client leaves unanswered: the handler's own timeout.

Written to kill mutants (tests/MUTANTS.md) in mcp_tornado/transport/session.py and
mcp_tornado/transport/exchange.py: the timeout a handler gives the SDK for a request of its own
reaches the wait for the client's answer, and the handler hears why it gave up.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from tests.conftest import token
from tests.e2e.wire import headers, open_session, sse_events

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
"""
IMPATIENT = """\
tools:
  - name: impatient
    handler: impatient_tools:impatient
    inputSchema: {type: object, properties: {patience: {type: number}}}
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
