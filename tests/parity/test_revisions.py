"""Every protocol revision the `mcp` package knows, on every backend kind.

The handshake revisions are spoken with a raw HTTP client (tests/e2e/wire.py), so the
comparison is of the JSON itself: each route's answers must be the SDK's own server's answers
(the upstream, spoken to directly) at the same revision, ids aside. The stateless 2026-07-28
revision is spoken by the official client in `mode="auto"`, which negotiates it.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_MODERN_VERSION

from tests.parity.support import INSTRUCTIONS, KINDS, TOOLS, Wire, bearer, comparable_capabilities, kinds, route

# -- the handshake revisions --------------------------------------------------------------------


def revisions() -> list[Any]:
    return [
        pytest.param(kind, version, id=f"{kind}-{version}") for kind in KINDS for version in HANDSHAKE_PROTOCOL_VERSIONS
    ]


async def transcript(wire: Wire) -> dict[str, Any]:
    """initialize at the wire's revision, then list the tools and call one."""
    initialized = await wire.open()
    try:
        return {
            "initialize": initialized,
            "tools/list": await wire.answer("tools/list"),
            "tools/call": await wire.answer("tools/call", {"name": "add", "arguments": {"a": 2, "b": 40}}),
        }
    finally:
        await wire.close()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(("kind", "version"), revisions())
async def test_every_handshake_revision_answers_as_the_sdk_does(base_url, sdk_url, kind, version):
    async with httpx2.AsyncClient(timeout=10) as http:
        ours = await transcript(Wire(http, route(base_url, kind), version, bearer(kind)))
        sdk = await transcript(Wire(http, sdk_url, version))
    assert ours["initialize"]["protocolVersion"] == version
    assert ours["tools/call"]["result"]["content"] == [{"type": "text", "text": "42.0"}]
    assert ours["tools/list"] == sdk["tools/list"]
    assert ours["tools/call"] == sdk["tools/call"]
    # initialize: serverInfo.name is the route's in-process (see test_initialize_declares_the_same_server).
    assert _comparable(ours["initialize"], kind) == _comparable(sdk["initialize"], "sdk")


def _comparable(result: dict[str, Any], kind: str) -> dict[str, Any]:
    info = dict(result["serverInfo"])
    assert info.pop("name") == ("inprocess" if kind == "inprocess" else "parity")
    return {**result, "serverInfo": info, "capabilities": comparable_capabilities(result["capabilities"])}


# -- the stateless revision ---------------------------------------------------------------------


def connect(base_url: str, kind: str, http: httpx2.AsyncClient, mode: str = "auto", **kwargs: Any) -> Client:
    """The official client; `mode="auto"` negotiates, and picks 2026-07-28 when it is offered."""
    return Client(streamable_http_client(route(base_url, kind), http_client=http), mode=mode, **kwargs)


def authorized(kind: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer(kind)}"}, timeout=10)


# At 2026-07-28 the gateway translates onto its handshake-era link to command: and url:
# upstreams: the downstream's `_meta` envelope is taken off (a handshake connection refuses it),
# and `server/discover` answers with what the upstream said about itself at its initialize.


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_stateless_discovery_describes_the_server_as_its_handshake_does(base_url, kind):
    async with authorized(kind) as http:
        async with connect(base_url, kind, http, mode="legacy") as legacy:
            handshake = (legacy.server_info, legacy.instructions)
        async with connect(base_url, kind, http) as client:
            assert client.protocol_version == LATEST_MODERN_VERSION
            modern = (client.server_info, client.instructions)
    assert modern == handshake
    assert modern[1] == INSTRUCTIONS


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_stateless_capabilities_are_the_sdks(base_url, sdk_url, kind):
    async with authorized(kind) as http:
        async with connect(base_url, kind, http) as client:
            ours = client.server_capabilities.model_dump(by_alias=True, mode="json", exclude_none=True)
        async with Client(streamable_http_client(sdk_url, http_client=http), mode="auto") as sdk:
            assert sdk.protocol_version == LATEST_MODERN_VERSION
            expected = sdk.server_capabilities.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert {"tools", "resources", "prompts", "completions"} <= set(ours)
    assert comparable_capabilities(ours) == comparable_capabilities(expected)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_stateless_tools_list(base_url, kind):
    async with authorized(kind) as http:
        async with connect(base_url, kind, http) as client:
            tools = await client.list_tools()
    assert [tool.name for tool in tools.tools] == TOOLS


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_stateless_tools_call(base_url, kind):
    async with authorized(kind) as http:
        async with connect(base_url, kind, http) as client:
            result = await client.call_tool("add", {"a": 2, "b": 40})
            failed = await client.call_tool("fail", {"reason": "because"})
    assert not result.is_error and result.structured_content == {"result": 42.0}
    assert failed.is_error and "failed on purpose: because" in failed.content[0].text


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_stateless_progress_and_logs(base_url, kind):
    seen: list[tuple[Any, ...]] = []

    async def on_log(params: Any) -> None:
        seen.append(("log", params.data))

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(("progress", progress))

    async with authorized(kind) as http:
        # At 2026-07-28 a request receives log messages only when it opts in (`log_level`).
        async with connect(base_url, kind, http, logging_callback=on_log, log_level="info") as client:
            result = await client.call_tool("steps", {"count": 2}, progress_callback=on_progress)
    assert result.structured_content == {"result": "done 2 steps"}
    assert seen == [("progress", 1), ("log", "did step 1"), ("progress", 2), ("log", "did step 2")]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_stateless_resources_and_prompts(base_url, kind):
    async with authorized(kind) as http:
        async with connect(base_url, kind, http) as client:
            read = await client.read_resource("parity://readme")
            prompt = await client.get_prompt("greet", {"who": "Ada"})
    assert read.contents[0].text == "# Parity"
    assert prompt.messages[0].content.text == "Say hello to Ada in a plain way."
