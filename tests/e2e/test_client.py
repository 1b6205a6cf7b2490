"""End to end with the official `mcp` client: what a real MCP client sees."""

from __future__ import annotations

import asyncio

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from tests.conftest import eventually, mcp_client, token


@pytest.fixture
def url(base_url: str) -> str:
    return f"{base_url}/everything/mcp"


@pytest.mark.gen_test
async def test_initialize_names_the_server_and_its_capabilities(base_url):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token()}"}) as http:
        from mcp.client.streamable_http import streamable_http_client

        async with streamable_http_client(f"{base_url}/everything/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as client:
                init = await client.initialize()
    assert init.protocol_version == "2025-11-25"
    assert init.server_info.name == "everything"
    assert init.server_info.version == "2.0.0"
    assert init.capabilities.tools is not None and init.capabilities.tools.list_changed
    assert init.capabilities.resources is not None
    assert init.capabilities.prompts is not None


@pytest.mark.gen_test
async def test_tools_list_and_call(url):
    async with mcp_client(url) as client:
        tools = await client.list_tools()
        assert {"echo", "slow", "wait", "boom"} <= {t.name for t in tools.tools}
        echo = next(t for t in tools.tools if t.name == "echo")
        assert echo.input_schema["required"] == ["message"]
        result = await client.call_tool("echo", {"message": "hi there"})
        assert not result.is_error
        assert result.content[0].text == "hi there"


@pytest.mark.gen_test
async def test_the_handler_knows_who_calls(url):
    async with mcp_client(url, token(api_key="plain-key", user="grace")) as client:
        result = await client.call_tool("whoami", {})
    assert result.structured_content["user_id"] == "grace"
    assert result.structured_content["api_key"] == "plain-key"
    assert result.structured_content["server"] == "everything"
    assert result.structured_content["session_id"]


@pytest.mark.gen_test
async def test_bad_arguments_and_raising_handlers_are_tool_errors(url):
    async with mcp_client(url) as client:
        bad = await client.call_tool("echo", {"message": 42})
        assert bad.is_error and "Invalid arguments" in bad.content[0].text
        boom = await client.call_tool("boom", {})
        assert boom.is_error and "kaboom" in boom.content[0].text
        assert "Traceback" not in boom.content[0].text
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("no-such-tool", {})
        assert unknown.value.error.code == types.INVALID_PARAMS
        # The server is still fine afterwards.
        assert (await client.call_tool("echo", {"message": "still here"})).content[0].text == "still here"


@pytest.mark.gen_test
async def test_progress_and_log_messages_arrive_during_the_call(url):
    logs: list[types.LoggingMessageNotificationParams] = []
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with mcp_client(url, logging_callback=on_log) as client:
        result = await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
    assert result.content[0].text == "done 3 steps"
    assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert [entry.data for entry in logs] == ["did step 1", "did step 2", "did step 3"]


@pytest.mark.gen_test
async def test_logging_set_level_filters_messages(url):
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async with mcp_client(url, logging_callback=on_log) as client:
        with pytest.warns(MCPDeprecationWarning):  # deprecated only from 2026-07-28 on
            await client.set_logging_level("warning")
        await client.call_tool("slow", {"steps": 2})
    assert logs == []


@pytest.mark.gen_test
async def test_sync_handler_reports_progress(url):
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with mcp_client(url) as client:
        result = await client.call_tool("sync_progress", {}, progress_callback=on_progress)
    assert result.content[0].text == "sync done"
    assert progress == [1, 2]


@pytest.mark.gen_test
async def test_elicitation_is_answered_by_the_client(url):
    async def elicit(context, params):
        assert params.message == "What is your name?"
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async with mcp_client(url, elicitation_callback=elicit) as client:
        result = await client.call_tool("ask_name", {})
    assert result.content[0].text == "Hello, Ada!"


@pytest.mark.gen_test
async def test_sampling_is_answered_by_the_client(url):
    async def sample(context, params):
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="old pond"), model="test-model"
        )

    async with mcp_client(url, sampling_callback=sample) as client:
        result = await client.call_tool("haiku", {})
    assert result.content[0].text == "model said: old pond"


