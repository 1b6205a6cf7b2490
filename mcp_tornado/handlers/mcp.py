"""`/{name}/mcp` (and `/mcp/{name}`): MCP Streamable HTTP on Tornado.

HTTP only: this handler checks methods and headers, reads the body within its limit, finds
the hosted server, and asks it for the answer: a JSON body to send, or an SSE response the
transport writes to (an `SseResponse`, which owns framing, keepalive and backpressure). The
protocol (parsing, sessions, who may resume one) is below it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
from collections.abc import Awaitable, Mapping
from typing import Any

import anyio
import tornado.web
from mcp.shared.inbound import unsupported_protocol_version_rejection
from mcp_types import PROTOCOL_VERSION_META_KEY, JSONRPCRequest
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from mcp_tornado import auth, logs
from mcp_tornado.errors import (
    BadProtocolVersion,
    BadRequest,
    Conflict,
    GatewayError,
    MethodNotAllowed,
    MissingSession,
    NotAcceptable,
    NotFound,
    UnsupportedMediaType,
)
from mcp_tornado.handlers import oauth
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.handlers.sse_response import SseResponse
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings
from mcp_tornado.telemetry import UNKNOWN_SERVER, Telemetry, rpc_method_of, tool_name_of
from mcp_tornado.tracing import end_request
from mcp_tornado.transport import jsonrpc
from mcp_tornado.transport.exchange import JsonAnswer
from mcp_tornado.transport.session import Session

# Our SSE event ids: a session-wide counter (bounded so int() of a header can never be costly).
EVENT_ID = re.compile(r"[0-9]{1,18}")
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
LAST_EVENT_ID_HEADER = "Last-Event-ID"
ALL_VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)


def _nothing() -> None:
    pass


@functools.lru_cache(maxsize=256)  # clients send the same few Accept headers over and over
def _accepts(header: str, *wanted: str) -> bool:
    types_ = {part.split(";", 1)[0].strip().lower() for part in header.split(",")}
    if "*/*" in types_:
        return True
    return all(w in types_ or f"{w.split('/')[0]}/*" in types_ for w in wanted)


@tornado.web.stream_request_body  # so a body over the limit is refused with 413, however it is sent
class McpHandler(BaseHandler):
    jsonrpc_errors = True
    # Per-request state, set only when a request needs it (class defaults keep set-up cheap).
    _gone = False
    _scope: anyio.CancelScope | None = None
    _sse: SseResponse | None = None
    _handed_over = False  # a GET stream's response took the connection (see `_open_sse`)
    _messages: list[Any] | None = None  # what the POST carried, once parsed (for metrics and traces)
    _session_id: str | None = None  # a session this request opened
    _span: Any = None  # the request's trace span, when tracing is on

    def initialize(self, registry: ServerRegistry, settings: Settings, telemetry: Telemetry) -> None:
        # No templates here: the template namespace Tornado builds for every handler (and drops
        # once it finishes) goes now, not when a GET stream ends hours later (0.5 KB a stream).
        self.ui = None  # type: ignore[assignment]
        self.registry = registry
        self.settings_ = settings
        self.telemetry = telemetry

    def prepare(self) -> Awaitable[None] | None:
        if self.telemetry.tracing is not None:  # the one test tracing costs while it is off
            self._span = self.telemetry.tracing.start_request(
                self.request.headers,
                f"{self.request.method} {self.request.path}",
                {"mcp_tornado.server": self.path_args[0], "http.request.method": self.request.method or ""},
            )
        if not self.host_and_origin_known():  # known pairs are checked without a coroutine (hot path)
            return self._check_then_prepare()
        self._prepare_body()
        return None

    async def _check_then_prepare(self) -> None:
        await self.check_host_and_origin()
        self._prepare_body()

    def _prepare_body(self) -> None:
        self.start_body(self.settings_.max_body_bytes)

    # -- POST -----------------------------------------------------------------------------

    async def post(self, name: str) -> None:
        hosted = self.registry.require(name)
        address = self.request.remote_ip
        hosted.limit_address(address)
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise UnsupportedMediaType("Content-Type must be application/json")
        if not _accepts(self.request.headers.get("Accept", ""), "application/json", "text/event-stream"):
            raise NotAcceptable("Accept must list application/json and text/event-stream")
        body = self._body()
        if self._protocol_version() in MODERN_PROTOCOL_VERSIONS:
            answer = None  # stays None when the client leaves first: nothing to send
            with anyio.CancelScope() as self._scope:  # closing the response is how a client cancels
                answer = await hosted.serve_stateless(
                    self._principal(hosted), body, self.request.headers.get_all(), self._open_sse, address
                )
            await self._send(answer)
            return
        messages, batch = jsonrpc.parse(body, self.settings_.max_batch)
        self._messages = messages
        opening = not batch and isinstance(messages[0], JSONRPCRequest) and messages[0].method == "initialize"
        if opening and not self.request.headers.get(SESSION_HEADER):
            session, answer = await hosted.initialize(self._principal(hosted), messages[0], self._open_sse, address)
            if session is not None:
                self.set_header(SESSION_HEADER, session.id)
                self._session_id = session.id
            await self._send(answer)
            return
        if any(isinstance(m, JSONRPCRequest) and m.method == "initialize" for m in messages):
            raise BadRequest(
                "initialize must be sent alone, without a session" if batch else "session already initialized"
            )
        session, principal = await self._session(hosted)
        await self._send(await hosted.deliver(session, principal, messages, self._open_sse, batch=batch))

    # -- GET ------------------------------------------------------------------------------

    async def get(self, name: str) -> None:
        hosted = self.registry.require(name)
        hosted.limit_address(self.request.remote_ip)
        if not _accepts(self.request.headers.get("Accept", ""), "text/event-stream"):
            raise NotAcceptable("Accept must list text/event-stream")
        self._protocol_version()
        session, _ = await self._session(hosted)
        await hosted.ready(session)
        stream, replay_after = session.standalone, None
        last_event_id = self.request.headers.get(LAST_EVENT_ID_HEADER)
        if last_event_id is not None and EVENT_ID.fullmatch(last_event_id):
            resumed = session.stream_for_resume(int(last_event_id))
            if resumed is not None:  # an id we no longer (or never) had: a fresh stream, no replay
                stream, replay_after = resumed, int(last_event_id)
        if stream.attached and replay_after is None and (hosted.shared is None or last_event_id is None):
            raise Conflict("this session already has an open stream")  # a resume takes the stream over
        try:
            if hosted.shared is not None and replay_after is None:  # the GET stream is in the shared store
                sse = await hosted.shared.serve_get(hosted, session, last_event_id, self._open_sse)
            else:
                sse = self._open_sse()
                stream.attach(sse, replay_after=replay_after)
                if replay_after is None:
                    session.prime(stream)
        except BaseException:
            if self._handed_over and self._sse is not None:
                self._sse.lost()  # it holds its connection: nothing else would end it
            raise
        if self._handed_over:  # the response holds the connection now; this handler is done
            return
        await sse.done

    # -- DELETE ---------------------------------------------------------------------------

    async def delete(self, name: str) -> None:
        hosted = self.registry.require(name)  # a session can always be ended, even while its backend is down
        hosted.limit_address(self.request.remote_ip)
        self._protocol_version()
        session, _ = await self._session(hosted)
        await hosted.end_session(session)
        self.set_status(200)
        self.finish()

    # -- HTTP pieces ------------------------------------------------------------------------

    def _body(self) -> bytes:
        return self.streamed_body()

    def _protocol_version(self) -> str | None:
        """The request's revision: a handshake one (or None), or a stateless one on POST."""
        version = self.request.headers.get(VERSION_HEADER)
        if version in MODERN_PROTOCOL_VERSIONS:
            if self.request.method != "POST":
                raise MethodNotAllowed(f"protocol version {version} has no {self.request.method}", allow="POST")
            return version
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            # A 2026-07-28 style request (its envelope in `_meta`) hears the versions it can use:
            # the stateless ones, as `server/discover` lists them; anyone else hears every one.
            supported = MODERN_PROTOCOL_VERSIONS if self._carries_envelope() else ALL_VERSIONS
            rejection = unsupported_protocol_version_rejection(version, supported)
            assert rejection is not None
            raise BadProtocolVersion(
                f"unsupported {VERSION_HEADER} {version!r}; supported: {', '.join(supported)}", data=rejection.data
            )
        return version

    def _carries_envelope(self) -> bool:
        """Whether the POST body (read by now) is a request with a 2026-07-28 `_meta` envelope."""
        if self.request.method != "POST" or not self._chunks:
            return False
        try:
            decoded = jsonrpc.loads(b"".join(self._chunks))
        except GatewayError:
            return False
        params = decoded.get("params") if isinstance(decoded, dict) else None
        meta = params.get("_meta") if isinstance(params, dict) else None
        return isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta

    def _principal(self, hosted: HostedServer) -> auth.Principal:
        """Who sends a request that authenticates on its own (initialize, every stateless request)."""
        return hosted.principal_for(auth.bearer_token(self.request.headers.get("Authorization")))

    async def _session(self, hosted: HostedServer) -> tuple[Session, auth.Principal]:
        """The session the request names, and who the request speaks for (see `HostedServer.resume`)."""
        session_id = self.request.headers.get(SESSION_HEADER)
        if not session_id:
            raise MissingSession(f"missing {SESSION_HEADER} header")
        token = auth.bearer_token(self.request.headers.get("Authorization"))
        session, principal = await hosted.resume(session_id, token)
        if not session.streams_resumable:  # a legacy HTTP+SSE session: its stream is not ours to take
            raise NotFound("unknown or ended session")
        return session, principal

    def explain(self, exc: GatewayError) -> tuple[str, Mapping[str, str]]:
        path_args = getattr(self, "path_args", None)
        hosted = self.registry.get(path_args[0]) if path_args else None
        return oauth.explain(exc, self, hosted, self.settings_, self.request.path)

    def _open_sse(self) -> SseResponse:
        """Begin this request's answer as an SSE stream (the transport decides when). A GET
        stream, which may stay open for hours, takes the connection over from this handler."""
        self._handed_over = self.request.method == "GET" and self.request.version == "HTTP/1.1"
        self._sse = SseResponse(
            self,
            keepalive_interval=self.settings_.sse_keepalive_interval,
            max_buffer_bytes=self.settings_.sse_max_buffer_bytes,
            max_lag=self.settings_.sse_max_lag,
            on_drop=_nothing if self._handed_over else self.on_connection_close,
            label=self.path_args[0],
            hand_over=self._handed_over,
        )
        self._sse.begin()
        if self._handed_over:
            self._sse.done.add_done_callback(self._when_stream_ends())
        return self._sse

    def _when_stream_ends(self) -> _StreamEnd:
        """What `on_finish` and the access log do, for a GET stream that outlives its handler."""
        request = self.request
        return _StreamEnd(
            self.telemetry,
            self.registry,
            self.path_args[0],
            self.rpc_method,
            tool_name_of(self._messages, request.headers),
            request.headers.get(SESSION_HEADER),
            self._span,
            time.time() - request.request_time(),
            request.method,
            request.uri or "",
            request.remote_ip,
            self.request_id,
        )

    async def _send(self, answer: JsonAnswer | None) -> None:
        """Send a JSON answer, or wait for the SSE answer the transport is writing to end."""
        if answer is None:
            if self._sse is not None:
                await self._sse.done
            return
        if self._gone:
            return
        self.set_status(answer.status)
        if answer.body:
            self.set_header("Content-Type", "application/json")
        self.finish(answer.body)

    def request_id_of_error(self) -> Any:
        """The id of the request this error answers, when its body was read and names one."""
        if self.request.method != "POST" or not self._chunks:
            return None
        try:
            decoded = jsonrpc.loads(b"".join(self._chunks))
        except GatewayError:
            return None
        request_id = decoded.get("id") if isinstance(decoded, dict) else None
        return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None

    def on_connection_close(self) -> None:
        """The client left: stop writing at once (a resume can pick the events up)."""
        super().on_connection_close()  # resolves a body still being read, so nothing waits on it
        if self._gone:
            return
        self._gone = True
        if self._sse is not None:
            self._sse.lost()
        if self._scope is not None:
            self._scope.cancel()

    def on_finish(self) -> None:
        if self._sse is not None:
            self._sse.lost()  # finished on some other path (an error): the keepalive stops
        # No path_args when Tornado refused the request before routing it (an unknown method: 405).
        path_args = getattr(self, "path_args", None)
        name = path_args[0] if path_args else ""
        status, http_method = self.get_status(), self.request.method or ""
        server = name if name in self.registry else UNKNOWN_SERVER
        self.telemetry.observe(server, http_method, self.rpc_method, status, self.request.request_time())
        if self._span is not None:
            end_request(
                self._span,
                http_method=http_method,
                rpc_method=self.rpc_method,
                tool=tool_name_of(self._messages, self.request.headers),
                session_id=self._session_id or self.request.headers.get(SESSION_HEADER),
                status=status,
            )

    @property
    def rpc_method(self) -> str:
        """The JSON-RPC method this request carried, as a bounded label (see `telemetry.rpc_method_of`)."""
        return rpc_method_of(self.request.method, self._messages, self.request.headers)


