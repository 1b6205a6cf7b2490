"""What every handler shares: errors become HTTP in one place (`write_error`), and the
Host/Origin check with the CORS that follows from it.

Our own `GatewayError`s carry their status and client message; anything else is a 500 that
is logged with a request id and reaches the client only as that id. MCP routes render errors
as JSON-RPC error objects, REST routes as `{"error": {"code", "message"}}`.

CORS: a browser page on an origin the Host/Origin check allows (`MCP_ALLOWED_ORIGINS`, or the
loopback origins on a loopback address) may call the routes that make that check, except the
management API (`cors = False`: admin tokens do not belong in web pages). Its preflight is
answered 204; every answer to it, errors included, names it in `Access-Control-Allow-Origin`
and exposes the headers an MCP client reads. An origin not allowed gets 403 and no CORS
header; with no check configured, no origin is opened.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import tornado.http1connection
import tornado.web
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request

from mcp_tornado import logs
from mcp_tornado.errors import Forbidden, GatewayError, MisdirectedRequest, PayloadTooLarge

logger = logging.getLogger(__name__)

CORS_METHODS = "GET, POST, DELETE, OPTIONS"
# What an MCP client sends: the Streamable HTTP headers, and the 2026-07-28 routing headers.
CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Mcp-Session-Id",
    "MCP-Protocol-Version",
    "Last-Event-ID",
    "Mcp-Method",
    "Mcp-Name",
)
# What it reads: the session id, a 401's challenge, the revision, how long to back off (429, 503), the request id.
CORS_EXPOSED_HEADERS = "Mcp-Session-Id, WWW-Authenticate, MCP-Protocol-Version, Retry-After, X-Request-Id"
# Seconds a browser may reuse a preflight's answer; Chromium caps it at two hours anyway.
CORS_MAX_AGE = 7200
# `Mcp-Param-<token>` (a tool argument mirrored into a header, 2026-07-28): the RFC 9110 token
# rule, bounded, so a preflight cannot make us echo anything else or anything huge.
MCP_PARAM_HEADER = re.compile(r"mcp-param-[!#$%&'*+\-.^_`|~0-9a-z]{1,64}", re.IGNORECASE)
MAX_PARAM_HEADERS = 32


# A body this many times over its limit is cut off by Tornado itself (a bare 400) before our 413
# could be sent: only reached by a client that ignores the 413 and keeps sending.
BODY_CUTOFF_FACTOR = 4


class BaseHandler(tornado.web.RequestHandler):
    jsonrpc_errors = False  # MCP routes answer errors as JSON-RPC error objects
    cors = True  # whether browsers on allowed origins may call the route (once it checks Host/Origin)
    _origin_checked = False
    _cors_origin: str | None = None  # the request's Origin, once the check allowed it
    request_id = ""  # the client's sane X-Request-Id, else ours: logged, and answered in X-Request-Id
    # A streamed body (`@tornado.web.stream_request_body` handlers that call `start_body`).
    _chunks: list[bytes] | None = None
    _received = 0
    _body_limit = 0

    def start_body(self, limit: int) -> None:
        """For a streaming handler's `prepare`: keep the body up to `limit` bytes. A declared
        Content-Length over it is 413 now; a chunked one is counted as it comes (`streamed_body`
        answers 413), and Tornado itself cuts the connection far past it."""
        self._chunks, self._received, self._body_limit = [], 0, limit
        length = self.request.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        connection = self.request.connection
        if isinstance(connection, tornado.http1connection.HTTP1Connection):
            connection.set_max_body_size(limit * BODY_CUTOFF_FACTOR)

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._chunks is not None and self._received <= self._body_limit:
            self._chunks.append(chunk)

    def streamed_body(self) -> bytes:
        """The body `start_body` kept; 413 when it was over the limit."""
        if self._received > self._body_limit:
            raise PayloadTooLarge(f"body over {self._body_limit} bytes")
        return b"".join(self._chunks or ())

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        if not self.request_id:
            self.request_id = logs.request_id(self.request.headers.get(logs.REQUEST_ID_HEADER))
        self.set_header(logs.REQUEST_ID_HEADER, self.request_id)
        if self._cors_origin is not None:  # also after an error cleared the headers: a 401 stays readable
            self._set_cors_headers(self._cors_origin)

    async def check_host_and_origin(self) -> None:
        """DNS-rebinding protection with the SDK's rules: a Host we serve, an Origin we allow.

        The guard (a `HostGuard`) is in the application settings; absent, nothing is checked
        (a public listen address without MCP_ALLOWED_HOSTS/ORIGINS), and no origin gets CORS.
        """
        if not self.host_and_origin_known():
            guard: HostGuard = self.application.settings["host_guard"]
            await guard.check(self.request.headers.get("Host"), self.request.headers.get("Origin"))
            self._origin_allowed()

    def host_and_origin_known(self) -> bool:
        """`check_host_and_origin` without awaiting, when the guard already knows this Host and
        Origin (the usual case: clients send the same pair every time). False: await the check."""
        guard: HostGuard | None = self.application.settings.get("host_guard")
        if guard is not None:
            if not guard.known(self.request.headers.get("Host"), self.request.headers.get("Origin")):
                return False
            self._origin_allowed()
        else:
            self._origin_checked = True
        return True

    def _origin_allowed(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin is not None and self.cors:
            self._cors_origin = origin
            self._set_cors_headers(origin)
        self._origin_checked = True

    def _set_cors_headers(self, origin: str) -> None:
        self.set_header("Access-Control-Allow-Origin", origin)
        self.set_header("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS)
        self.set_header("Vary", "Origin")

    async def options(self, *args: Any) -> None:
        """A CORS preflight (prepare has checked the Origin: one not allowed is a 403 by now)."""
        if not (self.cors and self._origin_checked):
            raise tornado.web.HTTPError(405)  # what Tornado answers for a method a handler lacks
        if self.request.headers.get("Origin") is not None:
            if self._cors_origin is None:
                raise Forbidden("cross-origin requests are not enabled on this server")
            self.set_header("Access-Control-Allow-Methods", CORS_METHODS)
            self.set_header("Access-Control-Allow-Headers", ", ".join(self._allowed_request_headers()))
            self.set_header("Access-Control-Max-Age", str(CORS_MAX_AGE))
        self.set_header("Allow", CORS_METHODS)
        self.set_status(204)
        self.finish()

    def _allowed_request_headers(self) -> list[str]:
        """The headers we take, with the `Mcp-Param-*` ones the preflight asks for (well-formed ones only)."""
        asked = self.request.headers.get("Access-Control-Request-Headers", "").split(",")
        params = [name for name in (a.strip() for a in asked) if MCP_PARAM_HEADER.fullmatch(name)]
        return [*CORS_REQUEST_HEADERS, *dict.fromkeys(params[:MAX_PARAM_HEADERS])]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, GatewayError | tornado.web.HTTPError):
            return super().log_exception(typ, value, tb) if isinstance(value, tornado.web.HTTPError) else None
        self._error_id = self.request_id
        logger.error(
            "request %s failed: %s %s", self._error_id, self.request.method, self.request.uri, exc_info=(typ, value, tb)
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        code: int
        if isinstance(exc, GatewayError):
            code = exc.code
            message, headers = self.explain(exc)
            for name, value in headers.items():
                self.set_header(name, value)
        elif isinstance(exc, tornado.web.HTTPError) and status_code < 500:
            message, code = exc.log_message or self._reason, -32600
        else:
            error_id = getattr(self, "_error_id", None)
            message, code = f"internal error{f' (request {error_id})' if error_id else ''}", -32603
        self.set_header("Content-Type", "application/json")
        if self.jsonrpc_errors:
            error: dict[str, Any] = {"code": code, "message": message}
            if isinstance(exc, GatewayError) and exc.data is not None:
                error["data"] = exc.data
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": self.request_id_of_error(), "error": error}
        else:
            body = {"error": {"code": status_code, "message": message}}
            if isinstance(exc, GatewayError) and exc.field is not None:
                body["error"]["field"] = exc.field
        self.finish(json.dumps(body))

    def request_id_of_error(self) -> Any:
        """The JSON-RPC id an error answer names: the request's, where the route can know it."""
        return None

    def explain(self, exc: GatewayError) -> tuple[str, Mapping[str, str]]:
        """What the client is told of `exc`: its message and headers. Routes that take bearer
        tokens override it to say where a token comes from (`handlers.oauth.explain`)."""
        return exc.message, exc.headers

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, indent=None, default=str))


