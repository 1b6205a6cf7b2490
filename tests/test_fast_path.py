"""The hot path answers exactly as the SDK path does, at every revision.

In-process `tools/list` and `tools/call` skip the SDK runner when the server has no middleware
(mcp_tornado/transport/session.py, mcp_tornado/backends/inprocess.py). Two routes serve the
same definition: `fast`, and `sdk`, which has a pass-through middleware (the SDK's documented
`Server.middleware` list), so its requests take the SDK path. The same raw requests on both
must get byte-identical HTTP answers.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

from mcp_tornado.server import Gateway
from tests.conftest import token
from tests.e2e.test_stateless import MODERN, envelope, modern_headers
from tests.e2e.wire import headers, open_session

TOOLS = """
import mcp_types as types


async def echo(arguments, context):
    return arguments["message"]


async def structured(arguments, context):
    return {"sum": arguments["a"] + arguments["b"], "items": [1, "two", None]}


async def typed(arguments, context):
    return {"n": 3}


async def typed_wrong(arguments, context):
    return {"m": "not n"}


async def full(arguments, context):
    return types.CallToolResult(
        content=[types.TextContent(type="text", text="full", annotations=types.Annotations(priority=0.5))],
        structured_content={"k": 1},
        meta={"note": "kept"},
    )


