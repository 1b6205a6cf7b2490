"""A server written with the official SDK's MCPServer, for the `app:` backend."""

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("sdk-app", instructions="An SDK server hosted by mcp-tornado")


@mcp.tool()
async def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


@mcp.resource("sdk://motto")
def motto() -> str:
    """The motto."""
    return "hosted, not rewritten"


@mcp.prompt()
def review(code: str) -> str:
    """Review some code."""
    return f"Please review:\n{code}"


@mcp.resource("sdk://stuck")
async def stuck() -> str:
    """Never answers (for timeout tests)."""
    import asyncio

    await asyncio.sleep(3600)
    return "late"
