"""Errors raised deep down and mapped to HTTP in exactly one place (`handlers.base`).

    GatewayError                 (500, INTERNAL_ERROR)
    ├── BadRequest               (400, INVALID_REQUEST)
    │   ├── ParseError           (400, PARSE_ERROR)       malformed JSON
    │   ├── MissingSession       (400, INVALID_REQUEST)   no Mcp-Session-Id
    │   └── BadProtocolVersion   (400, -32022)            bad or unsupported MCP-Protocol-Version
    ├── Unauthorized             (401)                     missing, malformed, badly signed or expired token
    ├── Forbidden                (403)                     token for another server, wrong api key, not admin
    │   └── InsufficientScope    (403)                     a token without a scope the server or tool needs
    ├── NotFound                 (404)                     unknown server, unknown or ended session
    ├── MethodNotAllowed         (405)
    ├── NotAcceptable            (406)                     wrong Accept
    ├── MisdirectedRequest       (421)                     a Host header we do not serve
    ├── Conflict                 (409)                     a second GET stream on one session
    ├── PayloadTooLarge          (413)
    ├── UnsupportedMediaType     (415)                     wrong Content-Type
    ├── TooManyRequests          (429, Retry-After)        too many requests in flight, or past a rate limit
    └── Unavailable              (503, Retry-After)        hosted server down or restarting

Each class knows its HTTP status and the JSON-RPC code used when the error is rendered on an
MCP route. `message` is what the client sees; never put secrets or tracebacks in it.
`GatewayError` is a Tornado `HTTPError`, so raising one anywhere in a handler ends in
`BaseHandler.write_error`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tornado.web
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, UNSUPPORTED_PROTOCOL_VERSION


class GatewayError(tornado.web.HTTPError):
    """Tornado's `HTTPError` with its status set by the class, so Tornado's own error path
    (`send_error` -> `write_error`, which always finishes the response) renders it."""

    status = 500
    code = INTERNAL_ERROR

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, field: str | None = None, data: Any = None
    ) -> None:
        super().__init__(self.status)
        self.args = (message,)
        self.message = message
        self.headers = headers or {}
        self.field = field  # the request field at fault, when there is one (REST bodies)
        self.data = data  # the JSON-RPC error's `data`, when the spec gives it one

    def __str__(self) -> str:
        return self.message


class BadRequest(GatewayError):
    status = 400
    code = INVALID_REQUEST


class ParseError(BadRequest):
    code = PARSE_ERROR


class MissingSession(BadRequest):
    pass


class BadProtocolVersion(BadRequest):
    """An `MCP-Protocol-Version` we do not serve: -32022 with the versions we do (2026-07-28's layout)."""

    code = UNSUPPORTED_PROTOCOL_VERSION


def bearer_challenge(error: str, *, scope: str | None = None, resource_metadata: str | None = None) -> str:
    """A `WWW-Authenticate` value (RFC 6750 section 3): the failure, the scopes a request needs,
    and where an OAuth client finds the resource's metadata (RFC 9728 section 5.1)."""
    challenge = 'Bearer realm="mcp-tornado"'
    if resource_metadata is not None:
        challenge += f', resource_metadata="{resource_metadata}"'
    challenge += f', error="{error}"'
    if scope is not None:
        challenge += f', scope="{scope}"'
    return challenge


class Unauthorized(GatewayError):
    status = 401
    code = INVALID_REQUEST

    def __init__(self, message: str, *, error: str = "invalid_token") -> None:
        # RFC 6750 section 3: the challenge names the failure so clients know to fetch a new token.
        super().__init__(message, headers={"WWW-Authenticate": bearer_challenge(error)})
        self.error = error


class Forbidden(GatewayError):
    status = 403
    code = INVALID_REQUEST


class InsufficientScope(Forbidden):
    """A token without every scope the request needs; `scopes` are all it needs (RFC 6750 section
    3.1), so an OAuth client can ask its authorization server for them (step-up)."""

    def __init__(self, message: str, *, scopes: Iterable[str]) -> None:
        self.scopes = tuple(sorted(set(scopes)))
        scope = " ".join(self.scopes)
        super().__init__(message, headers={"WWW-Authenticate": bearer_challenge("insufficient_scope", scope=scope)})


class NotFound(GatewayError):
    status = 404
    code = INVALID_REQUEST


class MethodNotAllowed(GatewayError):
    status = 405
    code = INVALID_REQUEST

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message, headers={"Allow": allow})


class MisdirectedRequest(GatewayError):
    status = 421  # a Host we do not serve: DNS rebinding, as the SDK answers it
    code = INVALID_REQUEST


class NotAcceptable(GatewayError):
    status = 406
    code = INVALID_REQUEST


class Conflict(GatewayError):
    status = 409
    code = INVALID_REQUEST


class PayloadTooLarge(GatewayError):
    status = 413
    code = INVALID_REQUEST


class UnsupportedMediaType(GatewayError):
    status = 415
    code = INVALID_REQUEST


class TooManyRequests(GatewayError):
    status = 429
    code = INVALID_REQUEST

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))})


class Unavailable(GatewayError):
    status = 503
    code = INTERNAL_ERROR

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))})


class BadGateway(GatewayError):
    """What the server behind the route answered cannot be turned into an answer (a REST tool call)."""

    status = 502


class GatewayTimeout(GatewayError):
    """The server behind the route did not answer in time (a REST tool call)."""

    status = 504


class DefinitionError(Exception):
    """A server definition that cannot be loaded: `str()` is `file:line: problem`."""

    def __init__(self, path: str, line: int | None, problem: str, *, field: str | None = None) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        self.field = field  # dotted path of the definition field at fault, e.g. "tools.0.handler"
        super().__init__(f"{path}:{line if line is not None else 1}: {problem}")
