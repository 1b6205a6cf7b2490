"""langchain-mcp-adapters, a multi-server client, lists the tools of every example server in
servers.d/ at once (`MultiServerMCPClient(...).get_tools()`, Streamable HTTP with bearer
headers) and calls one: a server without tools (library) must not break the listing.

langchain-mcp-adapters needs mcp 1.x and the gateway mcp 2.x, so it runs from a virtualenv of
its own (`make test` makes it: .tools/langchain), as a separate client process.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import mcp_client, token

ROOT = Path(__file__).parent.parent.parent
LANGCHAIN_PYTHON = ROOT / ".tools/langchain/bin/python"
CLIENT = """\
import asyncio, json, sys
from langchain_mcp_adapters.client import MultiServerMCPClient


async def main():
    client = MultiServerMCPClient(json.loads(sys.argv[1]))
    tools = await client.get_tools()
    calculate = next(tool for tool in tools if tool.name == "calculate")
    answer = await calculate.ainvoke({"operation": "multiply", "a": 6, "b": 7})
    print(json.dumps({"tools": sorted(tool.name for tool in tools), "answer": str(answer)}))


asyncio.run(main())
"""


@pytest.fixture
def servers_dir(tmp_path: Path) -> Path:
    """The examples as shipped (servers.d/), in a private copy."""
    target = tmp_path / "servers.d"
    shutil.copytree(ROOT / "servers.d", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def connection(base_url: str, path: Path) -> tuple[str, dict]:
    """A server's name and its langchain-mcp-adapters connection, with a token for it (and its
    first plain API key, as `mcp-tornado connect` picks)."""
    definition = yaml.safe_load(path.read_text())
    name = definition.get("name", path.stem)
    keys = [key for key in definition.get("api_keys", []) if not key.startswith("sha256:")]
    bearer = token(name, api_key=keys[0] if keys else None)
    return name, {
        "transport": "streamable_http",
        "url": f"{base_url}/{name}/mcp",
        "headers": {"Authorization": f"Bearer {bearer}"},
    }


@pytest.mark.gen_test(timeout=90)
async def test_langchain_lists_the_tools_of_every_example_server(base_url, servers_dir, tmp_path):
    assert LANGCHAIN_PYTHON.is_file(), f"{LANGCHAIN_PYTHON} is missing: `make test` installs langchain-mcp-adapters"
    connections = dict(connection(base_url, path) for path in sorted(servers_dir.glob("*.yaml")))
    assert {"calculator", "library"} <= connections.keys()  # one server with tools, one without
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    process = await asyncio.create_subprocess_exec(
        str(LANGCHAIN_PYTHON),
        str(script),
        json.dumps(connections),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")[-4000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    expected = []  # what each server lists to the official client, on its own
    for config in connections.values():
        async with mcp_client(config["url"], config["headers"]["Authorization"].split()[1]) as session:
            expected += [tool.name for tool in (await session.list_tools()).tools]
    assert seen["tools"] == sorted(expected) and {"calculate", "sum_slowly"} <= set(expected)
    assert "42" in seen["answer"]
