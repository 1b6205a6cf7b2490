"""The 2026-07-28 revision: one self-contained POST per request, no session.

Each request carries its own envelope (protocol version, client capabilities) in
`params._meta`; the `mcp` SDK's `classify_inbound_request` checks it against the routing
headers and `serve_one` runs the request through the same `ServerRunner` kernel as a
session. The answer is JSON unless the server sends notifications first (then SSE, like a
session's POST); the server may not send requests at this revision, and a client cancels by
closing the response.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.runner import modern_error_data, serve_one
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
    x_mcp_header_map,
)
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    CORE_RESULT_TYPES,
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    REQUEST_TIMEOUT,
    SERVER_INFO_META_KEY,
    ErrorData,
    JSONRPCNotification,
    JSONRPCRequest,
    RequestParams,
)
from mcp_types.methods import serialize_server_result
from pydantic import ValidationError

from mcp_tornado.auth import Principal
from mcp_tornado.errors import BadRequest
from mcp_tornado.request_info import RequestInfo
from mcp_tornado.transport.exchange import Exchange, JsonAnswer, OpenSink, Reply
from mcp_tornado.transport.jsonrpc import check_ids, dumps, loads
from mcp_tornado.transport.protocols import FastPath, ServedBackend

logger = logging.getLogger(__name__)

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
        if schema is not None and isinstance(arguments, Mapping) and _mirrors_params(schema):
            mismatch = validate_mcp_param_headers(schema, arguments, headers)
            if mismatch is not None:
                return _rejection(request.id, mismatch)
    connection = Connection.from_envelope(verdict.protocol_version, verdict.client_info, verdict.client_capabilities)
    reply = Reply(None, open_sink, error_status=status_of)
    metadata = ServerMessageMetadata(request_context=RequestInfo(None, principal, server_name))
    exchange = StatelessExchange(reply, request.id, request.params, metadata)
    timeout = backend.request_timeout
    fast = _fast_path(backend, request.method)
    try:
        if fast is not None:  # the backend times its own handlers (`request_timeout` is None)
            result = await _serve_fast(fast, server, exchange, connection, backend.lifespan_state, request)
        else:
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


# Whether a tool's input schema asks for `Mcp-Param-*` headers, by the schema object's identity
# (a tool keeps its schema object; a reload makes new ones, so the memo is bounded, not pruned).
_MIRRORED: dict[int, tuple[Any, bool]] = {}
MAX_MIRRORED_SCHEMAS = 1024


def _mirrors_params(schema: Any) -> bool:
    """False when `validate_mcp_param_headers` has nothing to compare: no property of the schema
    carries an `x-mcp-header` annotation (what most tools are). It walks the whole schema to
    know, which is static data: walked once per schema here, not once per request."""
    known = _MIRRORED.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    if len(_MIRRORED) >= MAX_MIRRORED_SCHEMAS:
        _MIRRORED.clear()
    mirrors = bool(x_mcp_header_map(schema))  # an invalid annotation: validate_mcp_param_headers passes all
    _MIRRORED[id(schema)] = (schema, mirrors)
    return mirrors


def _fast_path(backend: ServedBackend, method: str) -> FastPath | None:
    """The backend's own `tools/call` handler, when the SDK's kernel would add nothing to it:
    no middleware to see the request, no cache hint to fill in, no timeout of the kernel's.
    (A fast `tools/list` answers with pages dumped for the handshake revisions; the 2026-07-28
    result has fields of its own, which the SDK path fills in.)"""
    server = backend.server
    if method != "tools/call" or server.middleware or method in server.cache_hints:
        return None
    return backend.fast_paths.get(method) if backend.request_timeout is None else None


async def _serve_fast(
    fast: FastPath,
    server: Server[Any],
    exchange: StatelessExchange,
    connection: Connection,
    lifespan_state: Any,
    request: JSONRPCRequest,
) -> dict[str, Any]:
    """`serve_one` for a method with a fast path: the same context, the same wire form.

    What the SDK's `ServerRunner._on_request` does for a 2026-07-28 request, in its order: the
    context, the handler, then the result sieved by the revision's schema, `resultType` and the
    `serverInfo` stamp (tests/test_fast_path.py compares the two answer for answer, refusals of
    bad params included: the handler checks them with the same params model the SDK's surface
    check uses, and `classify_inbound_request` has checked the envelope).
    """
    method, params, version = request.method, request.params, connection.protocol_version
    meta = RequestParams.model_validate(params, by_name=False).meta if params and "_meta" in params else None
    metadata = exchange.message_metadata
    ctx: ServerRequestContext[Any, Any] = ServerRequestContext(
        session=ServerSession(exchange, connection, request_meta=meta),
        lifespan_context=lifespan_state,
        method=method,
        params=params,
        request_id=request.id,
        meta=meta,
        protocol_version=version,
        request=metadata.request_context,
        close_sse_stream=metadata.close_sse_stream,
        close_standalone_sse_stream=metadata.close_standalone_sse_stream,
    )
    result = dict(await fast(ctx, params))
    # The SDK path's handlers return models whose `resultType` defaults to "complete"; ours, the wire form.
    result_type = result.setdefault("resultType", "complete")
    if not isinstance(result_type, str) or result_type in CORE_RESULT_TYPES:
        try:
            result = serialize_server_result(method, version, result)
        except ValidationError:  # our result, not the client's params: the SDK's answer for it
            logger.exception("handler for %r returned an invalid result", method)
            raise MCPError(code=INTERNAL_ERROR, message="Handler returned an invalid result") from None
    if result.get("resultType") is None:
        result["resultType"] = "complete"
    meta_out = result.get("_meta")
    if meta_out is None:
        result["_meta"] = {SERVER_INFO_META_KEY: server.server_info_stamp}
    elif isinstance(meta_out, dict) and meta_out.get(SERVER_INFO_META_KEY) is None:
        result["_meta"] = {**meta_out, SERVER_INFO_META_KEY: server.server_info_stamp}
    return result


def _rejection(request_id: Any, problem: InboundLadderRejection) -> JsonAnswer:
    error = ErrorData(code=problem.code, message=problem.message, data=problem.data)
    message = {"jsonrpc": "2.0", "id": request_id, "error": error.model_dump(mode="json", exclude_none=True)}
    return JsonAnswer(dumps(message), status_of(message["error"]))
