"""The 2026-07-28 revision: one self-contained POST per request, no session.

Each request carries its own envelope (protocol version, client capabilities) in
`params._meta`; the `mcp` SDK's `classify_inbound_request` checks it against the routing
headers and `serve_one` runs the request through the same `ServerRunner` kernel as a
session. The answer is JSON unless the server sends notifications first (then SSE, like a
session's POST); the server may not send requests at this revision, and a client cancels by
closing the response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.runner import modern_error_data, serve_one
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import HEADER_MISMATCH, REQUEST_TIMEOUT, ErrorData, JSONRPCNotification, JSONRPCRequest
from pydantic import ValidationError

from mcp_tornado.auth import Principal
from mcp_tornado.errors import BadRequest
from mcp_tornado.request_info import RequestInfo
from mcp_tornado.transport.exchange import Exchange, JsonAnswer, OpenSink, Reply
from mcp_tornado.transport.jsonrpc import check_ids, dumps, loads
from mcp_tornado.transport.protocols import ServedBackend

NO_BACK_CHANNEL = TransportContext(kind="streamable-http", can_send_request=False)


def status_of(error: Mapping[str, Any] | None) -> int:
    """The HTTP status the SDK's table gives a JSON-RPC error code (200 for results)."""
    return 200 if error is None else ERROR_CODE_HTTP_STATUS.get(int(error.get("code", 0)), 200)


def decode(body: bytes) -> tuple[JSONRPCRequest, dict[str, Any]] | None:
    """The request a body carries (validated, and as decoded), or None for a notification
    (which means nothing at this revision). Raises `BadRequest` / `ParseError`."""
    decoded = loads(body)
    if isinstance(decoded, dict) and "id" not in decoded:
        try:
            JSONRPCNotification.model_validate(decoded)
        except ValidationError:
            raise BadRequest("Invalid Request: not a JSON-RPC 2.0 message") from None
        return None
    check_ids([decoded])
    try:
        return JSONRPCRequest.model_validate(decoded), decoded
    except ValidationError:
        raise BadRequest("Body must be a single JSON-RPC request or notification object") from None


class StatelessExchange(Exchange):
    """An `Exchange` with no back-channel: notifications ride the reply, requests are refused."""

    __slots__ = ()

    @property
    def transport(self) -> TransportContext:
        return NO_BACK_CHANNEL

    @property
    def can_send_request(self) -> bool:
        return False


async def serve(
    backend: ServedBackend,
    server_name: str,
    principal: Principal,
    request: JSONRPCRequest,
    decoded: Mapping[str, Any],
    header_lines: Iterable[tuple[str, str]],
    open_sink: OpenSink,
) -> JsonAnswer | None:
    """Run one 2026-07-28 request: its JSON answer (a refusal of its envelope or headers
    included), or None when it was answered on an SSE stream opened with `open_sink`.
    Cancel the caller's scope to abandon it (the client closed the response)."""
    lines = list(header_lines)
    duplicated = find_duplicated_routing_header(lines)
    if duplicated is not None:
        problem = InboundLadderRejection(code=HEADER_MISMATCH, message=f"{duplicated} header appears more than once")
        return _rejection(request.id, problem)
    headers = {name.lower(): value for name, value in lines}
    verdict = classify_inbound_request(decoded, headers=headers)
    if isinstance(verdict, InboundLadderRejection):
        return _rejection(request.id, verdict)
    server = backend.server
    if request.method == "tools/call" and server.get_tool_input_schema is not None:
        params = request.params or {}
        arguments = params.get("arguments") or {}
        schema = server.get_tool_input_schema(str(params.get("name")))
        if schema is not None and isinstance(arguments, Mapping):
            mismatch = validate_mcp_param_headers(schema, arguments, headers)
            if mismatch is not None:
                return _rejection(request.id, mismatch)
    connection = Connection.from_envelope(verdict.protocol_version, verdict.client_info, verdict.client_capabilities)
    reply = Reply(None, open_sink, error_status=status_of)
    metadata = ServerMessageMetadata(request_context=RequestInfo(None, principal, server_name))
    exchange = StatelessExchange(reply, request.id, request.params, metadata)
    timeout = backend.request_timeout
    try:
        with anyio.fail_after(timeout):
            result = await serve_one(
                server,
                exchange,
                request.method,
                request.params,
                connection=connection,
                lifespan_state=backend.lifespan_state,
            )
        message = {"jsonrpc": "2.0", "id": request.id, "result": result}
    except Exception as exc:
        error: dict[str, Any]
        if isinstance(exc, TimeoutError) and timeout is not None:
            error = {"code": REQUEST_TIMEOUT, "message": f"no answer within {timeout:g} s"}
        else:
            error = modern_error_data(exc).model_dump(mode="json", exclude_none=True)
        message = {"jsonrpc": "2.0", "id": request.id, "error": error}
    finally:
        exchange.closed = True
    reply.respond(message)
    return reply.finish()


def _rejection(request_id: Any, problem: InboundLadderRejection) -> JsonAnswer:
    error = ErrorData(code=problem.code, message=problem.message, data=problem.data)
    message = {"jsonrpc": "2.0", "id": request_id, "error": error.model_dump(mode="json", exclude_none=True)}
    return JsonAnswer(dumps(message), status_of(message["error"]))
