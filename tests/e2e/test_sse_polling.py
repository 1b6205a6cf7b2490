"""SSE polling (SEP-1699): a server may end a call's SSE response early; the stream carries a
`retry:` hint, the client comes back with `Last-Event-ID` and misses nothing."""

from __future__ import annotations

import httpx2
import pytest

from tests.conftest import mcp_client, token
from tests.e2e.wire import headers, open_session, sse_events, stream_headers

CALL = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "poll_later", "arguments": {}}}


def _frames(text: str) -> list[dict[str, str]]:
    frames = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if fields:
            frames.append(fields)
    return frames


@pytest.mark.gen_test(timeout=20)
async def test_a_stream_closed_by_the_server_is_resumed_with_nothing_lost(base_url):
    url = f"{base_url}/everything/mcp"
    call = {**CALL, "params": {**CALL["params"], "_meta": {"progressToken": "p"}}}
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        first = await http.post(url, json=call, headers=headers(session=session, version="2025-11-25"))
        frames = _frames(first.text)
        assert frames[0]["retry"] == "1000" and frames[0]["data"] == ""  # priming: an id and when to come back
        before = [e["data"] for e in sse_events(first.text)]
        assert [m["params"]["message"] for m in before] == ["before the break"]  # the response ended early
        resumed = await http.get(url, headers=stream_headers(session, frames[-1]["id"]))
        after = [e["data"] for e in sse_events(resumed.text)]
    assert after[0]["params"]["message"] == "after the break"
    assert after[-1] == {
        "jsonrpc": "2.0",
        "id": 5,
        "result": {"content": [{"type": "text", "text": "polled"}], "isError": False},
    }


@pytest.mark.gen_test(timeout=20)
async def test_the_official_client_rides_over_a_closed_stream(base_url):
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with mcp_client(f"{base_url}/everything/mcp") as client:
        result = await client.call_tool("poll_later", {}, progress_callback=on_progress)
    assert result.content[0].text == "polled" and progress == [1, 2]


@pytest.mark.gen_test(timeout=20)
async def test_older_clients_get_their_answer_on_the_one_response(base_url):
    """Before 2025-11-25 a client cannot resume: the stream is not closed early for it."""
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token(), version="2025-06-18")
        response = await http.post(url, json=CALL, headers=headers(session=session, version="2025-06-18"))
    assert response.json()["result"]["content"][0]["text"] == "polled"
