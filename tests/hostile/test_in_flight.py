"""Item 7: work in flight is bounded per session, per server and per batch.

Before: three batches of 35,000 `tools/call` on one session added 355 MB and held `/health` for
5 s. Now a batch over `MCP_MAX_BATCH` is refused whole (400, -32600), and requests past
`MCP_MAX_IN_FLIGHT_PER_SESSION` / `_PER_SERVER` get 429 with `Retry-After`, while everyone
else is served.
"""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest

from tests.conftest import token
from tests.e2e.wire import headers, open_session

CAPS = {"max_in_flight_per_session": 4, "max_in_flight_per_server": 6, "max_batch": 10}


@pytest.fixture
def settings_overrides():
    return CAPS


def _wait_call(request_id: int, seconds: float = 30) -> dict:
    params = {"name": "wait", "arguments": {"seconds": seconds}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


@pytest.mark.gen_test(timeout=30)
async def test_a_huge_batch_is_refused_whole_and_quickly(base_url):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token(), version="2025-03-26")
        batch = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(35_000)]
        began = time.monotonic()
        response = await http.post(url, json=batch, headers=headers(session=session, version="2025-03-26"))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == -32600 and "limit is 10" in response.json()["error"]["message"]
        assert time.monotonic() - began < 2
        within = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(4)]  # and within the session cap
        response = await http.post(url, json=within, headers=headers(session=session, version="2025-03-26"))
        assert sorted(answer["id"] for answer in response.json()) == list(range(4))


@pytest.mark.gen_test(timeout=30)
async def test_requests_past_the_session_cap_get_429_and_others_are_served(base_url):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient(timeout=30) as http:
        busy = await open_session(http, url, token())
        calm = await open_session(http, url, token(user="grace"))
        pending = [
            asyncio.ensure_future(
                http.post(url, json=_wait_call(i, 2), headers=headers(session=busy, version="2025-11-25"))
            )
            for i in range(4)
        ]
        await asyncio.sleep(0)  # let them go out

        async def refused() -> httpx2.Response:
            while True:
                response = await http.post(
                    url, json=_wait_call(99, 0), headers=headers(session=busy, version="2025-11-25")
                )
                if response.status_code == 429:
                    return response
                await asyncio.sleep(0.02)  # the four were not all in flight yet

        response = await asyncio.wait_for(refused(), 5)
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"]["code"] == -32600
        echo = {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "hi"}},
        }
        other = await http.post(url, json=echo, headers=headers(session=calm, version="2025-11-25"))
        assert other.json()["result"]["content"][0]["text"] == "hi"
        assert (await http.get(f"{base_url}/health")).status_code == 200
        answers = await asyncio.gather(*pending)
        assert [a.json()["result"]["content"][0]["text"] for a in answers] == ["waited"] * 4
        again = await http.post(url, json=echo, headers=headers(session=busy, version="2025-11-25"))
        assert again.status_code == 200


@pytest.mark.gen_test(timeout=30)
async def test_requests_past_the_server_cap_get_429(base_url):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient(timeout=30) as http:
        sessions = [await open_session(http, url, token(user=f"u{i}")) for i in range(2)]
        pending = [
            asyncio.ensure_future(
                http.post(url, json=_wait_call(i, 2), headers=headers(session=sessions[i % 2], version="2025-11-25"))
            )
            for i in range(6)
        ]

        async def refused() -> httpx2.Response:
            while True:
                body = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
                response = await http.post(url, json=body, headers=headers(session=sessions[0], version="2025-11-25"))
                if response.status_code == 429:
                    return response
                await asyncio.sleep(0.02)

        response = await asyncio.wait_for(refused(), 5)
        assert "everything has 6 requests in flight" in response.json()["error"]["message"]
        await open_session(http, f"{base_url}/other/mcp", token("other"))  # another server is not affected
        await asyncio.gather(*pending)
