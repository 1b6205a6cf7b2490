"""One POST's answer (`Reply`) and the per-request channel the SDK handlers talk to (`Exchange`).

A reply starts as plain JSON. It switches to an SSE stream only when the server sends
something before the result: progress, a log message, or a request of its own (sampling,
elicitation). `Exchange` is the `mcp` SDK's `DispatchContext` for one inbound request: the
SDK's `ServerRunner` calls it directly, with no memory streams or extra tasks in between.

The HTTP side pulls the answer: `Reply.finish()` returns the JSON answer, or None when the
answer went out on the stream the reply opened through its `open_sink` factory.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import REQUEST_TIMEOUT, ErrorData, RequestId

from mcp_tornado.transport.jsonrpc import dumps
from mcp_tornado.transport.sse import EventBuffer, EventStream, Sink

TRANSPORT = TransportContext(kind="streamable-http", can_send_request=True)
# A stateless reply cannot be resumed (no session to come back to): its stream keeps one event.
STATELESS_REPLAY = 1

OpenSink = Callable[[], Sink]
"""Begins the HTTP side of an SSE answer (status, headers) and returns it."""


@dataclasses.dataclass(frozen=True, slots=True)
class JsonAnswer:
    """A complete answer for the HTTP side to send: a JSON body (empty for 202) and its status."""

    body: bytes
    status: int = 200


ACCEPTED = JsonAnswer(b"", 202)  # only notifications or responses came in


class SessionChannel(Protocol):
    """What a reply needs from its session (a `Session` is one)."""

    def prime(self, stream: EventStream) -> None: ...

    def open_stream(self) -> EventStream: ...

    def close_stream(self, stream: EventStream) -> None: ...

    async def request_client(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        opts: CallOptions | None,
        emit: Callable[[Mapping[str, Any]], None],
    ) -> dict[str, Any]: ...


class Reply:
    """The answer to one POST: JSON when it can be, an SSE stream when it must."""

    def __init__(
        self,
        session: SessionChannel | None,
        open_sink: OpenSink,
        *,
        batch: bool = False,
        error_status: Callable[[Mapping[str, Any]], int] | None = None,
    ) -> None:
        """`session` is None for a stateless request (its stream then has no replay);
        `error_status` maps a JSON-RPC error to the HTTP status of a JSON answer (else 200)."""
        self.session = session
        self._open_sink = open_sink
        self._batch = batch
        self._error_status = error_status
        self._responses: list[Any] = []
        self.stream: EventStream | None = None

    def emit(self, message: Mapping[str, Any]) -> None:
        """Send a message ahead of the result; the reply becomes an SSE stream."""
        self._streaming().send(dumps(message))

    def release(self) -> None:
        """End the HTTP response now (as an SSE stream, which it becomes if need be) and go on
        buffering: the client resumes with `Last-Event-ID` (SSE polling). Stateless replies
        cannot be resumed, so for them this does nothing."""
        if self.session is not None:
            self._streaming().release()

    def _streaming(self) -> EventStream:
        if self.stream is None:
            if self.session is not None:
                self.stream = self.session.open_stream()
            else:
                self.stream = EventStream("post", EventBuffer(STATELESS_REPLAY))
            self.stream.attach(self._open_sink())
            if self.session is not None:
                self.session.prime(self.stream)
            for answered in self._responses:  # batch members that finished while this was still JSON
                self.stream.send(dumps(answered))
            self._responses.clear()
        return self.stream

    def respond(self, message: Mapping[str, Any]) -> None:
        if self.stream is not None:
            self.stream.send(dumps(message))
        else:
            self._responses.append(message)

    def finish(self) -> JsonAnswer | None:
        """End the reply: the JSON answer to send, or None when it went out on the stream."""
        if self.stream is not None:
            if self.session is not None:
                self.session.close_stream(self.stream)
            else:
                self.stream.end()
            return None
        if not self._responses:
            # Every request in it was cancelled: nothing may be answered, so end an empty stream.
            self._open_sink().end()
            return None
        if self._batch:
            return JsonAnswer(dumps(self._responses))
        answer = self._responses[0]
        status = self._error_status(answer["error"]) if self._error_status and "error" in answer else 200
        return JsonAnswer(dumps(answer), status)


class Exchange:
    """The SDK `DispatchContext` of one inbound request, answering on its `Reply`."""

    __slots__ = ("_reply", "_request_id", "_params", "message_metadata", "_cancel", "task", "interrupted", "closed")

    def __init__(
        self, reply: Reply, request_id: RequestId, params: Mapping[str, Any] | None, metadata: ServerMessageMetadata
    ) -> None:
        self._reply = reply
        self._request_id = request_id
        self._params = params
        self.message_metadata = metadata
        self._cancel: anyio.Event | None = None
        # The task serving the request, once it runs: `interrupt()` cancels it.
        self.task: asyncio.Task[Any] | None = None
        self.interrupted = False
        self.closed = False

    @property
    def transport(self) -> TransportContext:
        return TRANSPORT

    @property
    def can_send_request(self) -> bool:
        return not self.closed

    @property
    def request_id(self) -> RequestId:
        return self._request_id

    @property
    def cancel_requested(self) -> anyio.Event:
        if self._cancel is None:
            self._cancel = anyio.Event()
        return self._cancel

    @property
    def cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    async def close_stream(self) -> None:
        """The handler ends its SSE response early (the SDK's `close_sse_stream`); it goes on."""
        if not self.closed:
            self._reply.release()

    def cancel(self) -> None:
        """The client cancelled the request: stop its work; it gets no answer."""
        self.cancel_requested.set()
        self.interrupt()

    def interrupt(self) -> None:
        """Stop the request's work (a cancel, or its session ends); its server sees CancelledError."""
        if self.task is not None and not self.closed and not self.interrupted:
            self.interrupted = True
            self.task.cancel()

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        if self.closed or self.cancelled:
            return
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._reply.emit(message)

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        token = progress_token_from_params(self._params)
        if token is None:
            return
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        session = self._reply.session
        if not self.can_send_request or session is None:
            raise NoBackChannelError(method)
        return await session.request_client(method, params, opts, self._reply.emit)


async def await_answer(future: asyncio.Future[Any], timeout: float | None, method: str) -> dict[str, Any]:
    """Wait for the client's answer to a server-to-client request."""
    try:
        outcome = await asyncio.wait_for(future, timeout) if timeout is not None else await future
    except TimeoutError:
        raise MCPError(code=REQUEST_TIMEOUT, message=f"client did not answer {method} in {timeout} s") from None
    if isinstance(outcome, ErrorData):
        raise MCPError.from_error_data(outcome)
    return outcome
