"""`make_app(settings, registry)`: the route table, nothing else."""

from __future__ import annotations

import logging
import re

import tornado.log
import tornado.web

from mcp_tornado import logs
from mcp_tornado.definitions import NAME_RULE
from mcp_tornado.handlers.admin import ServerHandler, ServersHandler, TokensHandler
from mcp_tornado.handlers.base import HostGuard, NotFoundHandler
from mcp_tornado.handlers.console import console_routes
from mcp_tornado.handlers.health import HealthHandler
from mcp_tornado.handlers.legacy_sse import LegacyMessagesHandler, LegacyStreamHandler
from mcp_tornado.handlers.mcp import McpHandler
from mcp_tornado.handlers.metrics import GatewayCollector, MetricsHandler
from mcp_tornado.handlers.oauth import WELL_KNOWN, ProtectedResourceHandler, RegistrationHandler
from mcp_tornado.handlers.openapi import OpenApiHandler
from mcp_tornado.handlers.tools_http import ToolCallHandler, ToolsDocumentHandler
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings, transport_security
from mcp_tornado.telemetry import Telemetry
from mcp_tornado.tracing import tracing_from
from mcp_tornado.transport.legacy import LegacyConnections

NAME = f"({NAME_RULE})"


def make_app(settings: Settings, registry: ServerRegistry) -> tornado.web.Application:
    telemetry = Telemetry(tracing_from(settings))  # the app's own metrics registry, and tracing when asked for
    telemetry.registry.register(GatewayCollector(registry, telemetry))  # gauges, read when scraped
    mcp = {"registry": registry, "settings": settings, "telemetry": telemetry}
    admin = {"registry": registry, "settings": settings}
    legacy = {
        "registry": registry,
        "settings": settings,
        "counter": telemetry.requests,
        "connections": LegacyConnections(),
    }
    discovery = {"registry": registry, "settings": settings}
    return tornado.web.Application(
        [
            # Tornado tries the routes in order: the hot path's first.
            (rf"/{NAME}/mcp", McpHandler, mcp),
            (r"/health", HealthHandler, {"registry": registry}),
            *console_routes(registry, settings),  # `/` and `/console/...`
            (r"/metrics", MetricsHandler, {"registry": registry, "telemetry": telemetry}),
            (r"/servers", ServersHandler, admin),
            (r"/servers/([^/]+)", ServerHandler, admin),
            (r"/tokens", TokensHandler, admin),
            (r"/openapi\.json", OpenApiHandler),
            (rf"/mcp/{NAME}", McpHandler, mcp),
            (rf"/{NAME}/sse", LegacyStreamHandler, legacy),
            (rf"/{NAME}/messages", LegacyMessagesHandler, legacy),
            (rf"/{NAME}/openapi\.json", ToolsDocumentHandler, discovery),
            (rf"/{NAME}/tools/([^/]+)", ToolCallHandler, discovery),
            (rf"{re.escape(WELL_KNOWN)}/{NAME}/(?:mcp|sse)", ProtectedResourceHandler, discovery),
            (rf"{re.escape(WELL_KNOWN)}/mcp/{NAME}", ProtectedResourceHandler, discovery),
            (r"/register", RegistrationHandler, discovery),
        ],
        default_handler_class=NotFoundHandler,
        host_guard=_guard(settings),
        log_function=log_request,
        telemetry=telemetry,  # `Gateway.stop` shuts its tracing down
        compress_response=False,  # SSE frames must leave as they are written
    )


def _guard(settings: Settings) -> HostGuard | None:
    security = transport_security(settings)
    return HostGuard(security) if security is not None else None


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log, one line a request with its id: failures always; successful MCP messages only
    at DEBUG, as they are the hot path (nothing is formatted while DEBUG is off)."""
    status = handler.get_status()
    access = tornado.log.access_log
    if status >= 500:
        level = logging.ERROR
    elif status >= 400:
        level = logging.WARNING
    elif isinstance(handler, McpHandler | LegacyMessagesHandler):
        if not access.isEnabledFor(logging.DEBUG):
            return
        level = logging.DEBUG
    else:
        level = logging.INFO
    request = handler.request
    server = rpc_method = None
    path_args = getattr(handler, "path_args", None)  # none when Tornado refused the method before routing
    if isinstance(handler, McpHandler | LegacyMessagesHandler | LegacyStreamHandler) and path_args:
        server = path_args[0]
        rpc_method = handler.rpc_method if isinstance(handler, McpHandler) else None
    logs.AccessLine(
        status,
        request.method,
        request.uri or "",
        request.remote_ip,
        1000.0 * request.request_time(),
        getattr(handler, "request_id", None),
        server,
        rpc_method,
    ).log(level)
