"""A server with no tools answers `tools/list` with an empty list (never "Method not found"), on
every backend and every revision, so multi-server clients that list everyone's tools work; and
`GET /servers/{name}` shows the tools an upstream or child really serves, and who it says it is."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from mcp_tornado import auth
from tests.conftest import SECRET, eventually, mcp_client, token
from tests.e2e.test_stateless import envelope, modern_headers

EXAMPLES = Path(__file__).parent.parent / "servers.d"

# A lowlevel SDK server with prompts and no tools: hosted as `app:`, run as a stdio child, and
# served over Streamable HTTP (by the SDK itself, under uvicorn) for `url:`.
BARE_SERVER = """\
import sys

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import Server


async def list_prompts(ctx, params):
    return types.ListPromptsResult(prompts=[types.Prompt(name="hello")])


server = Server("bare", version="3.1.4", title="Bare Server", on_list_prompts=list_prompts)


async def stdio():
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        import uvicorn

        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    else:
        anyio.run(stdio)
"""
NO_TOOLS = ["library", "bareapp", "barechild", "bareremote"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def upstream_port() -> int:
    return free_port()


@pytest.fixture
def servers_dir(servers_dir: Path, upstream_port: int) -> Iterator[Path]:
    """The test servers, the example library (no tools), and the bare server as `app:`, as a
    stdio child, and (run here, in a process of its own) as a `url:` upstream."""
    shutil.copy(EXAMPLES / "library.yaml", servers_dir)
    shutil.copy(EXAMPLES / "library_handlers.py", servers_dir)
    (servers_dir / "bare_server.py").write_text(BARE_SERVER)
    (servers_dir / "bareapp.yaml").write_text("app: bare_server:server\n")
    (servers_dir / "barechild.yaml").write_text('command: ["${MCP_TEST_PYTHON}", bare_server.py]\n')
    (servers_dir / "bareremote.yaml").write_text(f"url: http://127.0.0.1:{upstream_port}/mcp\nstart: lazy\n")
    process = subprocess.Popen([sys.executable, str(servers_dir / "bare_server.py"), str(upstream_port)])
    yield servers_dir
    process.terminate()
    process.wait(10)


async def listening(port: int) -> None:
    async def up() -> bool:
        try:
            async with httpx2.AsyncClient() as http:
                await http.get(f"http://127.0.0.1:{port}/mcp")
            return True
        except httpx2.TransportError:
            return False

    await eventually(up, timeout=20, interval=0.05)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("name", NO_TOOLS)
async def test_a_session_lists_no_tools_rather_than_method_not_found(base_url, upstream_port, name):
    await listening(upstream_port)
    async with mcp_client(f"{base_url}/{name}/mcp", token(name, api_key=None)) as session:
        assert (await session.list_tools()).tools == []
        assert (await session.list_prompts()).prompts  # the server still serves what it has


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("name", NO_TOOLS)
async def test_a_stateless_request_lists_no_tools_rather_than_method_not_found(base_url, upstream_port, name):
    await listening(upstream_port)
    async with httpx2.AsyncClient(timeout=20) as http:
        response = await http.post(
            f"{base_url}/{name}/mcp",
            json=envelope("tools/list"),
            headers=modern_headers("tools/list", token(name, api_key=None)),
        )
    assert response.status_code == 200, response.text
    assert response.json()["result"]["tools"] == []


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("name", NO_TOOLS)
async def test_the_plain_http_document_of_a_server_without_tools_has_no_tool_operations(base_url, upstream_port, name):
    await listening(upstream_port)
    async with httpx2.AsyncClient(timeout=20) as http:
        response = await http.get(
            f"{base_url}/{name}/openapi.json", headers={"Authorization": f"Bearer {token(name, api_key=None)}"}
        )
    assert response.status_code == 200, response.text
    assert list(response.json()["paths"]) == [f"/{name}/openapi.json"]


# -- what the management API shows ---------------------------------------------------------------


async def admin_view(base_url: str, name: str) -> dict:
    admin = auth.mint(SECRET, admin=True, ttl=600)
    async with httpx2.AsyncClient(timeout=20) as http:
        response = await http.get(f"{base_url}/servers/{name}", headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200
    return response.json()


@pytest.mark.gen_test(timeout=30)
async def test_the_admin_sees_the_tools_a_child_and_an_sdk_app_serve(base_url):
    async with mcp_client(f"{base_url}/child/mcp", token("child", api_key=None)) as session:
        await session.list_tools()  # the child is lazy: it is running once used
    child = await admin_view(base_url, "child")
    assert {"add", "pid", "sleep", "count"} <= set(child["tools"])
    assert child["upstream"] == {"name": "stdio-child", "title": None, "version": child["upstream"]["version"]}
    app = await admin_view(base_url, "sdkapp")
    assert app["tools"] == ["multiply"]


@pytest.mark.gen_test(timeout=30)
async def test_the_admin_sees_a_remote_upstreams_own_title_and_version(base_url, upstream_port):
    await listening(upstream_port)
    async with mcp_client(f"{base_url}/bareremote/mcp", token("bareremote", api_key=None)) as session:
        await session.list_prompts()
    remote = await admin_view(base_url, "bareremote")
    assert remote["upstream"] == {"name": "bare", "title": "Bare Server", "version": "3.1.4"}
    assert remote["tools"] == []

    async def child_identity() -> dict | None:  # an eager child starts at boot, in the background
        return (await admin_view(base_url, "barechild"))["upstream"]

    identity = await eventually(child_identity, timeout=20, interval=0.05, message="the child never said who it is")
    assert identity == {"name": "bare", "title": "Bare Server", "version": "3.1.4"}


@pytest.mark.gen_test
async def test_a_lazy_child_not_started_shows_no_upstream_yet(base_url):
    child = await admin_view(base_url, "child")
    assert child["upstream"] is None and child["tools"] == []
