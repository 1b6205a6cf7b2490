"""Shared fixtures: a real gateway on a real port, tokens, and the official MCP client."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import tornado.ioloop
import tornado.netutil
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from mcp_tornado import auth
from mcp_tornado.server import Gateway
from mcp_tornado.settings import Settings

SECRET = "test-secret-that-is-long-enough-for-hs256"
HERE = Path(__file__).parent
# The npm reference server, installed by `make test` (see the Makefile).
EVERYTHING_SERVER = HERE.parent / ".tools/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
# What the test definitions expand (`${VAR}`), handed to the gateway as its environment, with
# MCP_EXPAND_VARS listing them (nothing else is expanded): this interpreter runs the Python
# children, so they have `mcp`.
TEST_VARIABLES = {
    "MCP_TEST_PYTHON": sys.executable,
    "MCP_TEST_USER": "tester",
    "MCP_TEST_EVERYTHING": str(EVERYTHING_SERVER),
}
TEST_ENVIRON = {**TEST_VARIABLES, "MCP_EXPAND_VARS": ",".join(TEST_VARIABLES)}


@pytest.fixture
def servers_dir(tmp_path: Path) -> Path:
    """A private copy of tests/servers, so a test may change it freely."""
    target = tmp_path / "servers.d"
    shutil.copytree(HERE / "servers", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change the gateway's settings."""
    return {}


@pytest.fixture
def gateway(io_loop: tornado.ioloop.IOLoop, servers_dir: Path, settings_overrides: dict[str, Any]) -> Iterator[Gateway]:
    settings = Settings.from_environ(
        {"JWT_SECRET": SECRET, **TEST_ENVIRON}, servers_dir=servers_dir, **settings_overrides
    )
    gw = Gateway(settings)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    io_loop.run_sync(lambda: gw.start(sockets))
    yield gw
    io_loop.run_sync(gw.stop)


@pytest.fixture
def base_url(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.port}"


def token(
    server: str = "everything", *, api_key: str | None = "plain-key", user: str | None = "ada", ttl: float = 600
) -> str:
    return auth.mint(SECRET, server_name=server, api_key=api_key, user_id=user, ttl=ttl)


@contextlib.asynccontextmanager
async def mcp_client(url: str, bearer: str | None = None, **session_kwargs: Any) -> AsyncIterator[ClientSession]:
    """The official MCP client, initialized, over Streamable HTTP."""
    headers = {"Authorization": f"Bearer {bearer or token()}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, **session_kwargs) as session:
                await session.initialize()
                yield session


async def eventually(check: Any, *, timeout: float = 5.0, interval: float = 0.02, message: str = "") -> Any:
    """Poll `await check()` until it returns something truthy, or fail after `timeout` seconds."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, message or f"condition not met within {timeout} s"
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], object],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "",
) -> object:
    """`eventually`'s sync twin, for tests that run in plain threads (a gateway in a subprocess):
    poll `check()` until it returns something truthy, or fail after `timeout` seconds. `message`
    may be a callable, to describe the state at the moment of failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            reason = message() if callable(message) else message
            raise AssertionError(reason or f"condition not met within {timeout} s")
        time.sleep(interval)


def _children() -> list[str]:
    """This process's child processes (zombies included), as "pid state command"."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid():
            found.append(f"{stat.parent.name} {fields[0]} {name}")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_child_process_left_behind() -> Iterator[None]:
    """After the whole run, the gateways of the tests must have left no child process running."""
    yield
    wait_until(lambda: not _children(), message=lambda: f"child processes left running: {_children()}")
