"""The one place errors become HTTP: `BaseHandler.write_error`.

Our own `GatewayError`s carry their status and client message; anything else is a 500 that
is logged with a request id and reaches the client only as that id. MCP routes render errors
as JSON-RPC error objects, REST routes as `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import tornado.web

from mcp_tornado.errors import Forbidden, GatewayError, MisdirectedRequest

logger = logging.getLogger(__name__)


class BaseHandler(tornado.web.RequestHandler):
    jsonrpc_errors = False  # MCP routes answer errors as JSON-RPC error objects

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def check_host_and_origin(self) -> None:
        """DNS-rebinding protection with the SDK's rules: a Host we serve, an Origin we allow.

        The guard (an SDK `TransportSecurityMiddleware`) is in the application settings; absent,
        nothing is checked (a public listen address without MCP_ALLOWED_HOSTS/ORIGINS).
        """
        guard = self.application.settings.get("transport_security")
        if guard is None:
            return
        headers = self.request.headers
        if guard.settings.allowed_hosts and not guard._validate_host(headers.get("Host")):
            raise MisdirectedRequest("Host header not allowed")
        if guard.settings.allowed_origins and not guard._validate_origin(headers.get("Origin")):
            raise Forbidden("Origin not allowed")

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, GatewayError):
            if self._finished or self._headers_written:
                return
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, GatewayError | tornado.web.HTTPError):
            return super().log_exception(typ, value, tb) if isinstance(value, tornado.web.HTTPError) else None
        self._error_id = secrets.token_hex(6)
        logger.error(
            "request %s failed: %s %s", self._error_id, self.request.method, self.request.uri, exc_info=(typ, value, tb)
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        code: int
        if isinstance(exc, GatewayError):
            message, code = exc.message, exc.code
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, tornado.web.HTTPError) and status_code < 500:
            message, code = exc.log_message or self._reason, -32600
        else:
            error_id = getattr(self, "_error_id", None)
            message, code = f"internal error{f' (request {error_id})' if error_id else ''}", -32603
        self.set_header("Content-Type", "application/json")
        if self.jsonrpc_errors:
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
        else:
            body = {"error": {"code": status_code, "message": message}}
            if isinstance(exc, GatewayError) and exc.field is not None:
                body["error"]["field"] = exc.field
        self.finish(json.dumps(body))

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, indent=None, default=str))


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        from mcp_tornado.errors import NotFound

        raise NotFound(f"no route for {self.request.path}")
