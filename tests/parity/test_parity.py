"""One set of client-visible scenarios, run against every backend kind (see conftest.py).

Each test is parametrized over the four routes, which serve the same server behaviour; each
asserts what a client sees, and the same for all four. Where the answer to compare with is
"whatever the SDK says", it is asked of the SDK's own server: the uvicorn upstream, spoken to
directly, without the gateway (`sdk_url`). The `app` kind was meant to be that reference, and
mostly is, but it answers through our transport, and in one place (a handler's exception) that
shows.

Where our own (in-process) servers follow the spec's words and the SDK's MCPServer does not,
the test says so and checks each side.
"""

from __future__ import annotations

from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import eventually
from tests.e2e.wire import sse_events
from tests.parity.support import (
    INSTRUCTIONS,
    REFERENCE,
    TOOLS,
    Wire,
    bearer,
    client,
    comparable_capabilities,
    dump,
    kinds,
    route,
)


async def sdk_answer(sdk_url: str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the SDK's own server answers to one request, on a fresh session."""
    async with httpx2.AsyncClient(timeout=10) as http:
        wire = Wire(http, sdk_url)
        await wire.open()
        try:
            return await wire.answer(method, params)
        finally:
            await wire.close()


async def gateway_answer(base_url: str, kind: str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `kind`'s route answers to one request, on a fresh session."""
    async with httpx2.AsyncClient(timeout=10) as http:
        wire = Wire(http, route(base_url, kind), bearer=bearer(kind))
        await wire.open()
        try:
            return await wire.answer(method, params)
        finally:
            await wire.close()


# -- 1. initialize ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_initialize_declares_the_same_server(base_url, kind):
    async with httpx2.AsyncClient(timeout=10) as http:
        wire = Wire(http, route(base_url, kind), bearer=bearer(kind))
        result = await wire.open()
        await wire.close()
        reference_wire = Wire(http, route(base_url, REFERENCE), bearer=bearer(REFERENCE))
        reference = await reference_wire.open()
        await reference_wire.close()
    assert wire.session and all(0x21 <= ord(c) <= 0x7E for c in wire.session)  # Mcp-Session-Id, visible ASCII
    assert result["protocolVersion"] == "2025-11-25"
    assert result["instructions"] == INSTRUCTIONS
    assert {"tools", "resources", "prompts", "completions"} <= set(result["capabilities"])
    # `logging`, `listChanged` and `subscribe` are each backend's own (see comparable_capabilities).
    assert comparable_capabilities(result["capabilities"]) == comparable_capabilities(reference["capabilities"])
    # serverInfo: `name` is the route's for in-process servers (the YAML's `name:` is the route),
    # the SDK object's own ("parity") for app:, command: and url:. Title and version agree.
    info = result["serverInfo"]
    assert (info["title"], info["version"]) == ("Parity", "1.0.0")
    assert info["name"] == ("inprocess" if kind == "inprocess" else "parity")


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_ping(base_url, kind):
    async with client(base_url, kind) as session:
        assert isinstance(await session.send_ping(), types.EmptyResult)


# -- 2. tools -----------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_tools_list_names_and_schemas(base_url, kind):
    async with client(base_url, kind) as session, client(base_url, REFERENCE) as reference:
        listed = await session.list_tools()
        expected = await reference.list_tools()
    assert [tool.name for tool in listed.tools] == TOOLS
    add = listed.tools[0]
    assert add.input_schema == {
        "properties": {"a": {"title": "A", "type": "number"}, "b": {"title": "B", "type": "number"}},
        "required": ["a", "b"],
        "title": "addArguments",
        "type": "object",
    }
    assert add.output_schema is not None and add.output_schema["properties"]["result"]["type"] == "number"
    assert dump(listed) == dump(expected)


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_tools_call_with_structured_content(base_url, kind):
    async with client(base_url, kind) as session:
        result = await session.call_tool("add", {"a": 2, "b": 40})
    assert not result.is_error
    assert result.structured_content == {"result": 42.0}
    assert [dump(block) for block in result.content] == [{"type": "text", "text": "42.0"}]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_a_failing_tool_is_an_error_result_with_its_message(base_url, kind):
    async with client(base_url, kind) as session:
        failed = await session.call_tool("fail", {"reason": "because"})
        invalid = await session.call_tool("add", {"a": "two"})
    assert failed.is_error and failed.structured_content is None
    assert len(failed.content) == 1
    # The message is the handler's; what wraps it is the backend's own: the SDK says "Error
    # executing tool fail: ...", the in-process backend "Tool fail failed: RuntimeError: ...".
    assert "failed on purpose: because" in failed.content[0].text
    # Invalid arguments are an error result everywhere; the text is the validator's own (jsonschema
    # in-process, pydantic in the SDK), so only the flag is compared.
    assert invalid.is_error and invalid.structured_content is None


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_an_unknown_tool_is_answered_as_the_sdk_answers_it(base_url, sdk_url, kind):
    params = {"name": "nope", "arguments": {}}
    answer = await gateway_answer(base_url, kind, "tools/call", params)
    if kind == "inprocess":
        # Our own servers say what the spec says ("Protocol Errors ... Unknown tools": -32602);
        # the SDK's MCPServer answers a tool error instead, and SDK-backed routes keep that.
        assert answer["error"] == {"code": types.INVALID_PARAMS, "message": "Unknown tool: nope"}
        return
    expected = await sdk_answer(sdk_url, "tools/call", params)
    assert expected["result"]["isError"] is True  # the SDK's MCPServer: a tool error, not a protocol error
    assert answer == expected


# -- 3. progress and logs -----------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_progress_and_logs_reach_the_client_in_order(base_url, kind):
    seen: list[tuple[Any, ...]] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        seen.append(("log", params.level, params.data))

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(("progress", progress, total, message))

    async with client(base_url, kind, logging_callback=on_log) as session:
        result = await session.call_tool("steps", {"count": 3}, progress_callback=on_progress)
    assert result.structured_content == {"result": "done 3 steps"}
    assert seen == [
        entry
        for step in (1, 2, 3)
        for entry in (("progress", step, 3, f"step {step}"), ("log", "info", f"did step {step}"))
    ]


# -- 4. resources and prompts -------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_resources_list_and_read(base_url, kind):
    async with client(base_url, kind) as session:
        listed = await session.list_resources()
        read = await session.read_resource("parity://readme")
        with pytest.raises(MCPError) as missing:
            await session.read_resource("parity://missing")
    assert [dump(r) for r in listed.resources] == [
        {"name": "readme", "uri": "parity://readme", "description": "The readme.", "mimeType": "text/markdown"}
    ]
    assert [dump(c) for c in read.contents] == [
        {"uri": "parity://readme", "mimeType": "text/markdown", "text": "# Parity"}
    ]
    # The code is the SDK's (-32602, SEP-2164) everywhere; the in-process message is "Resource not
    # found" where the SDK says "Unknown resource: parity://missing" (the data names the URI in both).
    assert missing.value.error.code == types.INVALID_PARAMS
    assert missing.value.error.data == {"uri": "parity://missing"}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_resource_templates_list_is_answered_as_the_sdk_answers_it(base_url, sdk_url, kind):
    expected = await sdk_answer(sdk_url, "resources/templates/list")
    assert expected["result"] == {"resourceTemplates": []}
    assert await gateway_answer(base_url, kind, "resources/templates/list") == expected


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_prompts_list_get_and_complete(base_url, kind):
    async with client(base_url, kind) as session:
        listed = await session.list_prompts()
        prompt = await session.get_prompt("greet", {"who": "Ada", "mood": "cheerful"})
        default = await session.get_prompt("greet", {"who": "Grace"})
        completion = await session.complete(
            types.PromptReference(type="ref/prompt", name="greet"), {"name": "who", "value": "A"}
        )
    assert [dump(p) for p in listed.prompts] == [
        {
            "name": "greet",
            "description": "Greets someone.",
            "arguments": [{"name": "who", "required": True}, {"name": "mood", "required": False}],
        }
    ]
    assert dump(prompt) == {
        "description": "Greets someone.",
        "messages": [{"role": "user", "content": {"type": "text", "text": "Say hello to Ada in a cheerful way."}}],
    }
    assert default.messages[0].content.text == "Say hello to Grace in a plain way."
    assert dump(completion.completion) == {"values": ["Ada", "Alan"], "total": 2, "hasMore": False}


# Prompt errors: the spec names -32602 for an unknown prompt and for missing arguments, and our
# own servers answer that; the SDK's MCPServer raises, which its dispatcher sends as code 0 with
# the text, and SDK-backed routes (app: included) answer exactly that.
SPEC_PROMPT_ERRORS = {
    "missing": {"code": types.INVALID_PARAMS, "message": "Missing required argument(s): who"},
    "unknown": {"code": types.INVALID_PARAMS, "message": "Unknown prompt: nope"},
}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_a_missing_prompt_argument_is_answered_as_the_sdk_answers_it(base_url, sdk_url, kind):
    params = {"name": "greet", "arguments": {"mood": "grumpy"}}
    answer = await gateway_answer(base_url, kind, "prompts/get", params)
    if kind == "inprocess":
        assert answer["error"] == SPEC_PROMPT_ERRORS["missing"]
        return
    expected = await sdk_answer(sdk_url, "prompts/get", params)
    assert "error" in expected and "who" in expected["error"]["message"]
    assert answer == expected


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_an_unknown_prompt_is_answered_as_the_sdk_answers_it(base_url, sdk_url, kind):
    params = {"name": "nope", "arguments": {}}
    answer = await gateway_answer(base_url, kind, "prompts/get", params)
    if kind == "inprocess":
        assert answer["error"] == SPEC_PROMPT_ERRORS["unknown"]
        return
    expected = await sdk_answer(sdk_url, "prompts/get", params)
    assert "error" in expected
    assert answer == expected


# -- 5. cancellation ----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_a_cancelled_call_gets_no_answer_and_the_server_stops_it(base_url, kind):
    async with httpx2.AsyncClient(timeout=10) as http:
        wire = Wire(http, route(base_url, kind), bearer=bearer(kind))
        await wire.open()
        before = (await wire.answer("tools/call", {"name": "cancellations", "arguments": {}}))["result"]
        call = wire.body("tools/call", {"name": "wait", "arguments": {"seconds": 30}, "_meta": {"progressToken": 1}})
        async with http.stream("POST", wire.url, json=call, headers=wire.headers()) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            events = _events(stream)
            started = await anext(events)  # the tool's first progress: it is running
            assert started["method"] == "notifications/progress"
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": call["id"]}}
            assert (await http.post(wire.url, json=cancel, headers=wire.headers())).status_code == 202
            rest = [message async for message in events]  # the stream ends ...
        assert not [m for m in rest if m.get("id") == call["id"]], rest  # ... with no answer to the call

        async def counted() -> bool:
            after = await wire.answer("tools/call", {"name": "cancellations", "arguments": {}})
            return after["result"]["structuredContent"]["result"] == before["structuredContent"]["result"] + 1

        await eventually(counted, message="the server never reported the call cancelled")
        # The session is fine afterwards.
        assert (await wire.answer("tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}}))["result"][
            "structuredContent"
        ] == {"result": 2.0}


async def _events(stream: httpx2.Response) -> Any:
    """The JSON-RPC messages of an SSE response, as they arrive."""
    buffer = ""
    async for chunk in stream.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            for event in sse_events(block + "\n\n"):
                yield event["data"]


# -- 6. elicitation and sampling ----------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_elicitation_is_answered_by_the_client(base_url, kind):
    asked: list[dict[str, Any]] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(dump(params))
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async with client(base_url, kind, elicitation_callback=elicit) as session:
        result = await session.call_tool("ask", {})
    assert asked == [
        {
            "mode": "form",
            "message": "What is your name?",
            "requestedSchema": {
                "properties": {"name": {"title": "Name", "type": "string"}},
                "required": ["name"],
                "title": "Name",
                "type": "object",
            },
        }
    ]
    assert result.structured_content == {"result": "Hello, Ada!"}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_sampling_is_answered_by_the_client(base_url, kind):
    asked: list[dict[str, Any]] = []

    async def sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(dump(params))
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="old pond"), model="test-model"
        )

    async with client(base_url, kind, sampling_callback=sample) as session:
        result = await session.call_tool("haiku", {})
    haiku = {"role": "user", "content": {"type": "text", "text": "Write a haiku"}}
    assert asked == [{"messages": [haiku], "maxTokens": 50}]
    assert result.structured_content == {"result": "model said: old pond"}


# -- 7. pagination, logging level -----------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_lists_fit_one_page(base_url, kind):
    """Every list is short, so the first page is the whole list and carries no cursor."""
    async with client(base_url, kind) as session:
        pages = [await session.list_tools(), await session.list_resources(), await session.list_prompts()]
    assert [page.next_cursor for page in pages] == [None, None, None]
    assert [len(pages[0].tools), len(pages[1].resources), len(pages[2].prompts)] == [len(TOOLS), 1, 1]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_an_unknown_cursor_is_answered_as_the_sdk_answers_it(base_url, sdk_url, kind):
    params = {"cursor": "no-such-cursor"}
    answer = await gateway_answer(base_url, kind, "tools/list", params)
    if kind == "inprocess":
        # Our own servers do what the spec asks ("SHOULD return -32602" for an invalid cursor);
        # the SDK's MCPServer ignores it and lists everything, and SDK-backed routes keep that.
        assert answer["error"] == {"code": types.INVALID_PARAMS, "message": "Invalid cursor"}
        return
    expected = await sdk_answer(sdk_url, "tools/list", params)
    assert [tool["name"] for tool in expected["result"]["tools"]] == TOOLS
    assert answer == expected


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("kind", kinds())
async def test_logging_set_level_is_answered_as_the_capabilities_say(base_url, sdk_url, kind):
    """A server that declares `logging` accepts logging/setLevel; one that does not (the SDK's
    MCPServer) answers Method not found, as the SDK's own server does."""
    # "debug" lets everything through: this package shares its upstreams, whatever a fix does.
    params = {"level": "debug"}
    assert (await sdk_answer(sdk_url, "logging/setLevel", params))["error"]["code"] == types.METHOD_NOT_FOUND
    async with httpx2.AsyncClient(timeout=10) as http:
        wire = Wire(http, route(base_url, kind), bearer=bearer(kind))
        declared = "logging" in (await wire.open())["capabilities"]
        answer = await wire.answer("logging/setLevel", params)
        await wire.close()
    if declared:
        assert answer == {"jsonrpc": "2.0", "result": {}}
    else:
        assert answer["error"]["code"] == types.METHOD_NOT_FOUND
