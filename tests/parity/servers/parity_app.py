"""The parity suite's server, written with the official SDK's `MCPServer`.

One module, three backend kinds: `app: parity_app:mcp` hosts this object in the gateway,
`command:` runs this file as a stdio child, and `python parity_app.py --fd FD` serves it
over Streamable HTTP (uvicorn) for `url:`. `parity.yaml` + `parity_tools.py` give the same
behaviour in-process.

Logging and sampling go through the session's own calls, which the SDK marks deprecated
from 2026-07-28 on; `_quiet` keeps that warning (an error under pytest, where the `app`
kind runs) from breaking the handshake revisions that still have them.
"""

import asyncio
import sys
import warnings

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import BaseModel

mcp = MCPServer(
    "parity",
    title="Parity",
    version="1.0.0",
    instructions="The same server behind every backend kind.",
)


def _quiet(call, *args, **kwargs):
    """Call a deprecated coroutine function: its warning is raised at call time, not on await."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return call(*args, **kwargs)


@mcp.tool()
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@mcp.tool()
async def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"failed on purpose: {reason}")


@mcp.tool()
async def steps(count: int, ctx: Context) -> str:
    """Reports progress and logs once per step."""
    for step in range(1, count + 1):
        await ctx.report_progress(step, count, f"step {step}")
        session = ctx.request_context.session
        await _quiet(session.send_log_message, level="info", data=f"did step {step}", related_request_id=ctx.request_id)
    return f"done {count} steps"


class Name(BaseModel):
    name: str


@mcp.tool()
async def ask(ctx: Context) -> str:
    """Elicits the user's name."""
    answer = await ctx.elicit("What is your name?", Name)
    if answer.action != "accept":
        return f"no name ({answer.action})"
    return f"Hello, {answer.data.name}!"


@mcp.tool()
async def haiku(ctx: Context) -> str:
    """Asks the client's model for a haiku."""
    prompt = types.SamplingMessage(role="user", content=types.TextContent(type="text", text="Write a haiku"))
    session = ctx.request_context.session
    result = await _quiet(session.create_message, [prompt], max_tokens=50, related_request_id=ctx.request_id)
    return f"model said: {result.content.text}"


CANCELLED: list[float] = []


@mcp.tool()
async def wait(seconds: float, ctx: Context) -> str:
    """Waits `seconds`, counting the waits that were cancelled."""
    await ctx.report_progress(0, None, "waiting")  # tells a test the call is running
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        CANCELLED.append(seconds)
        raise
    return "waited"


@mcp.tool()
async def cancellations() -> int:
    """How many waits were cancelled so far."""
    return len(CANCELLED)


@mcp.resource("parity://readme", name="readme", mime_type="text/markdown")
def readme() -> str:
    """The readme."""
    return "# Parity"


@mcp.prompt()
def greet(who: str, mood: str = "plain") -> str:
    """Greets someone."""
    return f"Say hello to {who} in a {mood} way."


NAMES = ["Ada", "Alan", "Grace"]


@mcp.completion()
async def complete(ref, argument, context):
    """Completes `greet`'s `who` from NAMES, as the YAML's static `values` do."""
    if not (isinstance(ref, types.PromptReference) and ref.name == "greet" and argument.name == "who"):
        return None
    matches = [name for name in NAMES if name.startswith(argument.value)]
    return types.Completion(values=matches, total=len(matches), has_more=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fd"]:
        # Streamable HTTP on a socket the test bound and is already listening on: no port race,
        # and connections made before uvicorn is up wait in the backlog instead of failing.
        import logging
        import socket

        import uvicorn

        logging.getLogger().setLevel(logging.WARNING)  # not a line per session opened
        listening = socket.socket(fileno=int(sys.argv[2]))
        server = uvicorn.Server(uvicorn.Config(mcp.streamable_http_app(), log_level="warning"))
        asyncio.run(server.serve(sockets=[listening]))
    else:
        mcp.run("stdio")
