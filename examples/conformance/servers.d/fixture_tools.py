"""Handlers of `fixture.yaml`: the conformance suite's fixture as ordinary mcp-tornado handlers.

Every handler is `handler(arguments, context)` (resources: `handler(uri, context)`), written
against what `mcp_tornado/backends/context.py` offers: `progress`, `log`, `elicit`, `sample`,
and `session`. The names, texts and schemas are those of the suite's reference server
(`examples/servers/typescript/everything-server.ts` in modelcontextprotocol/conformance)
and of the Python SDK's (`fixture_server.py` next to this folder).

The multi-round-trip tools (SEP-2322, `test_input_required_result_*`) are written the way
they would be if `context` carried what the SDK's `Context` does (`input_responses`,
`request_state`, `client_capabilities`) and a handler could return an `InputRequiredResult`:
today it has neither, so they fail, and README.md in examples/conformance says how.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError

# A 1x1 red PNG and a minimal WAV, as the suite's reference server has them.
TEST_IMAGE_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
TEST_AUDIO_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021  # SEP-2575: the tool needs a capability the client did not declare

IMAGE = {"type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png"}


# -- content of every kind ----------------------------------------------------------------


def simple_text(arguments: dict[str, Any], context: Any) -> str:
    return "This is a simple text response for testing."


def image_content(arguments: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    return [IMAGE]


def audio_content(arguments: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    return [{"type": "audio", "data": TEST_AUDIO_BASE64, "mimeType": "audio/wav"}]


def embedded_resource(arguments: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    resource = {
        "uri": "test://embedded-resource",
        "mimeType": "text/plain",
        "text": "This is an embedded resource content.",
    }
    return [{"type": "resource", "resource": resource}]


def multiple_content_types(arguments: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    resource = {
        "uri": "test://mixed-content-resource",
        "mimeType": "application/json",
        "text": json.dumps({"test": "data", "value": 123}),
    }
    return [{"type": "text", "text": "Multiple content types test:"}, IMAGE, {"type": "resource", "resource": resource}]


def error_handling(arguments: dict[str, Any], context: Any) -> str:
    raise RuntimeError("This tool intentionally returns an error for testing")


def json_schema_2020_12(arguments: dict[str, Any], context: Any) -> str:
    return f"JSON Schema 2020-12 tool called with: {json.dumps(arguments)}"


def x_mcp_header(arguments: dict[str, Any], context: Any) -> str:
    return f"region={arguments.get('region', '<none>')}"


# -- talking back while working -----------------------------------------------------------


async def tool_with_logging(arguments: dict[str, Any], context: Any) -> str:
    await context.log("info", "Tool execution started")
    await asyncio.sleep(0.05)
    await context.log("info", "Tool processing data")
    await asyncio.sleep(0.05)
    await context.log("info", "Tool execution completed")
    return "Tool with logging executed successfully"


async def tool_with_progress(arguments: dict[str, Any], context: Any) -> str:
    for step in (0, 50, 100):
        await context.progress(step, 100, f"Completed step {step} of 100")
        if step < 100:
            await asyncio.sleep(0.05)
    # The reference servers answer with the request's progressToken; `context` does not carry it.
    return "Progress reported: 0, 50, 100 of 100"


async def sampling(arguments: dict[str, Any], context: Any) -> str:
    try:
        result = await context.sample(arguments["prompt"], max_tokens=100)
    except Exception as exc:  # the client may not sample: the reference servers answer in text too
        return f"Sampling not supported or error: {exc}"
    content = getattr(result, "content", None)
    text = getattr(content, "text", None) or "No response"
    return f"LLM response: {text}"


async def _elicit(context: Any, message: str, schema: dict[str, Any], prefix: str) -> str:
    try:
        result = await context.elicit(message, schema)
    except Exception as exc:
        return f"Elicitation not supported or error: {exc}"
    return f"{prefix}: action={result.action}, content={json.dumps(result.content or {})}"


async def elicitation(arguments: dict[str, Any], context: Any) -> str:
    schema = {
        "type": "object",
        "properties": {"response": {"type": "string", "description": "User's response"}},
        "required": ["response"],
    }
    return await _elicit(context, arguments["message"], schema, "User response")


SEP1034_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}


async def elicitation_sep1034_defaults(arguments: dict[str, Any], context: Any) -> str:
    message = "Please review and update the form fields with defaults"
    return await _elicit(context, message, SEP1034_SCHEMA, "Elicitation completed")


SEP1330_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Select one option",
            "enum": ["option1", "option2", "option3"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Select one option with titles",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "description": "Select one option (legacy)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Select multiple options",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Select multiple options with titles",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


async def elicitation_sep1330_enums(arguments: dict[str, Any], context: Any) -> str:
    message = "Please select options from the enum fields"
    return await _elicit(context, message, SEP1330_SCHEMA, "Elicitation completed")


async def reconnection(arguments: dict[str, Any], context: Any) -> str:
    """SEP-1699: end this call's SSE response mid-call; the client reconnects and gets the rest."""
    await context.log("info", "Before disconnect")
    close_stream = getattr(context, "close_stream", None)  # mcp-tornado since 4cc4e0f
    if close_stream is not None:
        await close_stream()
    await asyncio.sleep(0.2)  # the client reconnects meanwhile
    await context.log("info", "After reconnect")
    return "Reconnection test completed"


