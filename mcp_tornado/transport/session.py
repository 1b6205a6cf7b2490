"""`Session`: one client's MCP session on one hosted server.

A `Session` drives the `mcp` SDK's `ServerRunner` for one client: each inbound request is
handed straight to `runner.on_request` with an `Exchange` as its dispatch context, so the
SDK supplies the protocol (handshake, ping, validation, logging, completion, pagination)
while this module only routes what leaves it: to the POST that asked, or to the GET stream.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.runner import ServerRunner, aclose_shielded
from mcp.server.session import ServerSession
from mcp.shared.dispatcher import CallOptions, coerce_request_id
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params, handler_exception_to_error_data
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    REQUEST_TIMEOUT,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)
from mcp_types.methods import serialize_server_result
from mcp_types.version import LATEST_HANDSHAKE_VERSION, is_version_at_least
from pydantic import ValidationError

from mcp_tornado.auth import Principal
from mcp_tornado.request_info import RequestInfo
from mcp_tornado.transport.exchange import TRANSPORT, Exchange, JsonAnswer, OpenSink, Reply, await_answer
from mcp_tornado.transport.jsonrpc import dumps
from mcp_tornado.transport.protocols import FastPath, ServedBackend
from mcp_tornado.transport.sse import EventBuffer, EventStream

logger = logging.getLogger(__name__)

# 32 random bytes: 256 bits, url-safe base64 (visible ASCII), well past the 128 bits asked for.
SESSION_ID_BYTES = 32
# The first revision whose clients expect a priming event on each SSE stream.
PRIMING_VERSION = "2025-11-25"
# POST streams kept after they end, so a client that lost one can still resume and read its end.
FINISHED_STREAMS_KEPT = 32


class Session:
    """One client's MCP session on one hosted server."""

    # Our server-to-client request ids start so: a prefix no client uses for its own ids, so
    # answers can never be confused (a shared store's sessions add the worker that asked).
    request_prefix = "mcpt-"

    def __init__(
        self,
        server_name: str,
        backend: ServedBackend,
        principal: Principal,
        *,
        event_buffer_size: int,
        event_buffer_bytes: int | None = None,
        retry_ms: int | None = None,
        session_id: str | None = None,
    ) -> None:
        """`retry_ms`: the reconnection delay the session's SSE streams suggest (`retry:`);
        `session_id`: the id of a session rebuilt from a shared store (default: a new one)."""
        self.id = session_id or secrets.token_urlsafe(SESSION_ID_BYTES)
        self.server_name = server_name
        self.principal = principal
        self.retry_ms = retry_ms
        # False on a transport whose streams cannot be resumed (the legacy HTTP+SSE one): no
        # priming events, and no handler may end a stream early for the client to come back to.
        self.streams_resumable = True
        self.events = EventBuffer(event_buffer_size, event_buffer_bytes)
        self.standalone = EventStream("get", self.events)
        self.connection = Connection.for_loop(_StandaloneOutbound(self), session_id=self.id)
        self.runner: ServerRunner[Any] = ServerRunner(backend.server, self.connection, backend.lifespan_state)
        self._fast_paths: Mapping[str, FastPath] = {}
        self.set_backend(backend)
        # Handed to every request unchanged: who is calling does not change within a session.
        self.metadata = ServerMessageMetadata(request_context=RequestInfo(self.id, principal, server_name))
        self.in_flight: dict[RequestId, Exchange] = {}
        self.admitted = 0  # requests counted against the in-flight cap (see HostedServer.admit)
        self._streams: dict[str, EventStream] = {}
        self._stream_ids = itertools.count(1)
        self._pending: dict[RequestId, asyncio.Future[Any]] = {}
        self._request_ids = itertools.count(1)
        self.last_active = time.monotonic()
        self.closed = False

    @property
    def expired(self) -> bool:
        """Past its token's `exp`: a session never outlives the token that opened it."""
        exp = self.principal.expires_at
        return exp is not None and time.time() >= exp

    @property
    def resumable(self) -> bool:
        """Whether the client's revision resumes streams: it expects a priming event on each
        (older clients cannot parse one), and the server may close a stream to be resumed."""
        return self.streams_resumable and is_version_at_least(self.connection.protocol_version, PRIMING_VERSION)

    def prime(self, stream: EventStream) -> None:
        """Open `stream` with a priming event (id, `retry:`) when the client's revision wants one."""
        if self.resumable:
            stream.prime(self.retry_ms)

    async def close_standalone_stream(self) -> None:
        """End the GET stream's response; the client comes back for it (SSE polling)."""
        self.standalone.release()

    def touch(self) -> None:
        self.last_active = time.monotonic()

    def set_backend(self, backend: ServedBackend) -> None:
        """What serves this session; called again when its definition is reloaded, so later
        requests reach the new handlers on the same session."""
        self.runner.server = backend.server
        self.runner.lifespan_state = backend.lifespan_state
        self.runner.init_options = backend.init_options
        self._fast_paths = _usable_fast_paths(backend.server, backend.fast_paths)
        self._request_timeout = backend.request_timeout

    # -- inbound -------------------------------------------------------------------------

    async def receive(self, messages: list[Any]) -> list[JSONRPCRequest]:
        """Take in what a POST carried: notifications and the client's answers to our requests
        take effect now; the requests are returned, to be `serve`d."""
        requests: list[JSONRPCRequest] = []
        for message in messages:
            if isinstance(message, JSONRPCRequest):
                requests.append(message)
            elif isinstance(message, JSONRPCNotification):
                await self.notify(message)
            elif isinstance(message, JSONRPCResponse):
                self.answer(message.id, message.result)
            elif isinstance(message, JSONRPCError) and message.id is not None:
                self.answer(message.id, message.error)
        return requests

    async def serve(self, requests: list[JSONRPCRequest], open_sink: OpenSink, *, batch: bool) -> JsonAnswer | None:
        """Answer `requests` (one, or a batch): the JSON answer, or None when it went out as an
        SSE stream opened with `open_sink`."""
        reply = Reply(self, open_sink, batch=batch)
        if len(requests) == 1:
            await self._serve_one(requests[0], reply)
        else:
            await asyncio.gather(*(self._serve_one(r, reply) for r in requests))
        self.last_active = time.monotonic()  # idleness counts from the last answer, not the last question
        return reply.finish()

    async def _serve_one(self, request: JSONRPCRequest, reply: Reply) -> None:
        exchange = Exchange(reply, request.id, request.params, self.metadata)
        if self.resumable:  # the handler may end its SSE response early: the client resumes it
            exchange.message_metadata = ServerMessageMetadata(
                request_context=self.metadata.request_context,
                close_sse_stream=exchange.close_stream,
                close_standalone_sse_stream=self.close_standalone_stream,
            )
        key = coerce_request_id(request.id)
        self.in_flight[key] = exchange
        message: dict[str, Any] | None = None
        # The task is the handle to interrupt it by (a cancel, the session's end): cheaper than a
        # cancel scope per request, and the CancelledError we cause is consumed right here.
        exchange.task = asyncio.current_task()
        try:
            fast = self._fast_paths.get(request.method)
            if fast is not None and self.connection.initialize_accepted:
                result = await self._serve_fast(fast, exchange, request)
            elif self._request_timeout is None:
                result = await self.runner.on_request(exchange, request.method, request.params)
            else:
                with anyio.fail_after(self._request_timeout):
                    result = await self.runner.on_request(exchange, request.method, request.params)
            message = {"jsonrpc": "2.0", "id": request.id, "result": result}
        except asyncio.CancelledError:
            if not exchange.interrupted:
                raise  # not ours: the task itself is being cancelled
            exchange.task.uncancel()  # type: ignore[union-attr]
        except Exception as exc:
            message = {"jsonrpc": "2.0", "id": request.id, "error": self._error_of(exc)}
        finally:
            exchange.closed = True
            if self.in_flight.get(key) is exchange:
                del self.in_flight[key]
        if exchange.cancelled:
            return  # the client cancelled it: the spec forbids any answer
        if message is None:  # interrupted because the session ended
            message = {
                "jsonrpc": "2.0",
                "id": request.id,
                "error": {"code": CONNECTION_CLOSED, "message": "session ended"},
            }
        reply.respond(message)

    def _error_of(self, exc: Exception) -> dict[str, Any]:
        """The wire error for a handler's exception, as the SDK's own transport for this session's
        era would send it: `MCPError`s as they are; anything else, at the handshake revisions,
        code 0 with the exception's text (the SDK's dispatcher, pinned for compatibility)."""
        if isinstance(exc, TimeoutError) and self._request_timeout is not None:
            return {"code": REQUEST_TIMEOUT, "message": f"no answer within {self._request_timeout:g} s"}
        error = handler_exception_to_error_data(exc)
        if error is None:
            logger.error("%s: handler raised", self.server_name, exc_info=exc)
            error = ErrorData(code=0, message=str(exc))
        return error.model_dump(by_alias=True, mode="json", exclude_none=True)

    async def _serve_fast(self, fast: FastPath, exchange: Exchange, request: JSONRPCRequest) -> dict[str, Any]:
        """The hot path: the backend's own handler, with the context the SDK runner would build."""
        version = self.connection.protocol_version
        ctx: ServerRequestContext[Any, Any] = ServerRequestContext(
            session=ServerSession(exchange, self.connection),
            lifespan_context=self.runner.lifespan_state,
            protocol_version=version,
            method=request.method,
            params=request.params,
            request_id=request.id,
            request=self.metadata.request_context,
            close_sse_stream=exchange.message_metadata.close_sse_stream,
            close_standalone_sse_stream=exchange.message_metadata.close_standalone_sse_stream,
        )
        result = await fast(ctx, request.params)
        if version != LATEST_HANDSHAKE_VERSION:
            # Older revisions see only the fields their schema has, exactly as the SDK sieves them.
            try:
                result = serialize_server_result(request.method, version, result)
            except ValidationError:  # our result, not the client's params: the SDK's answer for it
                logger.exception("%s returned an invalid %s result", self.server_name, request.method)
                raise MCPError(code=INTERNAL_ERROR, message="Handler returned an invalid result") from None
        return result

    async def notify(self, notification: JSONRPCNotification) -> None:
        """A client notification: cancellation is handled here, the rest by the SDK."""
        if notification.method == "notifications/cancelled":
            request_id = cancelled_request_id_from_params(notification.params)
            if request_id is not None and (exchange := self.in_flight.get(coerce_request_id(request_id))):
                exchange.cancel()
        await self.runner.on_notify(_NotificationContext(self), notification.method, notification.params)

    def answer(self, request_id: RequestId, outcome: dict[str, Any] | ErrorData) -> bool:
        """The client's answer to one of our requests; False when nothing waits for that id."""
        future = self._pending.get(request_id)
        if future is None or future.done():
            return False
        future.set_result(outcome)
        return True

    # -- outbound ------------------------------------------------------------------------

    async def request_client(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        opts: CallOptions | None,
        emit: Callable[[Mapping[str, Any]], None],
    ) -> dict[str, Any]:
        """Send a server-to-client request with `emit` and wait for the answer POSTed back."""
        if self.closed:
            raise NoBackChannelError(method)
        request_id = f"{self.request_prefix}{next(self._request_ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            emit(message)
            return await await_answer(future, (opts or {}).get("timeout"), method)
        finally:
            self._pending.pop(request_id, None)

    def open_stream(self) -> EventStream:
        """A new POST stream of this session, resumable until it is among the oldest finished."""
        stream = EventStream(f"post-{next(self._stream_ids)}", self.events)
        self._streams[stream.key] = stream
        return stream

    def close_stream(self, stream: EventStream) -> None:
        stream.end()
        # The most recent finished streams stay resumable (a client that lost one reads its end).
        finished = [key for key, s in self._streams.items() if s.finished]
        for key in finished[: max(0, len(finished) - FINISHED_STREAMS_KEPT)]:
            del self._streams[key]

    def stream_for_resume(self, last_event_id: int) -> EventStream | None:
        """The stream an event id belongs to, while the buffer still holds that event."""
        key = self.events.stream_of(last_event_id)
        if key is None:
            return None
        return self.standalone if key == self.standalone.key else self._streams.get(key)

    # -- lifecycle -----------------------------------------------------------------------

    async def close(self) -> None:
        """End the session: interrupt its requests, release waiters, close its streams and SDK state."""
        if self.closed:
            return
        self.closed = True
        for exchange in list(self.in_flight.values()):
            exchange.interrupt()
        closed = ErrorData(code=CONNECTION_CLOSED, message="session ended")
        for future in self._pending.values():
            if not future.done():
                future.set_result(closed)
        self.standalone.end()
        await aclose_shielded(self.connection)


def _usable_fast_paths(server: Server[Any], fast_paths: Mapping[str, FastPath] | None) -> Mapping[str, FastPath]:
    # Middleware must see every request, so a server that has any takes the SDK path only.
    return {} if server.middleware or not fast_paths else fast_paths


class _StandaloneOutbound:
    """The session's connection-scoped channel: the GET stream."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        # Buffered even with no GET attached, so a resuming client still receives it.
        self._session.standalone.send(dumps(message))

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        session = self._session
        if not session.standalone.attached:
            raise NoBackChannelError(method)
        return await session.request_client(method, params, opts, lambda m: session.standalone.send(dumps(m)))


class _NotificationContext:
    """Dispatch context for a client notification: it has no reply, so it speaks on the GET stream."""

    def __init__(self, session: Session) -> None:
        self._outbound = session.connection.outbound
        self.message_metadata = session.metadata
        self.cancel_requested = anyio.Event()

    transport: TransportContext = TRANSPORT
    request_id = None
    can_send_request = False

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        await self._outbound.notify(method, params, opts)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None
