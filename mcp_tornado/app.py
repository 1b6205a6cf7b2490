"""`make_app(settings, registry)`: the route table, nothing else."""

from __future__ import annotations

import logging
import re

import tornado.log
import tornado.web

from mcp_tornado.definitions import NAME_RULE
from mcp_tornado.handlers.admin import ServerHandler, ServersHandler, TokensHandler
from mcp_tornado.handlers.base import HostGuard, NotFoundHandler
from mcp_tornado.handlers.health import HealthHandler, StatusPageHandler
from mcp_tornado.handlers.legacy_sse import LegacyMessagesHandler, LegacyStreamHandler
from mcp_tornado.handlers.mcp import McpHandler
from mcp_tornado.handlers.metrics import MetricsHandler
from mcp_tornado.handlers.oauth import WELL_KNOWN, ProtectedResourceHandler, RegistrationHandler
from mcp_tornado.handlers.openapi import OpenApiHandler
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings, transport_security
from mcp_tornado.telemetry import RequestCounter
from mcp_tornado.transport.legacy import LegacyConnections

NAME = f"({NAME_RULE})"


def make_app(settings: Settings, registry: ServerRegistry) -> tornado.web.Application:
    counter = RequestCounter()
    mcp = {"registry": registry, "settings": settings, "counter": counter}
    admin = {"registry": registry, "settings": settings}
    legacy = {**mcp, "connections": LegacyConnections()}
    discovery = {"registry": registry, "settings": settings}
    return tornado.web.Application(
        [
            (r"/health", HealthHandler, {"registry": registry}),
            (r"/", StatusPageHandler, {"registry": registry}),
            (r"/metrics", MetricsHandler, {"registry": registry, "counter": counter}),
            (r"/servers", ServersHandler, admin),
            (r"/servers/([^/]+)", ServerHandler, admin),
            (r"/tokens", TokensHandler, admin),
            (r"/openapi\.json", OpenApiHandler),
            (rf"/{NAME}/mcp", McpHandler, mcp),
            (rf"/mcp/{NAME}", McpHandler, mcp),
            (rf"/{NAME}/sse", LegacyStreamHandler, legacy),
            (rf"/{NAME}/messages", LegacyMessagesHandler, legacy),
            (rf"{re.escape(WELL_KNOWN)}/{NAME}/(?:mcp|sse)", ProtectedResourceHandler, discovery),
            (rf"{re.escape(WELL_KNOWN)}/mcp/{NAME}", ProtectedResourceHandler, discovery),
            (r"/register", RegistrationHandler, discovery),
        ],
        default_handler_class=NotFoundHandler,
        host_guard=_guard(settings),
        log_function=log_request,
        compress_response=False,  # SSE frames must leave as they are written
    )


def _guard(settings: Settings) -> HostGuard | None:
    security = transport_security(settings)
    return HostGuard(security) if security is not None else None


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log: failures always; successful MCP messages only at DEBUG, as they are the hot path."""
    status = handler.get_status()
    if status >= 500:
        log = tornado.log.access_log.error
    elif status >= 400:
        log = tornado.log.access_log.warning
    elif isinstance(handler, McpHandler | LegacyMessagesHandler):
        if not tornado.log.access_log.isEnabledFor(logging.DEBUG):
            return
        log = tornado.log.access_log.debug
    else:
        log = tornado.log.access_log.info
    request = handler.request
    log("%d %s %s (%s) %.2fms", status, request.method, request.uri, request.remote_ip, 1000.0 * request.request_time())
