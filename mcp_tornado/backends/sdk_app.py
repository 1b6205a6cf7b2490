"""`app:` an official-SDK server object (`MCPServer` or a lowlevel `Server`), hosted in-process.

The object's own lowlevel `Server` is what the transport drives, so every tool, resource and
prompt it registered, and every SDK rule, apply unchanged. Its lifespan runs from `start()`
to `stop()`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer

from mcp_tornado.backends.base import Backend
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
        super().__init__(server, list_changed=True)  # a reload of its module changes its lists, and we say so
        self._app = app
        self.request_timeout = spec.timeout
        self.modules = frozenset({spec.app.partition(":")[0]})
        self._lifespan: contextlib.AsyncExitStack | None = None

    async def catalog(self) -> dict[str, Any] | None:
        if not isinstance(self._app, MCPServer):
            return None  # a lowlevel Server lists through its handlers, which may need a request
        app = self._app
        listed: dict[str, list[Any]] = {
            "tools": await app.list_tools(),
            "resources": await app.list_resources(),
            "prompts": await app.list_prompts(),
        }
        return {kind: [item.model_dump(mode="json") for item in items] for kind, items in listed.items()}

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


def _line(spec: ServerSpec) -> int | None:
    return spec.lines.get(("app",)) if spec.lines else None
