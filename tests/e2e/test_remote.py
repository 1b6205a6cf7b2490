"""`url:` remote upstreams: proxied, and followed when they go away and come back."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import eventually, mcp_client, token
from tests.e2e.wire import headers, init_body

HERE = Path(__file__).parent.parent / "servers"


class Upstream:
    """The upstream server as a child process that the test can stop and start again."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(HERE / "remote_upstream.py"), str(self.port)])

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    async def wait_listening(self) -> None:
        async def listening() -> bool:
            try:
                async with httpx2.AsyncClient() as http:
                    await http.get(self.url)
                return True
            except httpx2.TransportError:
                return False

        await eventually(listening, timeout=20, interval=0.05)


@pytest.fixture
def upstream(servers_dir: Path) -> Iterator[Upstream]:
    up = Upstream()
    up.start()
    (servers_dir / "remote.yaml").write_text(f"url: {up.url}\nstart: lazy\ntimeout: 5\n")
    yield up
    up.stop()


async def serving(upstream: Upstream, gateway) -> None:
    """The upstream listens and the gateway serves it at /remote/mcp."""
    await upstream.wait_listening()
    await gateway.registry.load_file(gateway.settings.servers_dir / "remote.yaml")


def remote_client(base_url: str):
    return mcp_client(f"{base_url}/remote/mcp", token("remote", api_key=None))


async def pid_of(client) -> int:
    return int((await client.call_tool("upstream_pid", {})).content[0].text)


async def call_pid(base_url: str) -> int:
    async with remote_client(base_url) as client:
        return await pid_of(client)


@pytest.mark.gen_test(timeout=40)
async def test_a_remote_upstream_is_proxied(upstream, base_url, gateway):
    await serving(upstream, gateway)
    async with remote_client(base_url) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"upstream_pid", "shout"}
        assert (await client.call_tool("shout", {"text": "hi"})).content[0].text == "HI"


@pytest.mark.gen_test(timeout=60)
async def test_an_upstream_that_goes_away_and_comes_back(upstream, base_url, gateway):
    await serving(upstream, gateway)
    async with remote_client(base_url) as client:
        first = await pid_of(client)
        upstream.stop()
        # While it is away, calls fail quickly: the first with the error the link ended on...
        with pytest.raises(MCPError) as lost:
            await asyncio.wait_for(client.call_tool("upstream_pid", {}), 5)
        assert (lost.value.error.code, lost.value.error.message) == (types.CONNECTION_CLOSED, "Connection closed")
        # ...then the route is 503 (Retry-After) until the upstream is back; the client sees its state,
        # never the cause (that is in the log and the admin view).
        with pytest.raises(MCPError) as away:
            await asyncio.wait_for(client.call_tool("upstream_pid", {}), 5)
        assert away.value.error.code == types.INTERNAL_ERROR
        assert away.value.error.message == "remote is restarting", away.value.error.message
        async with httpx2.AsyncClient() as http:
            init = await http.post(
                f"{base_url}/remote/mcp", json=init_body(), headers=headers(token("remote", api_key=None))
            )
        assert init.status_code == 503 and int(init.headers["Retry-After"]) >= 1
        assert init.json()["error"]["message"] == "remote is restarting"
    # The other servers answer meanwhile.
    async with mcp_client(f"{base_url}/everything/mcp") as other:
        assert (await other.call_tool("echo", {"message": "fine"})).content[0].text == "fine"
    upstream.start()
    await upstream.wait_listening()

    async def new_upstream() -> bool:
        try:
            return await call_pid(base_url) != first
        except Exception:
            return False

    await eventually(new_upstream, timeout=40, interval=0.2)


@pytest.mark.gen_test(timeout=60)
async def test_a_lost_upstream_session_is_renewed_without_the_client_noticing(upstream, base_url, gateway):
    await serving(upstream, gateway)
    async with remote_client(base_url) as client:
        first = await pid_of(client)
        upstream.stop()
        upstream.start()  # a restarted upstream knows none of its old sessions (404)
        await upstream.wait_listening()
        assert await pid_of(client) != first
