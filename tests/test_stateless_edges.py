"""The edges of the 2026-07-28 wire and of the version check, as a client sees them.

Written to kill mutants (tests/MUTANTS.md) in mcp_tornado/transport/stateless.py and
mcp_tornado/handlers/mcp.py: `Mcp-Param-*` headers checked against the arguments they mirror,
routing headers sent twice, the status of an error code the SDK's table does not map, and the
supported versions a refused `MCP-Protocol-Version` names.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from mcp_types import HEADER_MISMATCH, REQUEST_TIMEOUT
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from tests.conftest import token
from tests.e2e.test_stateless import envelope, modern_headers
from tests.e2e.wire import headers, open_session

# A tool whose `region` argument is mirrored in an `Mcp-Param-Region` header (SEP-2243); the
# handler answers with the arguments it got.
ROUTED = """\
tools:
  - name: locate
    handler: everything_tools:echo
    inputSchema:
      type: object
      properties:
        message: {type: string, x-mcp-header: Region}
      required: [message]
  - name: plain
    handler: everything_tools:echo
    inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}
prompts:
  - name: locate
    arguments: [{name: message, required: true}]
    messages: [{role: user, text: "Where is {message}?"}]
"""


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    (servers_dir / "routed.yaml").write_text(ROUTED)
    (servers_dir / "stuckapp.yaml").write_text("app: sdk_app:mcp\ntimeout: 0.3\n")
    return servers_dir


def routed_call(message: str | None, **extra: str) -> tuple[dict, dict[str, str]]:
    arguments = {} if message is None else {"message": message}
    body = envelope("tools/call", {"name": "locate", "arguments": arguments}, request_id=41)
    return body, {**modern_headers("tools/call", token("routed", api_key=None), "locate"), **extra}


async def post(base_url: str, body: dict, headers: dict[str, str] | list[tuple[str, str]]) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(f"{base_url}/routed/mcp", json=body, headers=headers)


@pytest.mark.gen_test
async def test_a_param_header_that_matches_its_argument_is_served(base_url):
    body, headers = routed_call("eu-west", **{"Mcp-Param-Region": "eu-west"})
    response = await post(base_url, body, headers)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["content"][0]["text"] == "eu-west"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("message", "header", "problem"),
    [
        ("eu-west", "us-east", "does not match"),
        ("eu-west", None, "is missing"),
    ],
    ids=["different", "missing"],
)
async def test_a_param_header_that_disagrees_with_its_argument_is_refused(base_url, message, header, problem):
    extra = {"Mcp-Param-Region": header} if header is not None else {}
    body, headers = routed_call(message, **extra)
    response = await post(base_url, body, headers)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["id"] == 41
    assert answer["error"]["code"] == HEADER_MISMATCH
    assert "Mcp-Param-Region" in answer["error"]["message"] and problem in answer["error"]["message"]


@pytest.mark.gen_test
async def test_param_headers_are_only_checked_on_tools_call(base_url):
    """A prompt that shares the tool's name takes the same argument, but no `Mcp-Param-*` header
    is asked of it: those mirror a tool's arguments only."""
    body = envelope("prompts/get", {"name": "locate", "arguments": {"message": "eu-west"}}, request_id=5)
    headers = modern_headers("prompts/get", token("routed", api_key=None), "locate")
    response = await post(base_url, body, headers)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["messages"][0]["content"]["text"] == "Where is eu-west?"


@pytest.mark.gen_test
async def test_a_routing_header_sent_twice_is_a_header_mismatch(base_url):
    body, headers = routed_call("eu-west", **{"Mcp-Param-Region": "eu-west"})
    lines = [*headers.items(), ("Mcp-Method", "tools/call")]
    response = await post(base_url, body, lines)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["id"] == 41
    assert answer["error"]["code"] == HEADER_MISMATCH
    assert answer["error"]["message"] == "mcp-method header appears more than once"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body",
    [[{"jsonrpc": "2.0", "id": 1, "method": "ping"}], {"jsonrpc": "2.0", "id": 1}],
    ids=["batch", "no-method"],
)
async def test_a_stateless_body_must_be_one_request_or_notification(base_url, body):
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/everything/mcp", json=body, headers=modern_headers("ping"))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": -32600,
        "message": "Body must be a single JSON-RPC request or notification object",
    }


