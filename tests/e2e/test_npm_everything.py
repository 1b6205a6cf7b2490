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


# What the pinned version (@modelcontextprotocol/server-everything@2026.8.31, see the Makefile)
# offers a client that can sample, elicit and list roots, as the gateway's link to it can.
TOOLS = {
    "echo",
    "get-annotated-message",
    "get-env",
    "get-resource-links",
    "get-resource-reference",
    "get-structured-content",
    "get-sum",
    "get-tiny-image",
    "gzip-file-as-resource",
    "toggle-simulated-logging",
    "toggle-subscriber-updates",
    "trigger-long-running-operation",
    # registered once the client's capabilities are known (after initialize)
    "get-roots-list",
    "trigger-elicitation-request",
    "trigger-url-elicitation",
    "trigger-sampling-request",
    "simulate-research-query",
}
PROMPTS = ["simple-prompt", "args-prompt", "completable-prompt", "resource-prompt"]


@pytest.mark.gen_test(timeout=60)
async def test_the_npm_everything_server_through_the_gateway(base_url):
    progress = []

    async def on_progress(value, total, message):
        progress.append((value, total))

    async def sample(context, params):
        assert params.messages[0].content.text == "Resource trigger-sampling-request context: hi"
        assert params.max_tokens == 10
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled!"), model="test"
        )

    async with mcp_client(
        f"{base_url}/npm-everything/mcp", token("npm-everything", api_key=None), sampling_callback=sample
    ) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == TOOLS, f"missing: {sorted(TOOLS - tools)}, unexpected: {sorted(tools - TOOLS)}"
        echo = await client.call_tool("echo", {"message": "via node"})
        assert echo.content[0].text == "Echo: via node"
        total = await client.call_tool("get-sum", {"a": 2, "b": 3})
        assert total.content[0].text == "The sum of 2 and 3 is 5."
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "demo://resource/static/document/instructions.md" in resources, resources
        assert [p.name for p in (await client.list_prompts()).prompts] == PROMPTS
        done = await client.call_tool(
            "trigger-long-running-operation", {"duration": 0.3, "steps": 3}, progress_callback=on_progress
        )
        assert not done.is_error and "Steps: 3" in done.content[0].text
        assert progress == [(1, 3), (2, 3), (3, 3)]
        sampled = await client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 10})
        assert not sampled.is_error and '"text": "sampled!"' in sampled.content[0].text
