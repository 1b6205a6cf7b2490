"""Handlers of `parity.yaml`: `parity_app.py`'s behaviour, written as in-process handlers.

Each answer is built to be the one the SDK's `MCPServer` gives for the same tool (text content
plus `structuredContent: {"result": ...}`, as the SDK wraps a function's return value).
"""

import asyncio

import mcp_types as types


def _result(value, text=None):
    """What the SDK answers for a tool whose function returned `value`."""
    content = [types.TextContent(type="text", text=str(value) if text is None else text)]
    return types.CallToolResult(content=content, structured_content={"result": value})


async def add(arguments, context):
    return _result(float(arguments["a"] + arguments["b"]))


async def fail(arguments, context):
    raise RuntimeError(f"failed on purpose: {arguments['reason']}")


async def steps(arguments, context):
    count = arguments["count"]
    for step in range(1, count + 1):
        await context.progress(step, count, f"step {step}")
        await context.log("info", f"did step {step}")
    return _result(f"done {count} steps")


NAME_SCHEMA = {
    "properties": {"name": {"title": "Name", "type": "string"}},
    "required": ["name"],
    "title": "Name",
    "type": "object",
}


async def ask(arguments, context):
    answer = await context.elicit("What is your name?", NAME_SCHEMA)
    if answer.action != "accept":
        return _result(f"no name ({answer.action})")
    return _result(f"Hello, {answer.content['name']}!")


async def haiku(arguments, context):
    result = await context.sample("Write a haiku", max_tokens=50)
    return _result(f"model said: {result.content.text}")


CANCELLED = []


async def wait(arguments, context):
    await context.progress(0, None, "waiting")
    try:
        await asyncio.sleep(arguments["seconds"])
    except asyncio.CancelledError:
        CANCELLED.append(arguments["seconds"])
        raise
    return _result("waited")


async def cancellations(arguments, context):
    return _result(len(CANCELLED))


async def greet(arguments, context):
    return f"Say hello to {arguments['who']} in a {arguments.get('mood', 'plain')} way."
