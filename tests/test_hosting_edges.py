"""Hosting rules a client or an operator sees, at their edges: which list_changed a reload
announces, rate-limit buckets across a reload, what the management API writes and accepts,
and the answer to a request whose session ends under it.

Written to kill mutants (tests/MUTANTS.md) in mcp_tornado/hosting/ and
mcp_tornado/transport/exchange.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from mcp_types import CONNECTION_CLOSED

from mcp_tornado import auth
from tests.conftest import SECRET, eventually, token
from tests.e2e.test_legacy_sse import initialized, raw_stream
from tests.e2e.wire import headers, init_body, open_session, read_events, stream_headers
from tests.security.test_sessions import bearer

ADMIN = {"Authorization": f"Bearer {auth.mint(SECRET, admin=True)}"}
PING = {"jsonrpc": "2.0", "id": 7, "method": "ping"}

LISTS = """\
title: {title}
description: Lists of every kind
rate_limit: {{per_identity: {rate}, burst: 2}}
tools:
  - name: echo
    handler: everything_tools:echo
    inputSchema: {{type: object, properties: {{message: {{type: string}}}}, required: [message]}}
resources:
  - uri: memo://readme
    name: readme
    text: read me
prompts:
{prompts}
"""
ONE_PROMPT = "  - {name: greet, messages: [{role: user, text: hello}]}"
TWO_PROMPTS = ONE_PROMPT + "\n  - {name: part, messages: [{role: user, text: bye}]}"

SCOPED = """\
tools:
  - {name: echo, handler: "everything_tools:echo"}
  - {name: whoami, handler: "everything_tools:whoami", scopes: [admin]}
"""

# A handler that is an object, not a function: its class (and so its `__call__`) is written in
# servers.d/, so the management API may register it without MCP_ADMIN_ALLOW_CODE.
CALLABLE_MODULE = """\
class Shout:
    def __call__(self, arguments, context):
        return arguments["message"].upper()


shout = Shout()


def looped(arguments, context):
    return "looped"