# -- 2026-07-28 (stateless) diagnostics ---------------------------------------------------


def _client_capabilities(context: Any) -> Any:
    """What the client declared: `context.client_capabilities` if mcp-tornado grows it, else the session's."""
    if hasattr(context, "client_capabilities"):
        return context.client_capabilities
    session = getattr(context, "session", None)
    return getattr(session, "client_capabilities", None)


async def missing_capability(arguments: dict[str, Any], context: Any) -> str:
    capabilities = _client_capabilities(context)
    if capabilities is None or capabilities.sampling is None:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="This tool requires the client 'sampling' capability",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return "Client declared sampling capability; proceeding."


async def logging_tool(arguments: dict[str, Any], context: Any) -> str:
    """SEP-2575: a 2026-07-28 request gets logs only if its `_meta` asked for a log level."""
    await context.log("info", "Diagnostic trace logging activated")
    return "Logging evaluated"


async def streaming_elicitation(arguments: dict[str, Any], context: Any) -> str:
    """SEP-2575: the response stream of a call carries notifications and the result, never requests."""
    await context.progress(50, 100)
    return "Streaming complete"


async def trigger_tool_change(arguments: dict[str, Any], context: Any) -> str:
    """SEP-2575: announce a tools list change to `subscriptions/listen` streams.

    An in-process handler can neither change its server's tool list nor publish to a
    subscriptions/listen stream; the nearest it has is the session's notification.
    """
    await context.session.send_tool_list_changed()
    return "tool list changed"


async def trigger_prompt_change(arguments: dict[str, Any], context: Any) -> str:
    await context.session.send_prompt_list_changed()
    return "prompt list changed"


# -- SEP-2322 multi-round-trip results ----------------------------------------------------

NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
OK_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


def _responses(context: Any) -> dict[str, Any]:
    return dict(getattr(context, "input_responses", None) or {})


def _state(context: Any) -> str | None:
    return getattr(context, "request_state", None)


def _elicit_request(message: str, schema: dict[str, Any]) -> types.ElicitRequest:
    return types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample_request(text: str, max_tokens: int) -> types.CreateMessageRequest:
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=text))
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(messages=[message], max_tokens=max_tokens)
    )


def _input_required(requests: dict[str, Any], state: str | None = None) -> types.InputRequiredResult:
    return types.InputRequiredResult(input_requests=requests, request_state=state)


def input_required_elicitation(arguments: dict[str, Any], context: Any) -> Any:
    answer = _responses(context).get("user_name")
    if answer is not None:
        return f"Hello, {(getattr(answer, 'content', None) or {}).get('name', 'stranger')}!"
    return _input_required({"user_name": _elicit_request("What is your name?", NAME_SCHEMA)})


