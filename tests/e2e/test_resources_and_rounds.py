"""Resource templates and subscriptions of in-process servers, and multi-round results
(SEP-2322) at every revision: the gateway runs the rounds for clients that cannot."""

from __future__ import annotations

import asyncio
import json
import warnings

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

from tests.conftest import eventually, mcp_client, token
from tests.e2e.wire import headers, open_session

STATELESS = "2026-07-28"


@pytest.mark.gen_test(timeout=20)
async def test_a_resource_template_is_listed_and_read(base_url):
    async with mcp_client(f"{base_url}/everything/mcp") as client:
        templates = await client.list_resource_templates()
        read = await client.read_resource("memo://notes/42")
    assert [(t.uri_template, t.name) for t in templates.resource_templates] == [("memo://notes/{id}", "note")]
    assert read.contents[0].text == "note 42 for ada" and read.contents[0].uri == "memo://notes/42"


@pytest.mark.gen_test(timeout=20)
async def test_subscribers_hear_of_an_update_and_others_do_not(base_url, gateway):
    heard: dict[str, list[str]] = {"subscribed": [], "other": []}

    def listener(who: str):
        async def on_message(message) -> None:
            if isinstance(message, types.ResourceUpdatedNotification):
                heard[who].append(str(message.params.uri))

        return on_message

    url = f"{base_url}/everything/mcp"
    async with mcp_client(url, message_handler=listener("subscribed")) as subscribed:
        async with mcp_client(url, token(user="grace"), message_handler=listener("other")) as other:
            sessions = gateway.registry.get("everything").sessions
            await eventually(lambda: _value(sum(s.standalone.attached for s in sessions) == 2))
            with warnings.catch_warnings():  # removed only at 2026-07-28; this session speaks 2025-11-25
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await subscribed.subscribe_resource("memo://readme")
            assert (await other.call_tool("touch", {"uri": "memo://readme"})).content[0].text == "touched"
            await eventually(lambda: _value(heard["subscribed"] == ["memo://readme"]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await subscribed.unsubscribe_resource("memo://readme")
            await other.call_tool("touch", {"uri": "memo://readme"})
            await other.send_ping()
    assert heard == {"subscribed": ["memo://readme"], "other": []}


@pytest.mark.gen_test(timeout=20)
async def test_a_handshake_client_gets_the_rounds_run_for_it(base_url):
    async def elicit(context, params):
        assert params.message == "Your name?"
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async with mcp_client(f"{base_url}/everything/mcp", elicitation_callback=elicit) as client:
        result = await client.call_tool("rounds", {})
    assert result.content[0].text == "Hello, Ada!"


@pytest.mark.gen_test(timeout=20)
async def test_a_stateless_client_does_the_rounds_itself(base_url):
    async def elicit(context, params):
        return types.ElicitResult(action="accept", content={"name": "Grace"})

    headers_ = {"Authorization": f"Bearer {token()}"}
    async with httpx2.AsyncClient(headers=headers_, timeout=20) as http:
        transport = streamable_http_client(f"{base_url}/everything/mcp", http_client=http)
        async with Client(transport, mode="auto", elicitation_callback=elicit) as client:
            assert client.protocol_version == STATELESS
            result = await client.call_tool("rounds", {})
    assert result.content[0].text == "Hello, Grace!"


@pytest.mark.gen_test(timeout=20)
async def test_request_state_is_sealed_and_a_forged_one_refused(base_url):
    url = f"{base_url}/everything/mcp"
    meta = {
        "io.modelcontextprotocol/protocolVersion": STATELESS,
        "io.modelcontextprotocol/clientInfo": {"name": "wire", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    }
    routing = {"MCP-Protocol-Version": STATELESS, "Mcp-Method": "tools/call", "Mcp-Name": "rounds"}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "rounds", "_meta": meta}}
    async with httpx2.AsyncClient(timeout=10) as http:
        first = (await http.post(url, json=call, headers=headers(token(), **routing))).json()["result"]
        assert first["resultType"] == "input_required" and "name" in first["inputRequests"]
        assert first["requestState"] != "asked-once"  # sealed: what leaves is not the handler's plaintext
        answer = {"name": {"action": "accept", "content": {"name": "Ada"}}}
        forged = {**call, "params": {**call["params"], "inputResponses": answer, "requestState": "asked-once"}}
        refused = await http.post(url, json=forged, headers=headers(token(), **routing))
        honest = {**call, "params": {**call["params"], "inputResponses": answer, "requestState": first["requestState"]}}
        done = await http.post(url, json=honest, headers=headers(token(), **routing))
    assert refused.json()["error"]["code"] == types.INVALID_PARAMS
    assert json.loads(done.text)["result"]["content"][0]["text"] == "Hello, Ada!"


async def _value(value: object) -> object:
    await asyncio.sleep(0)
    return value


@pytest.mark.gen_test(timeout=20)
async def test_a_session_that_ends_forgets_its_subscriptions(base_url, gateway):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        body = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": "memo://readme"}}
        answer = await http.post(url, json=body, headers=headers(session=session, version="2025-11-25"))
        assert answer.json()["result"] == {}
        await http.delete(url, headers=headers(session=session, version="2025-11-25"))
    async with mcp_client(url) as client:
        assert (await client.call_tool("touch", {"uri": "memo://readme"})).content[0].text == "touched"
