"""Issue [7], scopes: a server's `scopes:` guard the route, a tool's (`tools[].scopes`, or
`tool_scopes:` for any backend) guard the tool.

Decided: a call of a tool whose scopes the token lacks is refused with HTTP 403 and the
`insufficient_scope` challenge (the MCP authorization spec's answer, on which OAuth clients
step up to more scopes; the SDK client surfaces the JSON-RPC error body as the call's error),
and such a tool is left out of `tools/list`: a model is never offered a tool it may not call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e.test_stateless import envelope, modern_headers
from tests.e2e.wire import headers, init_body, open_session
from tests.security.test_sessions import bearer

AS = "https://auth.example.com"
SCOPED = """\
scopes: [mcp:use]
tools:
  - name: echo
    handler: everything_tools:echo
    inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}
  - name: whoami
    handler: everything_tools:whoami
    scopes: [admin]
"""


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    (servers_dir / "scoped.yaml").write_text(SCOPED)
    child = (servers_dir / "child.yaml").read_text()
    (servers_dir / "scopedchild.yaml").write_text(child + "tool_scopes: {add: [math]}\n")
    return servers_dir


def call(tool: str, arguments: dict[str, Any] | None = None, request_id: int = 5) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments or {}},
    }


LIST = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}


def scoped(scope: str | None, **claims: Any) -> str:
    return bearer("scoped", scope=scope, sub="sam", **claims)


# -- the server's scopes ---------------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("settings_overrides", "metadata"),
    [({}, ""), ({"oauth_authorization_servers": (AS,)}, "/.well-known/oauth-protected-resource/scoped/mcp")],
)
async def test_a_token_without_the_servers_scope_is_403_with_the_scope_challenge(base_url, metadata):
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/scoped/mcp", json=init_body(), headers=headers(scoped("other")))
    assert response.status_code == 403
    pointer = f'resource_metadata="{base_url}{metadata}", ' if metadata else ""
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="mcp-tornado", {pointer}error="insufficient_scope", scope="mcp:use"'
    )
    assert response.json()["error"]["message"] == "scoped needs a token with scope mcp:use"


@pytest.mark.gen_test
async def test_a_later_token_without_the_servers_scope_is_refused_on_the_session(base_url):
    url = f"{base_url}/scoped/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, scoped("mcp:use"))
        response = await http.post(url, json=LIST, headers=headers(scoped(None), session=session))
    assert response.status_code == 403 and 'scope="mcp:use"' in response.headers["WWW-Authenticate"]


# -- a tool's scopes --------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_tool_call_without_the_tools_scope_is_refused_with_403(base_url):
    url = f"{base_url}/scoped/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, scoped("mcp:use"))
        response = await http.post(url, json=call("whoami", request_id=9), headers=headers(session=session))
        assert response.status_code == 403
        assert response.headers["WWW-Authenticate"] == (
            'Bearer realm="mcp-tornado", error="insufficient_scope", scope="admin mcp:use"'
        )
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": 9,
            "error": {"code": -32600, "message": "tool 'whoami' needs a token with scope admin"},
        }
        allowed = await http.post(url, json=call("echo", {"message": "hi"}), headers=headers(session=session))
        assert allowed.status_code == 200 and allowed.json()["result"]["content"][0]["text"] == "hi"


@pytest.mark.gen_test
async def test_a_tool_the_token_may_not_call_is_hidden_from_tools_list(base_url):
    url = f"{base_url}/scoped/mcp"
    async with httpx2.AsyncClient() as http:
        narrow = await open_session(http, url, scoped("mcp:use"))
        wide = await open_session(http, url, scoped("mcp:use admin"))
        seen = {}
        for name, session in (("narrow", narrow), ("wide", wide)):
            listed = await http.post(url, json=LIST, headers=headers(session=session))
            seen[name] = [tool["name"] for tool in listed.json()["result"]["tools"]]
    assert seen == {"narrow": ["echo"], "wide": ["echo", "whoami"]}


@pytest.mark.gen_test
async def test_with_the_tools_scope_the_call_succeeds_for_the_sdk_client(base_url):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {scoped('admin mcp:use')}"}) as http:
        async with streamable_http_client(f"{base_url}/scoped/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                answer = await session.call_tool("whoami", {})
    assert not answer.is_error and answer.structured_content["server"] == "scoped"


@pytest.mark.gen_test
async def test_the_sdk_client_sees_the_refusal_as_the_calls_error(base_url):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {scoped('mcp:use')}"}) as http:
        async with streamable_http_client(f"{base_url}/scoped/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                with pytest.raises(MCPError, match="needs a token with scope admin"):
                    await session.call_tool("whoami", {})
                assert (await session.call_tool("echo", {"message": "still here"})).content[0].text == "still here"


@pytest.mark.gen_test
async def test_a_step_up_token_on_the_session_opens_the_tool(base_url):
    """An OAuth client that got more scopes after a 403 retries on the same session with the
    new token (same identity): the call goes through, and the session lists the tool from then on."""
    url = f"{base_url}/scoped/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, scoped("mcp:use"))
        stepped = await http.post(url, json=call("whoami"), headers=headers(scoped("mcp:use admin"), session=session))
        assert stepped.status_code == 200, stepped.text
        listed = await http.post(url, json=LIST, headers=headers(session=session))
        assert [tool["name"] for tool in listed.json()["result"]["tools"]] == ["echo", "whoami"]


@pytest.mark.gen_test(timeout=30)
async def test_tool_scopes_guard_the_tools_of_other_backends(base_url):
    """`tool_scopes:` on a `command:` server (an SDK child over stdio)."""
    url = f"{base_url}/scopedchild/mcp"
    async with httpx2.AsyncClient(timeout=20) as http:
        session = await open_session(http, url, bearer("scopedchild"))
        listed = await http.post(url, json=LIST, headers=headers(session=session))
        assert "add" not in {tool["name"] for tool in listed.json()["result"]["tools"]}
        assert "pid" in {tool["name"] for tool in listed.json()["result"]["tools"]}
        refused = await http.post(url, json=call("add", {"a": 1, "b": 2}), headers=headers(session=session))
        assert refused.status_code == 403 and 'scope="math"' in refused.headers["WWW-Authenticate"]

        session = await open_session(http, url, bearer("scopedchild", scope="math"))
        added = await http.post(url, json=call("add", {"a": 1, "b": 2}), headers=headers(session=session))
        assert added.status_code == 200 and added.json()["result"]["content"][0]["text"] == "3.0"


@pytest.mark.gen_test
async def test_stateless_requests_are_held_to_the_tools_scopes_too(base_url):
    url = f"{base_url}/scoped/mcp"
    body = envelope("tools/call", {"name": "whoami", "arguments": {}})
    async with httpx2.AsyncClient() as http:
        refused = await http.post(url, json=body, headers=modern_headers("tools/call", scoped("mcp:use"), "whoami"))
        assert refused.status_code == 403 and "insufficient_scope" in refused.headers["WWW-Authenticate"]
        listed = await http.post(
            url, json=envelope("tools/list"), headers=modern_headers("tools/list", scoped("mcp:use"))
        )
        assert [tool["name"] for tool in listed.json()["result"]["tools"]] == ["echo"]
        allowed = await http.post(
            url, json=body, headers=modern_headers("tools/call", scoped("mcp:use admin"), "whoami")
        )
        assert allowed.status_code == 200, allowed.text