@pytest.mark.gen_test(timeout=15)
async def test_cancellation_stops_the_handler(url):
    async with mcp_client(url) as client:
        before = (await client.call_tool("cancellations", {})).structured_content["cancelled"]
        with anyio.move_on_after(0.3):
            await client.call_tool("wait", {"seconds": 30})

        async def cancelled() -> bool:
            return (await client.call_tool("cancellations", {})).structured_content["cancelled"] == before + 1

        await eventually(cancelled, message="the handler was never cancelled")
        assert (await client.call_tool("echo", {"message": "after"})).content[0].text == "after"


@pytest.mark.gen_test(timeout=15)
async def test_get_stream_receives_session_notifications(url):
    received: asyncio.Queue = asyncio.Queue()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            received.put_nowait(message)

    async with mcp_client(url, message_handler=on_message) as client:
        # The client opens its GET stream on its own after initialize; retry until it is attached.
        async def announced() -> bool:
            await client.call_tool("announce", {})
            try:
                await asyncio.wait_for(received.get(), 0.2)
            except TimeoutError:
                return False
            return True

        await eventually(announced, interval=0, message="no notification on the GET stream")


@pytest.mark.gen_test
async def test_resources_prompts_and_completion(url):
    async with mcp_client(url, token(user="lin")) as client:
        resources = await client.list_resources()
        assert {str(r.uri) for r in resources.resources} == {"memo://readme", "memo://clock"}
        readme = await client.read_resource("memo://readme")
        assert readme.contents[0].text == "# Hello from a resource"
        clock = await client.read_resource("memo://clock")
        assert clock.contents[0].text == "clock for lin"
        with pytest.raises(MCPError) as missing:
            await client.read_resource("memo://missing")
        assert missing.value.error.code == types.INVALID_PARAMS  # as the SDK answers it (SEP-2164)
        prompts = await client.list_prompts()
        assert [p.name for p in prompts.prompts] == ["greet"]
        prompt = await client.get_prompt("greet", {"who": "Ada", "mood": "cheerful"})
        assert prompt.messages[0].content.text == "Say hello to Ada in a cheerful way."
        with pytest.raises(MCPError):
            await client.get_prompt("greet", {})
        completion = await client.complete(
            types.PromptReference(type="ref/prompt", name="greet"), {"name": "who", "value": "A"}
        )
        assert completion.completion.values == ["Ada", "Alan"]
        await client.send_ping()


@pytest.mark.gen_test
async def test_tools_list_is_paginated(base_url, gateway, servers_dir):
    lines = ["name: many", "tools:"]
    lines += [f"  - {{name: t{i:03}, handler: 'everything_tools:echo'}}" for i in range(250)]
    (servers_dir / "many.yaml").write_text("\n".join(lines))
    await gateway.registry.load_file(servers_dir / "many.yaml")
    async with mcp_client(f"{base_url}/many/mcp", token("many", api_key=None)) as client:
        names, cursor = [], None
        while True:
            page = await client.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
            names += [t.name for t in page.tools]
            cursor = page.next_cursor
            if cursor is None:
                break
    assert names == [f"t{i:03}" for i in range(250)]


@pytest.mark.gen_test(timeout=20)
async def test_a_blocking_handler_does_not_stall_other_calls(url, base_url):
    async with mcp_client(url) as client, mcp_client(f"{base_url}/other/mcp", token("other", api_key=None)) as other:
        blocking = asyncio.ensure_future(client.call_tool("blocking", {"seconds": 5}))
        await asyncio.sleep(0)
        for i in range(5):
            assert (await other.call_tool("ping_other", {"message": f"m{i}"})).content[0].text == f"m{i}"
            assert (await client.call_tool("echo", {"message": "same server"})).content[0].text == "same server"
        assert not blocking.done(), "the other calls should have been answered while the handler blocked"
        assert (await blocking).content[0].text == "unblocked"


@pytest.mark.gen_test
async def test_alias_route(base_url):
    async with mcp_client(f"{base_url}/mcp/everything") as client:
        assert (await client.call_tool("echo", {"message": "alias"})).content[0].text == "alias"


@pytest.mark.gen_test
async def test_an_async_handler_that_never_returns_times_out(base_url, gateway, servers_dir):
    (servers_dir / "slowpoke.yaml").write_text(
        "timeout: 0.3\ntools:\n  - {name: wait, handler: 'everything_tools:wait'}\n"
    )
    await gateway.registry.load_file(servers_dir / "slowpoke.yaml")
    async with mcp_client(f"{base_url}/slowpoke/mcp", token("slowpoke", api_key=None)) as client:
        result = await client.call_tool("wait", {})
    assert result.is_error and "timed out after 0.3 s" in result.content[0].text