looped.__wrapped__ = looped  # a wrapper chain that never ends: inspect.unwrap gives up on it
"""


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    (servers_dir / "lists.yaml").write_text(LISTS.format(title="Lists", rate=1000, prompts=ONE_PROMPT))
    (servers_dir / "metered.yaml").write_text(LISTS.format(title="Metered", rate=0.01, prompts=ONE_PROMPT))
    (servers_dir / "objects.py").write_text(CALLABLE_MODULE)
    (servers_dir / "broken.yaml").write_text("tools: [unclosed\n")  # never loads
    (servers_dir / "scoped.yaml").write_text(SCOPED)
    (servers_dir / "byaddress.yaml").write_text(
        "rate_limit: {per_address: 0.01, burst: 2}\ntools:\n  - {name: echo, handler: 'everything_tools:echo'}\n"
    )
    return servers_dir


async def title_of(http: httpx2.AsyncClient, base_url: str, name: str) -> str | None:
    response = await http.get(f"{base_url}/servers/{name}", headers=ADMIN)
    return response.json().get("title") if response.status_code == 200 else None


@pytest.mark.gen_test(timeout=20)
async def test_a_reload_announces_only_the_lists_that_changed(base_url, servers_dir):
    url = f"{base_url}/lists/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token("lists", api_key=None))
        async with http.stream("GET", url, headers=stream_headers(session)) as stream:
            assert stream.status_code == 200
            (servers_dir / "lists.yaml").write_text(LISTS.format(title="Lists", rate=1000, prompts=TWO_PROMPTS))
            # tools, resources, prompts is the order they are announced in: the prompts' one comes
            # last, so any other announcement would arrive before it.
            events = await asyncio.wait_for(read_events(stream, 1), 10)
        assert [e["data"]["method"] for e in events] == ["notifications/prompts/list_changed"]


@pytest.mark.gen_test(timeout=20)
async def test_a_reload_that_keeps_the_rate_limit_keeps_the_callers_allowance(base_url, servers_dir):
    url = f"{base_url}/metered/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token("metered", api_key=None))  # the burst of 2
        assert (await http.post(url, json=PING, headers=headers(session=session))).status_code == 429
        (servers_dir / "metered.yaml").write_text(LISTS.format(title="Renamed", rate=0.01, prompts=ONE_PROMPT))

        async def reloaded() -> bool:
            return await title_of(http, base_url, "metered") == "Renamed"

        await eventually(reloaded, message="the new definition never went live")
        # The same session on the new definition: the allowance it used up is still used up.
        assert (await http.post(url, json=PING, headers=headers(session=session))).status_code == 429
        (servers_dir / "metered.yaml").write_text(LISTS.format(title="Generous", rate=1000, prompts=ONE_PROMPT))

        async def generous() -> bool:
            return await title_of(http, base_url, "metered") == "Generous"

        await eventually(generous, message="the new rate never went live")
        # Another rate is another limiter: the caller starts afresh.
        assert (await http.post(url, json=PING, headers=headers(session=session))).status_code == 200


@pytest.mark.gen_test
async def test_a_registered_definition_is_written_in_the_order_it_was_given(base_url, servers_dir):
    body = {
        "version": "2.0.0",
        "title": "Ordered",
        "tools": [{"name": "echo", "handler": "everything_tools:echo"}],
        "description": "keys in the order the operator sent them",
    }
    async with httpx2.AsyncClient() as http:
        created = await http.post(f"{base_url}/servers/ordered", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    written = (servers_dir / "ordered.yaml").read_text()
    top_level = [line.split(":", 1)[0] for line in written.splitlines() if line[:1].isalpha()]
    assert top_level == ["name", "version", "title", "tools", "description"]  # the route's name comes first


@pytest.mark.gen_test
async def test_a_callable_object_from_servers_d_may_be_registered_without_allow_code(base_url):
    body = {
        "tools": [
            {
                "name": "shout",
                "handler": "objects:shout",
                "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}},
            }
        ]
    }
    async with httpx2.AsyncClient() as http:
        created = await http.post(f"{base_url}/servers/loud", json=body, headers=ADMIN)
        assert created.status_code == 201, created.text
        url = f"{base_url}/loud/mcp"
        session = await open_session(http, url, token("loud", api_key=None))
        arguments = {"message": "hey"}
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "shout", "arguments": arguments}}
        answer = await http.post(url, json=call, headers=headers(session=session))
    assert answer.json()["result"]["content"][0]["text"] == "HEY"


@pytest.mark.gen_test(timeout=20)
async def test_a_request_whose_session_is_deleted_is_answered_session_ended(base_url, gateway):
    url = f"{base_url}/everything/mcp"
    waiting = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "wait", "arguments": {}}}
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        call = asyncio.ensure_future(http.post(url, json=waiting, headers=headers(session=session)))
        hosted = gateway.registry.get("everything")

        async def in_flight() -> bool:
            return hosted.in_flight == 1

        await eventually(in_flight, message="the call never started")
        assert (await http.delete(url, headers=headers(session=session))).status_code == 200
        answer = await asyncio.wait_for(call, 5)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "jsonrpc": "2.0",
        "id": 5,
        "error": {"code": CONNECTION_CLOSED, "message": "session ended"},
    }


@pytest.mark.gen_test
async def test_the_management_view_shows_the_description_and_the_prompts(base_url):
    async with httpx2.AsyncClient() as http:
        shown = (await http.get(f"{base_url}/servers/lists", headers=ADMIN)).json()
    assert shown["description"] == "Lists of every kind"
    assert shown["prompts"] == ["greet"] and shown["tools"] == ["echo"] and shown["resources"] == ["memo://readme"]


@pytest.mark.gen_test
async def test_a_file_that_never_loaded_can_still_be_deleted_by_its_name(base_url, servers_dir):
    async with httpx2.AsyncClient() as http:
        deleted = await http.delete(f"{base_url}/servers/broken", headers=ADMIN)
    assert deleted.status_code == 204, deleted.text
    assert not (servers_dir / "broken.yaml").exists()


@pytest.mark.gen_test
async def test_api_keys_that_are_not_a_list_are_refused_without_quoting_them(base_url):
    body = {"api_keys": "hunter2-secret", "tools": [{"name": "echo", "handler": "everything_tools:echo"}]}
    async with httpx2.AsyncClient() as http:
        refused = await http.post(f"{base_url}/servers/keyed", json=body, headers=ADMIN)
    assert refused.status_code == 400
    assert "hunter2" not in refused.text
    error = refused.json()["error"]
    assert error["field"] == "api_keys"
    assert "must be a list of keys" in error["message"] and "(not shown)" in error["message"]


@pytest.mark.gen_test
async def test_a_legacy_batch_holding_initialize_is_refused_with_the_reason(base_url):
    async with raw_stream(base_url) as stream:
        batch = [init_body("2024-11-05", request_id=1), {"jsonrpc": "2.0", "id": 2, "method": "ping"}]
        refused = await stream.post(batch)
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == "initialize must be sent alone"
        await initialized(stream)  # the refusal left the stream usable


@pytest.mark.gen_test
async def test_legacy_streams_count_against_each_callers_own_rate(base_url):
    """Two legacy streams use up ada's burst; eve, on the same server, still has all of hers."""
    url = f"{base_url}/metered/sse"
    async with httpx2.AsyncClient(timeout=10) as http:

        async def open_stream(user: str) -> int:
            bearer = token("metered", api_key=None, user=user)
            get = {"Accept": "text/event-stream", "Authorization": f"Bearer {bearer}"}
            async with http.stream("GET", url, headers=get) as response:
                return response.status_code

        assert [await open_stream("ada"), await open_stream("ada")] == [200, 200]
        assert await open_stream("ada") == 429
        assert await open_stream("eve") == 200


