"""`app:` an official-SDK server object (`MCPServer` or a lowlevel `Server`), hosted in-process.

The object's own lowlevel `Server` is what the transport drives, so every tool, resource and
prompt it registered, and every SDK rule, apply unchanged. Its lifespan runs from `start()`
to `stop()`.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_tornado.backends.base import Backend
from mcp_tornado.backends.curation import Curator, curated
from mcp_tornado.compat import lowlevel_server
from mcp_tornado.definitions import ServerSpec
from mcp_tornado.errors import DefinitionError
from mcp_tornado.importer import ImportFromStringError, import_from_string


class SdkAppBackend(Backend):
    kind = "app"

    def __init__(self, spec: ServerSpec, *, search_path: Path | None) -> None:
        assert spec.app is not None
        try:
            app = import_from_string(spec.app, search_path=search_path)
        except ImportFromStringError as exc:
            raise DefinitionError(spec.source, _line(spec), f"app: {exc}", field="app") from None
        if isinstance(app, MCPServer):
            server: Server[Any] = lowlevel_server(app)
        elif isinstance(app, Server):
            server = app
        else:
            problem = f"app: {spec.app} is a {type(app).__name__}, not an MCPServer or a lowlevel Server"
            raise DefinitionError(spec.source, _line(spec), problem, field="app")
        if server.get_request_handler("tools/list") is None:
            server = _listing_no_tools(server)
        # A reload of its module changes its lists, and we say so; a curation shows its own view.
        super().__init__(curated(server, spec.curation), list_changed=True)
        self._app = app
        self.request_timeout = spec.timeout
        self.modules = frozenset({spec.app.partition(":")[0]})
        self._lifespan: contextlib.AsyncExitStack | None = None
        self._curator = Curator(spec.curation)

    async def catalog(self) -> dict[str, Any] | None:
        if not isinstance(self._app, MCPServer):
            return None  # a lowlevel Server lists through its handlers, which may need a request
        app = self._app
        listed: dict[str, list[Any]] = {
            "tools": await app.list_tools(),
            "resources": await app.list_resources(),
            "prompts": await app.list_prompts(),
        }
        methods = {"tools": "tools/list", "resources": "resources/list", "prompts": "prompts/list"}
        return {
            kind: self._curator.result(methods[kind], {kind: [item.model_dump(mode="json") for item in items]})[kind]
            for kind, items in listed.items()
        }

    async def start(self) -> None:
        stack = contextlib.AsyncExitStack()
        self.lifespan_state = await stack.enter_async_context(self.server.lifespan(self.server))
        self._lifespan = stack
        await super().start()

    async def stop(self) -> None:
        if self._lifespan is not None:
            stack, self._lifespan = self._lifespan, None
            await stack.aclose()
        await super().stop()


def _listing_no_tools(server: Server[Any]) -> Server[Any]:
    """`server` (a lowlevel one without tools) answering `tools/list` with an empty list rather
    than "Method not found": multi-server clients (langchain-mcp-adapters' `get_tools()`) ask
    every server. A shallow copy with one more middleware (the SDK's documented way to wrap
    requests), so the user's object is left as it is; its capabilities still declare no tools."""

    async def no_tools(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/list":
            return await call_next(ctx)
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return {"tools": [], "resultType": "complete"}
        return {"tools": []}

    listing = copy.copy(server)
    listing.middleware = [*server.middleware, no_tools]
    return listing


def _line(spec: ServerSpec) -> int | None:
    return spec.lines.get(("app",)) if spec.lines else None
