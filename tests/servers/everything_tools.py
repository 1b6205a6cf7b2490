import asyncio
import threading
import time


async def echo(arguments, context):
    return arguments["message"]


async def whoami(arguments, context):
    return {
        "api_key": context.api_key,
        "user_id": context.user_id,
        "server": context.server,
        "session_id": context.session_id,
    }


async def slow(arguments, context):
    for step in range(1, arguments["steps"] + 1):
        await context.progress(step, arguments["steps"], f"step {step}")
        await context.log("info", f"did step {step}")
        await asyncio.sleep(arguments.get("delay", 0.01))
    return f"done {arguments['steps']} steps"


async def ask_name(arguments, context):
    answer = await context.elicit(
        "What is your name?", {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    )
    if answer.action != "accept":
        return f"no name ({answer.action})"
    return f"Hello, {answer.content['name']}!"


async def haiku(arguments, context):
    result = await context.sample("Write a haiku", max_tokens=50)
    return f"model said: {result.content.text}"


CANCELLED = []


async def wait(arguments, context):
    try:
        await asyncio.sleep(arguments.get("seconds", 3600))
    except asyncio.CancelledError:
        CANCELLED.append(context.request_id)
        raise
    return "waited"


async def cancellations(arguments, context):
    return {"cancelled": len(CANCELLED)}


async def announce(arguments, context):
    await context.session.send_tool_list_changed()
    return "announced"


def blocking(arguments, context):
    time.sleep(arguments.get("seconds", 1))
    return "unblocked"


async def boom(arguments, context):
    raise RuntimeError("kaboom")


def sync_progress(arguments, context):
    for step in (1, 2):
        context.progress(step, 2)
    return "sync done"


async def clock(uri, context):
    return f"clock for {context.user_id}"


async def overflow(arguments, context):
    return {"product": arguments["a"] * arguments["b"]}  # 1e308 * 10 is inf


async def not_a_number(arguments, context):
    return float("nan")


# `hang`, `hang_resource`: sync handlers that block their thread until a `release` call.
_GATE = [threading.Event()]


def hang(arguments, context):
    _GATE[0].wait()
    return "released"


def hang_resource(uri, context):
    _GATE[0].wait()
    return "released"


async def release(arguments, context):
    """Lets every `hang` and `hang_resource` so far return; later ones block again."""
    gate, _GATE[0] = _GATE[0], threading.Event()
    gate.set()
    return "released"


async def hang_prompt(arguments, context):
    await asyncio.Event().wait()


async def poll_later(arguments, context):
    """Ends its SSE response early (SSE polling), then finishes: the client must resume."""
    await context.progress(1, 2, "before the break")
    await context.close_stream()
    await asyncio.sleep(arguments.get("pause", 0.3))
    await context.progress(2, 2, "after the break")
    return "polled"


async def note(variables, context):
    return f"note {variables['id']} for {context.user_id}"


async def touch(arguments, context):
    await context.resource_updated(arguments["uri"])
    return "touched"


def rounds(arguments, context):
    """Asks for a name first (an InputRequiredResult), then greets with it."""
    import mcp_types as types

    answer = (context.input_responses or {}).get("name")
    if answer is not None and context.request_state == "asked-once":
        return f"Hello, {answer.content['name']}!"
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    request = types.ElicitRequest(params=types.ElicitRequestFormParams(message="Your name?", requested_schema=schema))
    return types.InputRequiredResult(input_requests={"name": request}, request_state="asked-once")
