"""Curated tools (`tools: {include, exclude, rename, override}`, and the same for prompts and
resources) on every backend, seen and called through the official client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_tornado import auth
from tests.conftest import SECRET, eventually, mcp_client, token
from tests.e2e.test_remote import Upstream
from tests.security.test_sessions import bearer

IN_PROCESS = """\
tools:
  define:
    - name: echo
      description: Echo a message back
      inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}
      handler: everything_tools:echo
    - {name: whoami, description: Who the caller is, handler: everything_tools:whoami}
    - {name: boom, description: Raises, handler: everything_tools:boom}
    - {name: announce, handler: everything_tools:announce}
  exclude: [boom]
  rename: {echo: repeat}
  override:
    whoami: {title: Caller, description: Who is calling, annotations: {readOnlyHint: true}}
"""

CHILD = """\
command: ["${MCP_TEST_PYTHON}", stdio_child.py]
start: lazy
timeout: 5
tools:
  include: [add, "c*", announce]
  exclude: [cancelled]
  rename: {add: plus}
  override:
    count: {description: Count out loud, annotations: {readOnlyHint: true}}
resources:
  exclude: ["child://stuck"]
"""


async def unknown_tool_error(client, name: str) -> tuple[int, str]:
    with pytest.raises(MCPError) as refused:
        await client.call_tool(name, {})
    return refused.value.error.code, refused.value.error.message


async def admin_view(base_url: str, name: str) -> dict:
    admin = auth.mint(SECRET, admin=True, ttl=600)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {admin}"}) as http:
        response = await http.get(f"{base_url}/servers/{name}")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def curated(servers_dir: Path) -> Path:
    (servers_dir / "curated.yaml").write_text(IN_PROCESS)
    (servers_dir / "curatedchild.yaml").write_text(CHILD)
    return servers_dir


@pytest.mark.gen_test(timeout=30)
async def test_an_in_process_server_serves_its_curated_tools(curated, base_url):
    async with mcp_client(f"{base_url}/curated/mcp", token("curated", api_key=None)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"repeat", "whoami", "announce"}
        assert tools["repeat"].description == "Echo a message back"
        assert tools["repeat"].input_schema["required"] == ["message"]
        assert (tools["whoami"].title, tools["whoami"].description) == ("Caller", "Who is calling")
        assert tools["whoami"].annotations.read_only_hint is True
        assert (await client.call_tool("repeat", {"message": "hi"})).content[0].text == "hi"
        nothing = await unknown_tool_error(client, "no_such_tool")
        for hidden in ("echo", "boom"):  # renamed away, excluded: as unknown as a made-up name
            assert await unknown_tool_error(client, hidden) == (nothing[0], nothing[1].replace("no_such_tool", hidden))
        assert nothing == (types.INVALID_PARAMS, "Unknown tool: no_such_tool")
    assert (await admin_view(base_url, "curated"))["tools"] == ["repeat", "whoami", "announce"]


@pytest.mark.gen_test(timeout=30)
async def test_a_stdio_child_serves_its_curated_tools_and_resources(curated, base_url):
    async with mcp_client(f"{base_url}/curatedchild/mcp", token("curatedchild", api_key=None)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"plus", "count", "announce"}
        assert tools["plus"].description == "Add two numbers."
        assert tools["count"].description == "Count out loud"
        assert tools["count"].annotations.read_only_hint is True
        assert (await client.call_tool("plus", {"a": 2, "b": 40})).structured_content == {"result": 42.0}
        for hidden in ("add", "pid", "cancelled", "sleep"):  # renamed away, not included, excluded
            assert await unknown_tool_error(client, hidden) == (types.INVALID_PARAMS, f"Unknown tool: {hidden}")
        assert [str(r.uri) for r in (await client.list_resources()).resources] == []
        with pytest.raises(MCPError) as refused:
            await client.read_resource("child://stuck")
        assert (refused.value.error.code, refused.value.error.message) == (types.INVALID_PARAMS, "Resource not found")


@pytest.mark.gen_test(timeout=30)
async def test_list_changed_from_a_curated_child_still_reaches_the_client(curated, base_url):
    received: asyncio.Queue = asyncio.Queue()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            received.put_nowait(message)

    url = f"{base_url}/curatedchild/mcp"
    async with mcp_client(url, token("curatedchild", api_key=None), message_handler=on_message) as client:

        async def announced() -> bool:
            await client.call_tool("announce", {})
            try:
                await asyncio.wait_for(received.get(), 0.2)
            except TimeoutError:
                return False
            return True

        await eventually(announced, interval=0, message="the child's list_changed never arrived")
        assert "plus" in {t.name for t in (await client.list_tools()).tools}


@pytest.mark.gen_test(timeout=30)
async def test_changing_the_curation_changes_what_live_sessions_see(curated, base_url, gateway):
    received: asyncio.Queue = asyncio.Queue()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            received.put_nowait(message)

    async with mcp_client(
        f"{base_url}/curated/mcp", token("curated", api_key=None), message_handler=on_message
    ) as client:

        async def listening() -> bool:  # the client opens its GET stream on its own, a little later
            await client.call_tool("announce", {})
            try:
                await asyncio.wait_for(received.get(), 0.2)
            except TimeoutError:
                return False
            return True

        await eventually(listening, interval=0, message="the GET stream never attached")
        path = curated / "curated.yaml"
        path.write_text(IN_PROCESS.replace("exclude: [boom]", "exclude: [boom, whoami]"))
        await gateway.registry.load_file(path)
        await asyncio.wait_for(received.get(), 5)
        assert {t.name for t in (await client.list_tools()).tools} == {"repeat", "announce"}
        assert await unknown_tool_error(client, "whoami") == (types.INVALID_PARAMS, "Unknown tool: whoami")


@pytest.mark.gen_test(timeout=30)
async def test_an_sdk_app_serves_its_curated_tools_prompts_and_resources(servers_dir, base_url, gateway):
    path = servers_dir / "sdkapp.yaml"
    path.write_text(
        "app: sdk_app:mcp\n"
        "tools: {rename: {multiply: times}, override: {multiply: {description: Times two numbers}}}\n"
        "prompts: {rename: {review: critique}}\n"
        "resources: {exclude: ['sdk://stuck']}\n"
    )
    await gateway.registry.load_file(path)
    async with mcp_client(f"{base_url}/sdkapp/mcp", token("sdkapp", api_key=None)) as client:
        tools = (await client.list_tools()).tools
        assert [(t.name, t.description) for t in tools] == [("times", "Times two numbers")]
        assert (await client.call_tool("times", {"a": 6, "b": 7})).structured_content == {"result": 42.0}
        assert await unknown_tool_error(client, "multiply") == (types.INVALID_PARAMS, "Unknown tool: multiply")
        assert [p.name for p in (await client.list_prompts()).prompts] == ["critique"]
        prompt = await client.get_prompt("critique", {"code": "x = 1"})
        assert "x = 1" in prompt.messages[0].content.text
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("review", {"code": "x = 1"})
        assert refused.value.error.message == "Unknown prompt: review"
        assert [str(r.uri) for r in (await client.list_resources()).resources] == ["sdk://motto"]


@pytest.fixture
def curated_upstream(servers_dir: Path) -> Iterator[Upstream]:
    up = Upstream()
    up.start()
    (servers_dir / "remote.yaml").write_text(
        f"url: {up.url}\nstart: lazy\ntimeout: 5\ntools: {{include: [shout], rename: {{shout: yell}}}}\n"
    )
    yield up
    up.stop()


@pytest.mark.gen_test(timeout=40)
async def test_a_remote_upstream_is_curated_on_every_revision(curated_upstream, base_url, gateway):
    await curated_upstream.wait_listening()
    await gateway.registry.load_file(gateway.settings.servers_dir / "remote.yaml")
    url, bearer = f"{base_url}/remote/mcp", token("remote", api_key=None)
    async with mcp_client(url, bearer) as client:  # a session, served through the gateway's link
        assert [t.name for t in (await client.list_tools()).tools] == ["yell"]
        assert (await client.call_tool("yell", {"text": "hi"})).content[0].text == "HI"
        for hidden in ("shout", "upstream_pid"):
            assert await unknown_tool_error(client, hidden) == (types.INVALID_PARAMS, f"Unknown tool: {hidden}")
    # 2026-07-28: the upstream speaks it, so each request is passed through as it is, curated.
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="auto") as client:
            assert client.protocol_version == "2026-07-28"
            assert [t.name for t in (await client.list_tools()).tools] == ["yell"]
            assert (await client.call_tool("yell", {"text": "quiet"})).content[0].text == "QUIET"
            for hidden in ("shout", "upstream_pid"):
                assert await unknown_tool_error(client, hidden) == (types.INVALID_PARAMS, f"Unknown tool: {hidden}")


@pytest.mark.gen_test(timeout=30)
async def test_tool_scopes_name_tools_as_clients_see_them(curated, base_url, gateway):
    path = curated / "curatedchild.yaml"
    path.write_text(CHILD + "tool_scopes: {plus: [math]}\n")
    await gateway.registry.load_file(path)
    url = f"{base_url}/curatedchild/mcp"
    without = bearer("curatedchild")
    async with mcp_client(url, without) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"count", "announce"}
        with pytest.raises(MCPError, match="needs a token with scope math"):
            await client.call_tool("plus", {"a": 1, "b": 2})
    async with mcp_client(url, bearer("curatedchild", scope="math")) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"plus", "count", "announce"}
        assert (await client.call_tool("plus", {"a": 1, "b": 2})).structured_content == {"result": 3.0}
