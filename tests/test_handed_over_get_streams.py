"""What a session's GET stream holds once its response has taken the connection over
(`SseResponse(hand_over=True)`): no handler and no request, which is the point (about 10 KB a
stream); the stream itself still works."""

from __future__ import annotations

import gc

import httpx2
import pytest

from mcp_tornado.handlers.mcp import McpHandler
from tests.conftest import eventually, token
from tests.e2e.wire import open_session, stream_headers


def live_get_handlers() -> list[McpHandler]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, McpHandler) and o.request.method == "GET"]


@pytest.mark.gen_test(timeout=30)
async def test_an_open_get_stream_keeps_no_handler_or_request_alive(base_url):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        get = {**stream_headers(session), "Authorization": f"Bearer {token()}"}
        async with http.stream("GET", url, headers=get) as response:
            assert response.status_code == 200
            assert response.headers["connection"] == "close"

            async def handler_gone() -> bool:
                return not live_get_handlers()

            await eventually(handler_gone, message="the GET stream's handler is still alive")
            # The stream is still the session's: a notification sent to it arrives.
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "announce", "arguments": {}}}
            headers = {**get, "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
            async with httpx2.AsyncClient(timeout=10) as other:
                assert (await other.post(url, json=call, headers=headers)).status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data:") and "notifications/" in line:
                    break
