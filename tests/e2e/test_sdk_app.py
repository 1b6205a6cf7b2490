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
