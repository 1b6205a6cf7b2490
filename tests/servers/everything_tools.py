import asyncio
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
