"""@modelcontextprotocol/server-everything (npm, run with node) behind the gateway, as a stdio child."""

from __future__ import annotations

from pathlib import Path

import mcp_types as types
import pytest

from tests.conftest import EVERYTHING_SERVER, mcp_client, token


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    assert EVERYTHING_SERVER.is_file(), f"{EVERYTHING_SERVER} is missing: `make test` installs it with npm"
    (servers_dir / "npm-everything.yaml").write_text('command: [node, "${MCP_TEST_EVERYTHING}", stdio]\ntimeout: 20\n')
    return servers_dir


@pytest.mark.gen_test(timeout=60)
async def test_the_npm_everything_server_through_the_gateway(base_url):
    progress = []

    async def on_progress(value, total, message):
        progress.append(value)

    async def sample(context, params):
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled!"), model="test"
        )

    async with mcp_client(
        f"{base_url}/npm-everything/mcp", token("npm-everything", api_key=None), sampling_callback=sample
    ) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "get-sum"} <= tools, tools
        echo = await client.call_tool("echo", {"message": "via node"})
        assert "via node" in echo.content[0].text
        total = await client.call_tool("get-sum", {"a": 2, "b": 3})
        assert "5" in total.content[0].text
        resources = await client.list_resources()
        assert resources.resources
        prompts = await client.list_prompts()
        assert prompts.prompts
        if "trigger-long-running-operation" in tools:
            await client.call_tool(
                "trigger-long-running-operation", {"duration": 0.3, "steps": 3}, progress_callback=on_progress
            )
            assert progress == [1, 2, 3]
        if "trigger-sampling-request" in tools:
            sampled = await client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 10})
            assert "sampled!" in str(sampled.content)
