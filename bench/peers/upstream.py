"""An official-SDK server with one tool, `add`, for the proxied scenario.

    python bench/peers/upstream.py stdio          # over stdin/stdout (the gateway's `command:`)
    python bench/peers/upstream.py http PORT      # Streamable HTTP on 127.0.0.1:PORT/mcp, JSON answers (`url:`)

The benchmark calls it directly with the SDK client, and through the gateway, and compares.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("upstream")


@mcp.tool()
async def add(a: float, b: float) -> str:
    """Add two numbers."""
    return str(a + b)


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        mcp.run("stdio")
    else:
        import uvicorn

        app = mcp.streamable_http_app(json_response=True)
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=False, log_level="warning")
