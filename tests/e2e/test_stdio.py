"""`command:` stdio children, called through the gateway with the official client."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import eventually, mcp_client, token


def child_url(base_url: str, name: str = "child") -> str:
    return f"{base_url}/{name}/mcp"


@pytest.mark.gen_test(timeout=30)
async def test_a_stdio_child_is_proxied(base_url):
    progress, logs = [], []

    async def on_progress(value, total, message):
        progress.append(value)

    async def on_log(params):
        logs.append(params.data)

    async with mcp_client(child_url(base_url), token("child", api_key=None), logging_callback=on_log) as client:
        tools = await client.list_tools()
        assert {"add", "count", "ask", "sleep", "environment"} <= {t.name for t in tools.tools}
        result = await client.call_tool("add", {"a": 2, "b": 40})
        assert result.structured_content == {"result": 42.0}
        counted = await client.call_tool("count", {"steps": 3}, progress_callback=on_progress)
        assert counted.content[0].text == "counted 3"
        greeting = await client.call_tool("environment", {"name": "CHILD_GREETING"})
        assert greeting.content[0].text == "hello tester"
    assert progress == [1, 2, 3]
    assert logs == ["step 1", "step 2", "step 3"]


@pytest.mark.gen_test(timeout=30)
async def test_elicitation_from_the_child_reaches_the_calling_client(base_url):
    async def elicit(context, params):
        assert params.message == "Favourite colour?"
        return types.ElicitResult(action="accept", content={"colour": "teal"})

    async with mcp_client(child_url(base_url), token("child", api_key=None), elicitation_callback=elicit) as client:
        assert (await client.call_tool("ask", {})).content[0].text == "you said teal"


@pytest.mark.gen_test(timeout=30)
async def test_a_call_past_the_timeout_is_an_error_result(base_url):
    async with mcp_client(child_url(base_url), token("child", api_key=None)) as client:
        result = await client.call_tool("sleep", {"seconds": 30})
        assert result.is_error and "timed out" in result.content[0].text
        assert (await client.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2.0}


@pytest.mark.gen_test(timeout=40)
async def test_a_killed_child_fails_the_call_fast_and_comes_back(base_url, gateway):
    async with mcp_client(child_url(base_url), token("child", api_key=None)) as client:
        pid = int((await client.call_tool("pid", {})).content[0].text)
        call = asyncio.ensure_future(client.call_tool("sleep", {"seconds": 1.5}))
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        # The call fails at once (well before its 1.5 s), with the error the link to the child
        # ended on, passed through as a JSON-RPC error: the client's own session is fine.
        with pytest.raises(MCPError) as failed:
            await asyncio.wait_for(call, 1.0)
        assert failed.value.error.code == types.CONNECTION_CLOSED
        assert failed.value.error.message == "Connection closed"
        await client.send_ping()  # the gateway still answers this session

    async def back() -> bool:
        try:
            async with mcp_client(child_url(base_url), token("child", api_key=None)) as again:
                return int((await again.call_tool("pid", {})).content[0].text) != pid
        except Exception:
            return False

    await eventually(back, timeout=15, interval=0.1)
    assert gateway.registry.get("child").backend.describe()["restarts"] >= 1


@pytest.mark.gen_test(timeout=30)
async def test_a_child_that_exits_at_start_is_503_and_others_keep_answering(base_url, servers_dir):
    (servers_dir / "broken.yaml").write_text(
        'command: ["${MCP_TEST_PYTHON}", stdio_child.py]\nenv: {CHILD_EXIT_AT_START: "1"}\n'
    )

    async def unavailable():
        async with httpx2.AsyncClient() as http:
            response = await http.post(
                f"{base_url}/broken/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
                headers={
                    "Accept": "application/json, text/event-stream",
                    "Authorization": f"Bearer {token('broken', api_key=None)}",
                },
            )
            return response if response.status_code == 503 else None

    response = await eventually(unavailable, timeout=15, interval=0.1)
    assert int(response.headers["Retry-After"]) >= 1
    async with mcp_client(f"{base_url}/everything/mcp") as client:
        assert (await client.call_tool("echo", {"message": "fine"})).content[0].text == "fine"


@pytest.mark.gen_test(timeout=30)
async def test_cancellation_is_passed_on_to_the_child(base_url):
    async with mcp_client(child_url(base_url), token("child", api_key=None)) as client:
        with anyio.move_on_after(0.3):
            await client.call_tool("sleep", {"seconds": 1.8})

        async def cancelled() -> bool:
            return int((await client.call_tool("cancelled", {})).content[0].text) >= 1

        await eventually(cancelled, timeout=5, message="the child never saw the cancellation")


@pytest.mark.gen_test(timeout=30)
async def test_list_changed_from_the_child_reaches_the_get_stream(base_url, gateway):
    changed = asyncio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with mcp_client(child_url(base_url), token("child", api_key=None), message_handler=on_message) as client:
        sessions = gateway.registry.get("child").sessions
        await eventually(lambda: _true(any(s.standalone.attached for s in sessions)))
        await client.call_tool("announce", {})
        await asyncio.wait_for(changed.wait(), 5)


@pytest.mark.gen_test(timeout=30)
async def test_the_childs_stderr_is_logged_with_its_name(base_url, caplog):
    with caplog.at_level(logging.INFO, logger="mcp_tornado.child"):
        async with mcp_client(child_url(base_url), token("child", api_key=None)) as client:
            await client.call_tool("add", {"a": 1, "b": 2})
        await eventually(lambda: _true(any(r.getMessage() == "child: stdio child starting" for r in caplog.records)))


@pytest.mark.gen_test(timeout=40)
async def test_per_session_children_are_separate_and_capped(base_url, servers_dir):
    (servers_dir / "own.yaml").write_text(
        'command: ["${MCP_TEST_PYTHON}", stdio_child.py]\nper_session: true\nmax_processes: 2\n'
    )
    await eventually(lambda: _served(base_url, "own"), timeout=10)
    own = token("own", api_key=None)
    async with (
        mcp_client(child_url(base_url, "own"), own) as first,
        mcp_client(child_url(base_url, "own"), own) as second,
    ):
        pids = {int((await c.call_tool("pid", {})).content[0].text) for c in (first, second)}
        assert len(pids) == 2
        async with httpx2.AsyncClient() as http:
            third = await http.post(
                child_url(base_url, "own"),
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                },
                headers={"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {own}"},
            )
        assert third.status_code == 503 and "Retry-After" in third.headers
    # Both sessions ended (DELETE): their children were stopped, so a new session gets one.
    async with mcp_client(child_url(base_url, "own"), own) as again:
        assert int((await again.call_tool("pid", {})).content[0].text) not in pids


async def _true(value: bool) -> bool:
    return value


async def _served(base_url: str, name: str) -> bool:
    async with httpx2.AsyncClient() as http:
        return name in (await http.get(f"{base_url}/health")).json()["servers"]


@pytest.mark.gen_test(timeout=30)
async def test_removing_the_definition_stops_the_child(base_url, servers_dir):
    async with mcp_client(child_url(base_url), token("child", api_key=None)) as client:
        pid = int((await client.call_tool("pid", {})).content[0].text)
    (servers_dir / "child.yaml").unlink()

    async def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await eventually(gone, timeout=10, message="the child outlived its definition")
