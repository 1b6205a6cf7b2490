"""An upstream Streamable HTTP MCP server (the official SDK's MCPServer under uvicorn), for `url:` tests.

Run as `python remote_upstream.py PORT`.
"""

import os
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("remote-upstream")


@mcp.tool()
async def upstream_pid() -> int:
    """The upstream's process id."""
    return os.getpid()


@mcp.tool()
async def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


if __name__ == "__main__":
    uvicorn.run(mcp.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