async def blocks(arguments, context):
    return [
        "text",
        {"type": "image", "data": "aGk=", "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "memo://x", "text": "embedded"}},
    ]


async def link(arguments, context):
    return [{"type": "resource_link", "uri": "memo://x", "name": "x", "title": "X"}]


async def failing(arguments, context):
    raise RuntimeError("kaboom")


def sync_number(arguments, context):
    return 42
"""

DEFINITION = """
tools:
  - name: echo
    title: Echo
    description: Echo a message back
    inputSchema:
      type: object
      properties: {message: {type: string}}
      required: [message]
    annotations: {readOnlyHint: true, title: Echo tool}
    handler: fast_tools:echo
  - name: structured
    inputSchema:
      type: object
      properties: {a: {type: number}, b: {type: number}}
      required: [a, b]
    handler: fast_tools:structured
  - name: typed
    outputSchema:
      type: object
      properties: {n: {type: integer}}
      required: [n]
    handler: fast_tools:typed
  - name: typed_wrong
    outputSchema:
      type: object
      properties: {n: {type: integer}}
      required: [n]
    handler: fast_tools:typed_wrong
  - {name: full, handler: "fast_tools:full"}
  - {name: blocks, handler: "fast_tools:blocks"}
  - {name: link, handler: "fast_tools:link"}
  - {name: failing, handler: "fast_tools:failing"}
  - {name: sync_number, handler: "fast_tools:sync_number"}
"""

# (method, params) of every request compared; params None sends none.
CALLS: list[tuple[str, Any]] = [
    ("tools/list", None),
    ("tools/list", {}),
    ("tools/list", {"cursor": "100"}),
    ("tools/list", {"cursor": "not-a-cursor"}),
    ("tools/call", {"name": "echo", "arguments": {"message": "hi"}}),
    ("tools/call", {"name": "structured", "arguments": {"a": 2, "b": 40}}),
    ("tools/call", {"name": "typed"}),
    ("tools/call", {"name": "typed_wrong", "arguments": {}}),
    ("tools/call", {"name": "full"}),
    ("tools/call", {"name": "blocks"}),
    ("tools/call", {"name": "link"}),
    ("tools/call", {"name": "failing"}),
    ("tools/call", {"name": "sync_number"}),
    ("tools/call", {"name": "echo", "arguments": {"message": 5}}),  # invalid arguments
    ("tools/call", {"name": "echo", "arguments": {}}),  # a required argument missing
    ("tools/call", {"name": "nope", "arguments": {}}),  # unknown tool
    ("tools/call", {"name": "echo", "arguments": {"message": "hi"}, "_meta": {"trace": "t"}}),
    ("tools/call", {"arguments": {}}),  # no name
    ("tools/call", {"name": 5}),  # a name that is not a string
    ("tools/call", {"name": "echo", "arguments": [1]}),  # arguments that are not an object
    ("tools/call", None),  # no params at all
]


async def passthrough(ctx: Any, call_next: Any) -> Any:
    return await call_next(ctx)


@pytest.fixture
def servers_dir(tmp_path: Path) -> Path:
    """Only the two routes of this module: `fast`, and `sdk`, the same definition."""
    target = tmp_path / "servers.d"
    target.mkdir()
    (target / "fast_tools.py").write_text(textwrap.dedent(TOOLS))
    for name in ("fast", "sdk"):
        (target / f"{name}.yaml").write_text(DEFINITION)
    return target


@pytest.fixture
def routes(gateway: Gateway) -> dict[str, str]:
    fast, sdk = gateway.registry.get("fast"), gateway.registry.get("sdk")
    assert fast is not None and sdk is not None
    # The premise: `fast` has a fast path and no middleware, so it takes it.
    assert set(fast.backend.fast_paths) == {"tools/call", "tools/list"}
    assert fast.backend.server.middleware == []
    sdk.backend.server.middleware.append(passthrough)  # before any session: it then takes the SDK path
    base = f"http://127.0.0.1:{gateway.port}"
    return {"fast": f"{base}/fast/mcp", "sdk": f"{base}/sdk/mcp"}


async def answers(http: httpx2.AsyncClient, url: str, server: str, version: str) -> list[tuple[int, str, bytes]]:
    """Every call of CALLS on a new session: (status, content type, body), in order."""
    session = await open_session(http, url, token(server, api_key=None), version)
    out = []
    for request_id, (method, params) in enumerate(CALLS, start=10):
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        response = await http.post(url, json=message, headers=headers(session=session, version=version))
        out.append((response.status_code, response.headers.get("Content-Type", ""), response.content))
    await http.delete(url, headers=headers(session=session, version=version))
    return out


# At the latest revision `_serve_fast` skips `serialize_server_result` (the hot path builds the
# wire form directly), so its keys may come in another order than the SDK path's: the same JSON,
# which the next test checks at every revision. At older revisions both go through the sieve.
SIEVED = [v for v in HANDSHAKE_PROTOCOL_VERSIONS if v != LATEST_HANDSHAKE_VERSION]


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("version", SIEVED)
async def test_the_fast_path_answers_byte_for_byte_as_the_sdk_path(routes, version):
    async with httpx2.AsyncClient(timeout=10) as http:
        fast = await answers(http, routes["fast"], "fast", version)
        sdk = await answers(http, routes["sdk"], "sdk", version)
    for (method, params), ours, theirs in zip(CALLS, fast, sdk, strict=True):
        assert ours == theirs, f"{method} {params} at {version}"


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("version", HANDSHAKE_PROTOCOL_VERSIONS)
async def test_the_fast_path_answers_the_same_json_as_the_sdk_path(routes, version):
    async with httpx2.AsyncClient(timeout=10) as http:
        fast = await answers(http, routes["fast"], "fast", version)
        sdk = await answers(http, routes["sdk"], "sdk", version)
    for (method, params), ours, theirs in zip(CALLS, fast, sdk, strict=True):
        assert ours[:2] == theirs[:2], f"{method} {params} at {version}"
        assert json.loads(ours[2]) == json.loads(theirs[2]), f"{method} {params} at {version}"
    # Not vacuous: the answers are real results and real errors.
    bodies = [json.loads(body) for _, _, body in fast]
    assert [tool["name"] for tool in bodies[0]["result"]["tools"]][:3] == ["echo", "structured", "typed"]
    assert bodies[4]["result"] == {"content": [{"type": "text", "text": "hi"}], "isError": False}
    assert bodies[5]["result"]["structuredContent"] == {"sum": 42, "items": [1, "two", None]}
    assert bodies[7]["result"]["isError"] is True
    assert bodies[15]["error"]["code"] == -32602  # unknown tool


async def stateless_answers(http: httpx2.AsyncClient, url: str, server: str) -> list[tuple[int, str, bytes]]:
    """Every call of CALLS as a 2026-07-28 request: (status, content type, body), in order."""
    out = []
    for request_id, (method, params) in enumerate(CALLS, start=10):
        name = (params or {}).get("name")
        routing = modern_headers(method, token(server, api_key=None), name if isinstance(name, str) else None)
        response = await http.post(url, json=envelope(method, params, request_id), headers=routing)
        out.append((response.status_code, response.headers.get("Content-Type", ""), response.content))
    return out


@pytest.mark.gen_test(timeout=20)
async def test_the_fast_path_answers_stateless_requests_byte_for_byte_as_the_sdk_path(routes):
    """2026-07-28: no session, and the SDK's `serve_one` kernel stands where the runner did."""
    async with httpx2.AsyncClient(timeout=10) as http:
        fast = await stateless_answers(http, routes["fast"], "fast")
        sdk = await stateless_answers(http, routes["sdk"], "sdk")
    # Every 2026-07-28 result is stamped with its server's name: the routes' names are all that differ.
    stamp = b'"io.modelcontextprotocol/serverInfo":{"name":"%s"'
    for (method, params), ours, theirs in zip(CALLS, fast, sdk, strict=True):
        assert (*ours[:2], ours[2].replace(stamp % b"fast", stamp % b"sdk")) == theirs, f"{method} {params} at {MODERN}"