@pytest.mark.gen_test
async def test_a_batch_is_refused_whole_when_any_call_in_it_needs_a_missing_scope(base_url):
    """The scoped call comes after a ping: every member is looked at, not only up to the first
    that is not a tool call."""
    url = f"{base_url}/scoped/mcp"
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}},
    ]
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, bearer("scoped", scope="mcp:use", sub="sam"), version="2025-03-26")
        refused = await http.post(url, json=batch, headers=headers(session=session, version="2025-03-26"))
    assert refused.status_code == 403, refused.text
    assert "'whoami' needs a token with scope admin" in refused.json()["error"]["message"]


@pytest.mark.gen_test
async def test_a_bad_api_key_entry_is_named_without_quoting_it(base_url):
    body = {"api_keys": ["fine-key", ""], "tools": [{"name": "echo", "handler": "everything_tools:echo"}]}
    async with httpx2.AsyncClient() as http:
        refused = await http.post(f"{base_url}/servers/keyed", json=body, headers=ADMIN)
    assert refused.status_code == 400
    assert "fine-key" not in refused.text
    error = refused.json()["error"]
    assert error["field"] == "api_keys.1" and "(the value is not shown)" in error["message"]


@pytest.mark.gen_test
async def test_a_second_legacy_initialize_is_refused_with_the_reason(base_url):
    async with raw_stream(base_url) as stream:
        await initialized(stream)
        again = await stream.post(init_body("2024-11-05", request_id=9))
        assert again.status_code == 400
        assert again.json()["error"]["message"] == "session already initialized"


@pytest.mark.gen_test(timeout=20)
async def test_a_listening_session_ends_when_its_token_expires(base_url):
    """No request needs to come: the GET stream of a session ends at its token's expiry."""
    url = f"{base_url}/everything/mcp"
    short = auth.mint(SECRET, server_name="everything", api_key="plain-key", user_id="ada", ttl=2)
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, short)
        async with http.stream("GET", url, headers=stream_headers(session)) as stream:
            assert stream.status_code == 200
            await asyncio.wait_for(stream.aread(), 8)  # ends: it does not wait for the idle reaper


@pytest.mark.gen_test
async def test_get_and_delete_count_against_the_client_addresss_rate(base_url):
    url = f"{base_url}/byaddress/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token("byaddress", api_key=None))  # 2 requests: the burst
        async with http.stream("GET", url, headers=stream_headers(session)) as stream:
            assert stream.status_code == 429
            assert stream.headers["Retry-After"] == "100"
        assert (await http.delete(url, headers=headers(session=session))).status_code == 429


@pytest.mark.gen_test
async def test_a_handler_whose_wrapper_chain_loops_is_judged_by_itself(base_url):
    body = {"tools": [{"name": "looped", "handler": "objects:looped"}]}
    async with httpx2.AsyncClient() as http:
        created = await http.post(f"{base_url}/servers/looping", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text


@pytest.mark.gen_test(timeout=20)
async def test_a_legacy_stream_closed_with_a_call_in_flight_ends_its_session(base_url, gateway):
    hosted = gateway.registry.get("everything")

    async def in_flight() -> bool:
        return hosted.in_flight == 1

    async def gone() -> bool:
        return len(hosted.sessions) == 0 and hosted.in_flight == 0

    async with raw_stream(base_url) as stream:
        await initialized(stream)
        waiting = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "wait", "arguments": {}}}
        assert (await stream.post(waiting)).status_code == 202
        await eventually(in_flight, message="the call never started")
    await eventually(gone, message="the session outlived its stream")