@dataclasses.dataclass(slots=True)
class _StreamEnd:
    """`on_finish` and the access log of a GET stream whose response took the connection over
    (run when the stream ends): values only, so nothing keeps the handler and its request alive,
    in one small object, as thousands of streams may be open at once."""

    telemetry: Telemetry
    registry: ServerRegistry
    server: str
    rpc_method: str
    tool: str | None
    session_id: str | None
    span: Any
    started: float
    method: str | None
    uri: str
    remote_ip: str | None
    request_id: str

    def __call__(self, _: object) -> None:
        seconds = time.time() - self.started
        server = self.server if self.server in self.registry else UNKNOWN_SERVER
        self.telemetry.observe(server, "GET", self.rpc_method, 200, seconds)
        if self.span is not None:
            end_request(
                self.span,
                http_method="GET",
                rpc_method=self.rpc_method,
                tool=self.tool,
                session_id=self.session_id,
                status=200,
            )
        if logs.ACCESS_LOG.isEnabledFor(logging.DEBUG):  # a successful MCP request: DEBUG, as in `log_request`
            logs.AccessLine(
                200,
                self.method,
                self.uri,
                self.remote_ip,
                1000.0 * seconds,
                request_id=self.request_id,
                server=self.server,
                rpc_method=self.rpc_method,
            ).log(logging.DEBUG)
