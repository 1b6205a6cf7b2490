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
from mcp_types import HEADER_MISMATCH, REQUEST_TIMEOUT, ErrorData, JSONRPCRequest

from mcp_tornado.auth import Principal
from mcp_tornado.caller import RequestInfo
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.transport.exchange import Exchange, Reply, ReplySink

NO_BACK_CHANNEL = TransportContext(kind="streamable-http", can_send_request=False)


def status_of(error: Mapping[str, Any] | None) -> int:
    """The HTTP status the SDK's table gives a JSON-RPC error code (200 for results)."""
    return 200 if error is None else ERROR_CODE_HTTP_STATUS.get(int(error.get("code", 0)), 200)


def rejection(request_id: Any, problem: InboundLadderRejection) -> dict[str, Any]:
    error = ErrorData(code=problem.code, message=problem.message, data=problem.data)
    return {"jsonrpc": "2.0", "id": request_id, "error": error.model_dump(mode="json", exclude_none=True)}


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
    hosted: HostedServer,
    principal: Principal,
    request: JSONRPCRequest,
    decoded: Mapping[str, Any],
    header_lines: Iterable[tuple[str, str]],
    sink: ReplySink,
) -> dict[str, Any] | None:
    """Run one 2026-07-28 request and answer it on `sink`; or return the refusal, unsent, when
    the envelope or headers are wrong. Cancel the caller's scope to abandon it (client gone)."""
    lines = list(header_lines)
    duplicated = find_duplicated_routing_header(lines)
    if duplicated is not None:
        problem = InboundLadderRejection(code=HEADER_MISMATCH, message=f"{duplicated} header appears more than once")
        return rejection(request.id, problem)
    headers = {name.lower(): value for name, value in lines}
    verdict = classify_inbound_request(decoded, headers=headers)
    if isinstance(verdict, InboundLadderRejection):
        return rejection(request.id, verdict)
    server = hosted.backend.server
    if request.method == "tools/call" and server.get_tool_input_schema is not None:
        params = request.params or {}
        arguments = params.get("arguments") or {}
        schema = server.get_tool_input_schema(str(params.get("name")))
        if schema is not None and isinstance(arguments, Mapping):
            mismatch = validate_mcp_param_headers(schema, arguments, headers)
            if mismatch is not None:
                return rejection(request.id, mismatch)
    connection = Connection.from_envelope(verdict.protocol_version, verdict.client_info, verdict.client_capabilities)
    reply = Reply(None, sink, error_status=status_of)
    metadata = ServerMessageMetadata(request_context=RequestInfo(None, principal, hosted.name))
    exchange = StatelessExchange(reply, request.id, request.params, metadata)
    timeout = hosted.backend.request_timeout
    try:
        with anyio.fail_after(timeout):
            result = await serve_one(
                server,
                exchange,
                request.method,
                request.params,
                connection=connection,
                lifespan_state=hosted.backend.lifespan_state,
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
    reply.finish()
    return None
