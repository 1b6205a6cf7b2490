"""The official Python SDK's `MCPServer` under uvicorn: the reference mcp-tornado is compared with.

    python bench/peers/sdk_server.py PORT MODE

MODE:
  json            stateful sessions, `json_response=True` (JSON answers)
  sse             stateful sessions, the SDK's default (every POST answered as an SSE stream)
  stateless       `stateless_http=True, json_response=True`, no auth. 2026-07-28 requests (header
                  `MCP-Protocol-Version: 2026-07-28`) take the SDK's per-request path in any mode.
  stateless-auth  the same, with the SDK's bearer-token middleware and a `TokenVerifier` that checks
                  an HS256 JWT (secret from BENCH_JWT_SECRET) on every request, as mcp-tornado does.

Tools: `add(a, b)`, and `add_progress(a, b)`, which reports progress once before it answers.
uvicorn runs as `pip install mcp` brings it (asyncio loop, h11), one process, no access log.
"""

from __future__ import annotations

import os
import sys

import jwt
import uvicorn
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer


class JWTVerifier:
    """Verifies an HS256 JWT naming this server, like mcp-tornado's own check."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"require": ["exp"]})
        except jwt.InvalidTokenError:
            return None
        if claims.get("serverName") != "bench":
            return None
        return AccessToken(
            token=token, client_id=str(claims.get("userId", "bench")), scopes=[], expires_at=claims["exp"]
        )


def build(port: int, mode: str) -> MCPServer:
    if mode == "stateless-auth":
        base = f"http://127.0.0.1:{port}"
        mcp = MCPServer(
            "bench",
            token_verifier=JWTVerifier(os.environ["BENCH_JWT_SECRET"]),
            auth=AuthSettings(
                issuer_url=base,  # type: ignore[arg-type]
                resource_server_url=f"{base}/mcp",  # type: ignore[arg-type]
                validate_token_resource=False,  # the verifier checks the token names this server
            ),
        )
    else:
        mcp = MCPServer("bench")

    @mcp.tool()
    async def add(a: float, b: float) -> str:
        """Add two numbers."""
        return str(a + b)

    @mcp.tool()
    async def add_progress(a: float, b: float, ctx: Context) -> str:
        """Add two numbers, reporting progress once."""
        await ctx.report_progress(1, 1, "adding")
        return str(a + b)

    return mcp


if __name__ == "__main__":
    port, mode = int(sys.argv[1]), sys.argv[2]
    app = build(port, mode).streamable_http_app(
        json_response=mode != "sse", stateless_http=mode.startswith("stateless")
    )
    # As `pip install mcp` brings it, whatever else the environment has: uvicorn would pick uvloop
    # and httptools up by itself where they are installed (loop="auto", http="auto").
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning", loop="asyncio", http="h11")
