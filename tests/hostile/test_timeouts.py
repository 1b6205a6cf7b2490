"""Item 6: no call waits for ever, whatever the backend: a handler past the server's `timeout`
is answered with an error, and the server goes on serving.

(In-process tools, resources and prompts are covered in test_threads.py.)
"""

from __future__ import annotations

import time

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import REQUEST_TIMEOUT

from tests.conftest import mcp_client, token


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    ("definition", "stuck_uri"),
    [
        ("app: sdk_app:mcp\ntimeout: 0.5\n", "sdk://stuck"),
        ('command: ["${MCP_TEST_PYTHON}", stdio_child.py]\ntimeout: 0.5\n', "child://stuck"),
    ],
    ids=["app", "command"],
)
async def test_a_request_that_never_ends_times_out(base_url, gateway, servers_dir, definition, stuck_uri):
    (servers_dir / "slowpoke.yaml").write_text(definition)
    await gateway.registry.load_file(servers_dir / "slowpoke.yaml")
    async with mcp_client(f"{base_url}/slowpoke/mcp", token("slowpoke", api_key=None)) as client:
        began = time.monotonic()
        with pytest.raises(MCPError) as refused:
            await client.read_resource(stuck_uri)
        assert refused.value.error.code == REQUEST_TIMEOUT
        assert time.monotonic() - began < 5
        assert (await client.list_tools()).tools  # still serving
