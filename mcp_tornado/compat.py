"""The private APIs of other packages this project still needs, each with why, and what
public API would replace it. Nothing else in the package touches a private name of `mcp`,
`mcp_types` or tornado."""

from __future__ import annotations

from typing import Any

from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer


def lowlevel_server(app: MCPServer) -> Server[Any]:
    """The lowlevel `Server` behind an `MCPServer`, which is what the SDK's `ServerRunner` drives.

    Why: `app:` hosts a user's `MCPServer` through the same runner as every other backend,
    and `MCPServer` (mcp 2.3) keeps that object as `_lowlevel_server` with no public accessor.
    Replace with a public accessor (or `MCPServer` satisfying the runner's server protocol)
    once the SDK offers one.
    """
    return app._lowlevel_server
