"""`app:` hosts an official-SDK MCPServer object with all its tools, resources and prompts."""

from __future__ import annotations

import pytest

from tests.conftest import mcp_client, token


@pytest.mark.gen_test
async def test_an_sdk_mcpserver_is_hosted_whole(base_url):
    async with mcp_client(f"{base_url}/sdkapp/mcp", token("sdkapp", api_key=None)) as client:
        tools = await client.list_tools()
        assert [t.name for t in tools.tools] == ["multiply"]
        result = await client.call_tool("multiply", {"a": 6, "b": 7})
        assert not result.is_error and result.structured_content == {"result": 42.0}
        motto = await client.read_resource("sdk://motto")
        assert motto.contents[0].text == "hosted, not rewritten"
        prompt = await client.get_prompt("review", {"code": "x = 1"})
        assert "x = 1" in prompt.messages[0].content.text


@pytest.mark.gen_test(timeout=20)
async def test_reloading_an_app_announces_its_new_tools(base_url, servers_dir, gateway):
    import asyncio

    import mcp_types as types

    from tests.conftest import eventually

    changed = asyncio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with mcp_client(
        f"{base_url}/sdkapp/mcp", token("sdkapp", api_key=None), message_handler=on_message
    ) as client:
        sessions = gateway.registry.get("sdkapp").sessions
        await eventually(lambda: _value(any(s.standalone.attached for s in sessions)))
        module = servers_dir / "sdk_app.py"
        module.write_text(module.read_text().replace("async def multiply(", "async def times("))
        await asyncio.wait_for(changed.wait(), 10)
        assert [t.name for t in (await client.list_tools()).tools] == ["times"]


async def _value(value: object) -> object:
    return value
