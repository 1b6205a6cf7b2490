"""The 2026-07-28 revision: stateless requests, each with its own envelope and token."""

from __future__ import annotations

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import HEADER_MISMATCH, METHOD_NOT_FOUND

from tests.conftest import token
from tests.e2e.wire import headers

MODERN = "2026-07-28"


def envelope(method: str, params: dict | None = None, request_id: int = 1) -> dict:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "wire", "version": "0"},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": meta}}


def modern_headers(method: str, bearer: str | None = None, name: str | None = None) -> dict[str, str]:
    extra = {"Mcp-Method": method, **({"Mcp-Name": name} if name else {})}
    return headers(bearer or token(), version=MODERN, **extra)


@pytest.mark.gen_test
async def test_official_client_negotiates_the_stateless_revision(base_url):
    progress = []

    async def on_progress(value, total, message):
        progress.append(value)

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token()}"}) as http:
        transport = streamable_http_client(f"{base_url}/everything/mcp", http_client=http)
        async with Client(transport, mode="auto") as client:
            assert client.protocol_version == MODERN
            tools = await client.list_tools()
            assert "echo" in {t.name for t in tools.tools}
            result = await client.call_tool("echo", {"message": "stateless"})
            assert result.content[0].text == "stateless"
            slow = await client.call_tool("slow", {"steps": 2}, progress_callback=on_progress)
            assert slow.content[0].text == "done 2 steps"
    assert progress == [1, 2]


@pytest.mark.gen_test
async def test_raw_stateless_call_needs_no_session(base_url):
    url = f"{base_url}/everything/mcp"
    body = envelope("tools/call", {"name": "whoami", "arguments": {}})
    async with httpx2.AsyncClient() as http:
        response = await http.post(url, json=body, headers=modern_headers("tools/call", token(user="kim"), "whoami"))
        assert response.status_code == 200
        assert "Mcp-Session-Id" not in response.headers
        result = response.json()["result"]
        assert result["structuredContent"]["user_id"] == "kim"
        assert result["structuredContent"]["session_id"] is None


@pytest.mark.gen_test
async def test_stateless_requests_need_a_token_every_time(base_url):
    url = f"{base_url}/everything/mcp"
    no_token = {k: v for k, v in modern_headers("tools/list").items() if k != "Authorization"}
    async with httpx2.AsyncClient() as http:
        response = await http.post(url, json=envelope("tools/list"), headers=no_token)
        assert response.status_code == 401
        other = await http.post(url, json=envelope("tools/list"), headers=modern_headers("tools/list", token("other")))
        assert other.status_code == 403


@pytest.mark.gen_test
async def test_stateless_envelope_and_header_rules(base_url):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        mismatch = await http.post(url, json=envelope("tools/list"), headers=modern_headers("tools/call"))
        assert mismatch.status_code == 400
        assert mismatch.json()["error"]["code"] == HEADER_MISMATCH
        unknown = await http.post(url, json=envelope("no/such"), headers=modern_headers("no/such"))
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == METHOD_NOT_FOUND
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
        assert (await http.post(url, json=note, headers=modern_headers("notifications/cancelled"))).status_code == 202
        get = await http.get(url, headers=modern_headers("tools/list"))
        assert get.status_code == 405 and get.headers["Allow"] == "POST"
