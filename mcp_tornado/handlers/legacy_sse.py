"""`GET /{name}/sse` and `POST /{name}/messages`: the legacy HTTP+SSE transport (2024-11-05).

For clients that speak only the old transport (the SDK's `sse_client`, the Inspector with
`--transport sse`, langchain-mcp-adapters with `transport: sse`). The GET opens a session and
its stream, whose first event names `/{name}/messages?session_id=...`; each POST there is
answered 202 at once, and what it asked for is answered on the stream. The session is a normal
one of the hosted server (caps, reaping, `/health`), and ends when its stream closes.

HTTP only, as `handlers.mcp` is: the transport is `transport.legacy`, the rules (who may open
or use a session, readiness, caps) are the hosted server's.
"""

from __future__ import annotations

from collections.abc import Mapping

import tornado.web

from mcp_tornado import auth
from mcp_tornado.errors import (
    GatewayError,
    MissingSession,
    NotAcceptable,
    NotFound,
    UnsupportedMediaType,
)
from mcp_tornado.handlers import oauth
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.handlers.sse_response import SseResponse
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings
from mcp_tornado.telemetry import RequestCounter
from mcp_tornado.transport import jsonrpc
from mcp_tornado.transport.legacy import LegacyConnection, LegacyConnections

SESSION_PARAMETER = "session_id"  # the query parameter the SDK's SSE server names its sessions with


class _LegacyHandler(BaseHandler):
    jsonrpc_errors = True

    def initialize(
        self, registry: ServerRegistry, settings: Settings, counter: RequestCounter, connections: LegacyConnections
    ) -> None:
        self.registry = registry
        self.settings_ = settings
        self.counter = counter
        self.connections = connections

    def _token(self) -> str | None:
        return auth.bearer_token(self.request.headers.get("Authorization"))

    def explain(self, exc: GatewayError) -> tuple[str, Mapping[str, str]]:
        # Both routes are the resource a legacy client connected to: `/{name}/sse`.
        path_args = getattr(self, "path_args", None)
        if not path_args:
            return super().explain(exc)
        name = path_args[0]
        return oauth.explain(exc, self, self.registry.get(name), self.settings_, f"/{name}/sse")

    def on_finish(self) -> None:
        # No path_args when Tornado refused the request before routing it (an unknown method: 405).
        path_args = getattr(self, "path_args", None)
        name = path_args[0] if path_args else ""
        self.counter.count(name if name in self.registry else "(unknown)", self.request.method or "", self.get_status())


class LegacyStreamHandler(_LegacyHandler):
    """`GET /{name}/sse`: a new session and its stream, open until either side ends it."""

    _sse: SseResponse | None = None

    async def prepare(self) -> None:
        await self.check_host_and_origin()

    async def get(self, name: str) -> None:
        hosted = self.registry.require(name)
        address = self.request.remote_ip
        hosted.limit_address(address)
        accept = self.request.headers.get("Accept")
        if accept is not None and not _accepts_event_stream(accept):
            raise NotAcceptable("Accept must list text/event-stream")
        session = await hosted.open_stream_session(hosted.principal_for(self._token()), address)
        self._sse = SseResponse(
            self,
            keepalive_interval=self.settings_.sse_keepalive_interval,
            max_buffer_bytes=self.settings_.sse_max_buffer_bytes,
            max_lag=self.settings_.sse_max_lag,
            on_drop=self.on_connection_close,
            label=name,
        )
        self._sse.begin()
        connection = LegacyConnection(session, self._sse, f"/{name}/messages?{SESSION_PARAMETER}={session.id}")
        try:
            with self.connections.holding(connection):
                await self._sse.done
        finally:
            await connection.close()
            # End it where it lives now: a reload may have handed it to a new hosted server, and
            # an eviction, the reaper or a removal may have ended it already.
            current = self.registry.get(name)
            if current is not None and current.sessions.get(session.id) is session:
                await current.end_session(session)

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self._sse is not None:
            self._sse.lost()

    def on_finish(self) -> None:
        if self._sse is not None:
            self._sse.lost()  # finished on some other path (an error): the keepalive stops
        super().on_finish()


@tornado.web.stream_request_body  # so a body over the limit is refused with 413, however it is sent
class LegacyMessagesHandler(_LegacyHandler):
    """`POST /{name}/messages?session_id=...`: one message (or a batch) for a legacy session."""

    async def prepare(self) -> None:
        await self.check_host_and_origin()
        self.start_body(self.settings_.max_body_bytes)

    async def post(self, name: str) -> None:
        hosted = self.registry.require(name)
        hosted.limit_address(self.request.remote_ip)
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise UnsupportedMediaType("Content-Type must be application/json")
        messages, batch = jsonrpc.parse(self.streamed_body(), self.settings_.max_batch)
        session_id = self.get_query_argument(SESSION_PARAMETER, None)
        if not session_id:
            raise MissingSession(f"missing {SESSION_PARAMETER} query parameter")
        session, principal = await hosted.resume(session_id, self._token())
        connection = self.connections.get(session.id)
        if connection is None:  # a Streamable HTTP session: its answers have no stream to go to here
            raise NotFound("unknown or ended session")
        await hosted.deliver_later(connection, principal, messages, batch=batch)
        self.set_status(202)
        self.finish("Accepted")


def _accepts_event_stream(header: str) -> bool:
    types_ = {part.split(";", 1)[0].strip().lower() for part in header.split(",")}
    return bool(types_ & {"text/event-stream", "text/*", "*/*"})


__all__ = ["LegacyMessagesHandler", "LegacyStreamHandler"]
