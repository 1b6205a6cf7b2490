"""Sync handlers that never return: they cost their own server a bounded number of threads, never
another server's, never the process's exit. And a tool's value is always strict JSON."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import eventually, mcp_client, token
from tests.e2e.wire import headers, open_session

# A server whose handlers block until `release` is called, with a short timeout.
STUCK = """\
timeout: 0.5
tools:
  - {name: hang, handler: 'everything_tools:hang'}
  - name: quick
    handler: 'everything_tools:blocking'
    inputSchema: {type: object, properties: {seconds: {type: number}}}
  - {name: release, handler: 'everything_tools:release'}
resources:
  - {uri: 'memo://hang', name: hang, handler: 'everything_tools:hang_resource'}
prompts:
  - {name: hang, handler: 'everything_tools:hang_prompt'}
"""
TIMEOUT = 0.5
PROMPTLY = TIMEOUT + 1.0  # a timed-out call is answered at its timeout, not when its thread returns


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    (servers_dir / "stuck.yaml").write_text(STUCK)
    return servers_dir


@pytest.fixture
def stuck_url(base_url: str) -> str:
    return f"{base_url}/stuck/mcp"


def stuck_client(url: str) -> Any:
    return mcp_client(url, token("stuck", api_key=None))


async def metric(base_url: str, name: str, server: str) -> float | None:
    async with httpx2.AsyncClient() as http:
        text = (await http.get(f"{base_url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("server") == server:
                return sample.value
    return None


async def health(base_url: str) -> dict[str, Any]:
    async with httpx2.AsyncClient() as http:
        body: dict[str, Any] = (await http.get(f"{base_url}/health")).json()
        return body


@pytest.mark.gen_test(timeout=10)
@pytest.mark.parametrize("settings_overrides", [{"handler_threads": 2}])
async def test_timed_out_threads_are_replaced(stuck_url, base_url):
    async with stuck_client(stuck_url) as client:
        try:
            for _ in range(2 + 2):  # every thread of the pool, and then some
                started = time.monotonic()
                result = await client.call_tool("hang", {})
                assert result.is_error and f"timed out after {TIMEOUT:g} s" in result.content[0].text
                assert time.monotonic() - started < PROMPTLY
            answer = await client.call_tool("quick", {"seconds": 0})
            assert not answer.is_error and answer.content[0].text == "unblocked"
            assert await metric(base_url, "mcp_tornado_abandoned_threads", "stuck") == 4
            assert await metric(base_url, "mcp_tornado_abandoned_threads_total", "stuck") == 4
        finally:
            await client.call_tool("release", {})

        async def returned() -> bool:
            return await metric(base_url, "mcp_tornado_abandoned_threads", "stuck") == 0

        await eventually(returned, message="released threads are still counted as stuck")
        assert await metric(base_url, "mcp_tornado_abandoned_threads_total", "stuck") == 4


@pytest.mark.gen_test(timeout=10)
@pytest.mark.parametrize("settings_overrides", [{"max_abandoned_threads": 2}])
async def test_past_the_cap_sync_calls_fail_at_once(stuck_url, base_url):
    async with stuck_client(stuck_url) as client, mcp_client(f"{base_url}/everything/mcp") as everything:
        try:
            for _ in range(2):
                assert (await client.call_tool("hang", {})).is_error
            started = time.monotonic()
            refused = await client.call_tool("quick", {"seconds": 0})
            assert time.monotonic() - started < TIMEOUT, "a call past the cap should fail at once"
            assert refused.is_error
            message = refused.content[0].text
            assert message.startswith("Tool quick was not run: 2 handler threads of server 'stuck' are still stuck")
            with pytest.raises(MCPError) as read:
                await client.read_resource("memo://hang")
            assert "was not run" in read.value.error.message
            status = await health(base_url)
            assert status["status"] == "degraded"
            assert status["servers"]["stuck"]["abandoned_threads"] == 2
            # Other servers, sync handlers included, do not notice.
            assert (await everything.call_tool("blocking", {"seconds": 0})).content[0].text == "unblocked"
            assert "abandoned_threads" not in status["servers"]["everything"]
        finally:
            await client.call_tool("release", {})  # an async handler: the stuck server still runs those

        async def recovered() -> bool:
            return (await health(base_url))["status"] == "ok"

        await eventually(recovered, message="health stayed degraded after the stuck threads returned")
        assert (await client.call_tool("quick", {"seconds": 0})).content[0].text == "unblocked"


@pytest.mark.gen_test(timeout=10)
async def test_a_blocking_resource_or_prompt_times_out_with_a_jsonrpc_error(stuck_url):
    async with stuck_client(stuck_url) as client:
        try:
            for attempt in (client.read_resource("memo://hang"), client.get_prompt("hang", {})):
                started = time.monotonic()
                with pytest.raises(MCPError) as failed:
                    await attempt
                assert time.monotonic() - started < PROMPTLY
                assert failed.value.error.code == types.REQUEST_TIMEOUT
                assert f"timed out after {TIMEOUT:g} s" in failed.value.error.message
            assert (await client.call_tool("quick", {"seconds": 0})).content[0].text == "unblocked"
            assert {t.name for t in (await client.list_tools()).tools} == {"hang", "quick", "release"}
        finally:
            await client.call_tool("release", {})


def _reject(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


@pytest.mark.gen_test
@pytest.mark.parametrize(("tool", "arguments"), [("overflow", {"a": 1e308, "b": 10}), ("not_a_number", {})])
async def test_a_value_that_is_not_json_is_an_error_result(base_url, tool, arguments):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
        response = await http.post(url, json=call, headers=headers(session=session, version="2025-11-25"))
    assert response.status_code == 200
    if response.headers["Content-Type"].startswith("text/event-stream"):
        [raw] = [line[5:] for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()]
    else:
        raw = response.text
    answer = json.loads(raw, parse_constant=_reject)
    result = answer["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"] == f"Tool {tool} returned a value that is not valid JSON (NaN or Infinity)"
    assert "structuredContent" not in result


@pytest.mark.gen_test(timeout=30)
async def test_a_stuck_thread_does_not_keep_the_process_alive(spawn_gateway, servers_dir):
    grace = 1.0
    gateway = spawn_gateway(servers_dir, env={"MCP_SHUTDOWN_GRACE": str(grace)})
    async with stuck_client(f"{gateway.base_url}/stuck/mcp") as client:
        result = await client.call_tool("hang", {})
    assert result.is_error and "timed out" in result.content[0].text
    gateway.proc.send_signal(signal.SIGTERM)
    status = gateway.wait_exit(grace + 5)
    assert status == 0, f"exit status {status} (None: still running)\n{gateway.log_text()[-2000:]}"
