"""A rolling restart: two hosts (`serve --workers 2`, sharing Redis) behind deploy/nginx.conf,
restarted one at a time (SIGTERM, then started again on the same port) while a client keeps
calling through nginx on one session, with its GET stream open. No call fails, no session is
lost, and the GET stream hears what is sent to it after both restarts."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import eventually, token, wait_until


async def _now(value: bool) -> bool:
    return value


def routed_to(proxy: Any, host: Any) -> bool:
    """Whether nginx sends requests to `host` (again): one request, on a connection of its own."""
    answer = httpx2.get(f"{proxy.base_url}/health", headers={"Connection": "close"})
    return answer.headers.get("X-Upstream") == f"127.0.0.1:{host.port}"


@pytest.mark.gen_test(timeout=180)
async def test_a_rolling_restart_under_traffic_fails_no_call(hosts, nginx, servers_dir, redis_server):
    env = {"MCP_REDIS_URL": redis_server.url, "MCP_SHUTDOWN_GRACE": "5"}
    cluster = [hosts(servers_dir, workers=2, env=env) for _ in range(2)]
    proxy = nginx([host.port for host in cluster])
    heard: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            heard.put_nowait(message)

    done: list[str] = []
    failed: list[BaseException] = []
    stop = asyncio.Event()
    headers = {"Authorization": f"Bearer {token()}"}
    statuses: list[str] = []

    async def note(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            await response.aread()
            statuses.append(f"{response.status_code} {response.text[:200]}")

    async with httpx2.AsyncClient(headers=headers, timeout=30, event_hooks={"response": [note]}) as http:
        async with streamable_http_client(f"{proxy.base_url}/everything/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as client:
                await client.initialize()
                session_of = (await client.call_tool("whoami", {})).structured_content

                async def traffic() -> None:
                    while not stop.is_set():
                        text = f"call {len(done) + len(failed)}"
                        try:
                            result = await client.call_tool("echo", {"message": text})
                            assert result.content[0].text == text, result
                            done.append(text)
                        except Exception as exc:  # noqa: BLE001 (counted, and shown below)
                            failed.append(exc)
                        await asyncio.sleep(0.02)

                async def more_calls(count: int) -> None:
                    target = len(done) + count
                    await eventually(lambda: _now(len(done) >= target), timeout=20, message="calls stopped")

                caller = asyncio.ensure_future(traffic())
                for host in cluster:
                    await more_calls(20)
                    before = len(done)
                    assert await asyncio.to_thread(host.stop) == 0
                    await asyncio.to_thread(host.start)
                    assert len(done) > before, "no call went through while a host restarted"
                    # nginx takes a host it saw fail back after `fail_timeout`: the next host may
                    # restart only then (deploy/README.md), or nginx would have none left.
                    await asyncio.to_thread(wait_until, functools.partial(routed_to, proxy, host), timeout=30)
                await more_calls(20)
                stop.set()
                await caller
                assert failed == [], (
                    f"{len(failed)} of {len(done) + len(failed)} calls failed: {failed[:3]} {statuses[:5]}"
                )
                assert len(done) > 50
                # The same session, still served, and its GET stream (reconnected) still hears it.
                assert (await client.call_tool("whoami", {})).structured_content == session_of
                for _ in range(15):  # the client's GET stream may still be reconnecting: ask again
                    await client.call_tool("announce", {})
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(heard.get(), 2)
                        break
                else:
                    raise AssertionError("the reconnected GET stream heard no announcement in 30 s")
