"""A stdio MCP server written with the official SDK, run as a child by `command:` backends."""

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer

mcp = MCPServer("stdio-child")


@mcp.tool()
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@mcp.tool()
async def pid() -> int:
    """The child's process id."""
    return os.getpid()


@mcp.tool()
async def count(steps: int, ctx: Context) -> str:
    """Count, reporting progress and logging."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps)
        await ctx.info(f"step {step}")
        await asyncio.sleep(0.01)
    return f"counted {steps}"


@mcp.tool()
async def ask(ctx: Context) -> str:
    """Elicit a colour from the user."""
    from pydantic import BaseModel

    class Colour(BaseModel):
        colour: str

    answer = await ctx.elicit("Favourite colour?", Colour)
    return f"you said {answer.data.colour}" if answer.action == "accept" else answer.action


CANCELLED = []


@mcp.tool()
async def sleep(seconds: float) -> str:
    """Sleep (for timeouts, cancellation and kills)."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        CANCELLED.append(seconds)
        raise
    return "slept"


@mcp.tool()
async def cancelled() -> int:
    """How many sleeps were cancelled."""
    return len(CANCELLED)


@mcp.tool()
async def announce(ctx: Context) -> str:
    """Tell every client that the tool list changed."""
    await ctx.request_context.session.send_tool_list_changed()
    return "announced"


@mcp.tool()
async def environment(name: str) -> str:
    """An environment variable of the child."""
    return os.environ.get(name, "<unset>")


@mcp.resource("child://stuck")
async def stuck() -> str:
    """Never answers (for timeout tests)."""
    await asyncio.sleep(3600)
    return "late"


if __name__ == "__main__":
    print("stdio child starting", file=sys.stderr, flush=True)
    if os.environ.get("CHILD_EXIT_AT_START") == "1":
        sys.exit(3)
    mcp.run("stdio")