def input_required_sampling(arguments: dict[str, Any], context: Any) -> Any:
    answer = _responses(context).get("capital_question")
    if answer is not None:
        return f"Model said: {getattr(getattr(answer, 'content', None), 'text', '?')}"
    return _input_required({"capital_question": _sample_request("What is the capital of France?", 100)})


def input_required_list_roots(arguments: dict[str, Any], context: Any) -> Any:
    answer = _responses(context).get("client_roots")
    if answer is not None:
        return f"Client exposed {len(getattr(answer, 'roots', []))} root(s)."
    return _input_required({"client_roots": types.ListRootsRequest()})


def input_required_request_state(arguments: dict[str, Any], context: Any) -> Any:
    if "confirm" in _responses(context) and _state(context) == "request-state-nonce":
        return "state-ok: confirmation received"
    return _input_required({"confirm": _elicit_request("Please confirm", OK_SCHEMA)}, "request-state-nonce")


def input_required_multiple_inputs(arguments: dict[str, Any], context: Any) -> Any:
    if {"user_name", "greeting", "client_roots"} <= _responses(context).keys():
        return "All inputs received."
    requests = {
        "user_name": _elicit_request("What is your name?", NAME_SCHEMA),
        "greeting": _sample_request("Generate a greeting", 50),
        "client_roots": types.ListRootsRequest(),
    }
    return _input_required(requests, "multiple-inputs")


def input_required_multi_round(arguments: dict[str, Any], context: Any) -> Any:
    raw = _state(context)
    state = json.loads(raw) if raw else {"round": 0}
    responses = _responses(context)
    if state.get("round") == 1 and "step1" in responses:
        name = (getattr(responses["step1"], "content", None) or {}).get("name")
        color_schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
        request = _elicit_request("Step 2: What is your favorite color?", color_schema)
        return _input_required({"step2": request}, json.dumps({"round": 2, "name": name}))
    if state.get("round") == 2 and "step2" in responses:
        color = (getattr(responses["step2"], "content", None) or {}).get("color")
        return f"{state.get('name')} likes {color}."
    return _input_required(
        {"step1": _elicit_request("Step 1: What is your name?", NAME_SCHEMA)}, json.dumps({"round": 1})
    )


def input_required_tampered_state(arguments: dict[str, Any], context: Any) -> Any:
    # Tampering is caught by the SDK's RequestStateSecurity before a handler runs (fixture_server.py).
    if _state(context) is None:
        return _input_required({"confirm": _elicit_request("Please confirm", OK_SCHEMA)}, "round-1")
    return f"state-ok: {_state(context)}"


def input_required_capabilities(arguments: dict[str, Any], context: Any) -> Any:
    capabilities = _client_capabilities(context)
    requests: dict[str, Any] = {}
    if capabilities is None or capabilities.sampling is not None:
        requests["sample"] = _sample_request("Say hello", 50)
    if capabilities is None or capabilities.elicitation is not None:
        requests["ask"] = _elicit_request("What is your name?", NAME_SCHEMA)
    return _input_required(requests, "capability-gated")


# -- resources and prompts ----------------------------------------------------------------


def template_data(variables: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"id": variables["id"], "templateTest": True, "data": f"Data for ID: {variables['id']}"}


def static_binary(uri: str, context: Any) -> bytes:
    return base64.b64decode(TEST_IMAGE_BASE64)


def prompt_with_embedded_resource(arguments: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    resource = {
        "uri": arguments["resourceUri"],
        "mimeType": "text/plain",
        "text": "Embedded resource content for testing.",
    }
    return [
        {"role": "user", "content": {"type": "resource", "resource": resource}},
        {"role": "user", "content": {"type": "text", "text": "Please process the embedded resource above."}},
    ]


def prompt_with_image(arguments: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": IMAGE},
        {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}},
    ]


def input_required_prompt(arguments: dict[str, Any], context: Any) -> Any:
    answer = _responses(context).get("user_context")
    if answer is not None:
        text = (getattr(answer, "content", None) or {}).get("context", "?")
        return [{"role": "user", "content": {"type": "text", "text": f"Use the following context: {text}"}}]
    schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
    return _input_required({"user_context": _elicit_request("What context should the prompt use?", schema)})
