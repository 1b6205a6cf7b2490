"""`make_app(settings, registry)`: the route table, nothing else."""

from __future__ import annotations

import tornado.web

from mcp_tornado.handlers.base import NotFoundHandler
from mcp_tornado.handlers.health import HealthHandler, StatusPageHandler
from mcp_tornado.handlers.mcp import McpHandler
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings

NAME = r"([A-Za-z0-9][A-Za-z0-9_-]{0,63})"


def make_app(settings: Settings, registry: ServerRegistry) -> tornado.web.Application:
    mcp = {"registry": registry, "settings": settings}
    return tornado.web.Application(
        [
            (r"/health", HealthHandler, {"registry": registry}),
            (r"/", StatusPageHandler, {"registry": registry}),
            (rf"/{NAME}/mcp", McpHandler, mcp),
            (rf"/mcp/{NAME}", McpHandler, mcp),
        ],
        default_handler_class=NotFoundHandler,
        compress_response=False,  # SSE frames must leave as they are written
    )