class HostGuard:
    """The SDK's DNS-rebinding check (`TransportSecurityMiddleware.validate_request`), with its
    verdict remembered per (Host, Origin): clients send the same pair over and over."""

    CACHE_SIZE = 256

    def __init__(self, settings: TransportSecuritySettings) -> None:
        self._middleware = TransportSecurityMiddleware(settings)
        self._verdicts: dict[tuple[str | None, str | None], int] = {}

    def known(self, host: str | None, origin: str | None) -> bool:
        """True when this pair was judged before and is allowed; raises when it was refused;
        False when it has yet to be judged (`await check(...)`)."""
        status = self._verdicts.get((host, origin))
        if status is None:
            return False
        self._raise_for(status)
        return True

    async def check(self, host: str | None, origin: str | None) -> None:
        """Raises `MisdirectedRequest` (421) for a Host not served, `Forbidden` for an Origin not allowed."""
        key = (host, origin)
        status = self._verdicts.get(key)
        if status is None:
            scope_headers = [(b"host", host.encode("latin-1"))] if host is not None else []
            if origin is not None:
                scope_headers.append((b"origin", origin.encode("latin-1")))
            refusal = await self._middleware.validate_request(Request({"type": "http", "headers": scope_headers}))
            status = 200 if refusal is None else refusal.status_code
            if len(self._verdicts) >= self.CACHE_SIZE:
                self._verdicts.clear()  # an attacker's random Hosts cannot grow it
            self._verdicts[key] = status
        self._raise_for(status)

    @staticmethod
    def _raise_for(status: int) -> None:
        if status == 421:
            raise MisdirectedRequest("Host header not allowed")
        if status != 200:
            raise Forbidden("Origin not allowed")


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        from mcp_tornado.errors import NotFound

        raise NotFound(f"no route for {self.request.path}")