@pytest.mark.gen_test(timeout=15)
async def test_a_request_past_the_timeout_is_a_json_rpc_error_with_status_200(base_url):
    """REQUEST_TIMEOUT is not in the SDK's code -> status table: the answer is a 200 carrying the error."""
    body = envelope("resources/read", {"uri": "sdk://stuck"}, request_id=3)
    headers = modern_headers("resources/read", token("stuckapp", api_key=None), "sdk://stuck")
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/stuckapp/mcp", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": 3,
        "error": {"code": REQUEST_TIMEOUT, "message": "no answer within 0.3 s"},
    }


@pytest.mark.gen_test
@pytest.mark.parametrize("body", [b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}', b"[1, 2]", b'"text"'])
async def test_an_unknown_version_header_without_an_envelope_hears_every_version(base_url, body):
    """A request with no `params._meta` envelope (or no params, or not an object at all) is told
    every revision we speak, the handshake ones included."""
    headers = modern_headers("ping")
    headers["MCP-Protocol-Version"] = "1999-01-01"
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/everything/mcp", content=body, headers=headers)
    assert response.status_code == 400, response.text
    supported = response.json()["error"]["data"]["supported"]
    assert set(supported) == {*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS}


@pytest.mark.gen_test
async def test_an_unknown_version_header_with_an_envelope_hears_the_stateless_versions(base_url):
    headers = modern_headers("tools/list")
    headers["MCP-Protocol-Version"] = "1999-01-01"
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/everything/mcp", json=envelope("tools/list"), headers=headers)
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]["data"]["supported"]) == set(MODERN_PROTOCOL_VERSIONS)


@pytest.mark.gen_test
async def test_an_envelope_in_a_body_sent_in_many_chunks_is_still_read(base_url):
    """The body of a chunked POST arrives in pieces; the version check, and the refusal's id, read all of them."""
    body = envelope("tools/list")
    body["params"]["padding"] = [0] * 70_000  # 210 kB, past Tornado's 64 KiB reads, and no long string
    headers = modern_headers("tools/list")
    headers["MCP-Protocol-Version"] = "1999-01-01"
    encoded = json.dumps(body).encode()

    async def pieces():
        for start in range(0, len(encoded), 16_384):
            yield encoded[start : start + 16_384]

    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/everything/mcp", content=pieces(), headers=headers)
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]["data"]["supported"]) == set(MODERN_PROTOCOL_VERSIONS)
    assert response.json()["id"] == 1  # the refusal names the request it refuses


@pytest.mark.gen_test
async def test_a_get_with_an_unknown_version_hears_every_version(base_url):
    """A GET has no body, so no envelope: it is told every revision, the handshake ones included."""
    get = {"Accept": "text/event-stream", "MCP-Protocol-Version": "1999-01-01", "Mcp-Session-Id": "x"}
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{base_url}/everything/mcp", headers=get)
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]["data"]["supported"]) == {
        *HANDSHAKE_PROTOCOL_VERSIONS,
        *MODERN_PROTOCOL_VERSIONS,
    }


@pytest.mark.gen_test
@pytest.mark.parametrize("value", [[1e999], {"deep": [[2, 1e999]]}], ids=["in-a-list", "in-a-nested-list"])
async def test_a_number_out_of_range_inside_a_list_is_refused(base_url, value):
    body = (
        b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": %s}}'
        % json.dumps(value).replace("Infinity", "1e999").encode()
    )
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/everything/mcp", content=body, headers=modern_headers("ping"))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {"code": -32600, "message": "Invalid Request: a number out of range"}


@pytest.mark.gen_test(timeout=15)
async def test_a_session_request_past_the_timeout_is_a_request_timeout_error(base_url):
    url = f"{base_url}/stuckapp/mcp"
    read = {"jsonrpc": "2.0", "id": 6, "method": "resources/read", "params": {"uri": "sdk://stuck"}}
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token("stuckapp", api_key=None))
        response = await http.post(url, json=read, headers=headers(session=session))
    assert response.json()["error"] == {"code": REQUEST_TIMEOUT, "message": "no answer within 0.3 s"}
