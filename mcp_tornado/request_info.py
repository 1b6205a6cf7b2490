"""`RequestInfo`: who is calling, as the transport knows it and the backends may read it.

The transport attaches one per session (or per stateless request) as the SDK's
`ServerRequestContext.request`; in-process handlers see it through `ToolContext`.
"""

from __future__ import annotations

from mcp_tornado.auth import Principal


class RequestInfo:
    """What a hosted server may know about who is calling: reaches handlers as `ctx.request`."""

    __slots__ = ("session_id", "api_key", "user_id", "server_name", "log_level")

    def __init__(self, session_id: str | None, principal: Principal, server_name: str) -> None:
        self.session_id = session_id
        # The threshold the client set with logging/setLevel; None means everything.
        self.log_level: str | None = None
        self.api_key = principal.api_key
        self.user_id = principal.user_id
        self.server_name = server_name
