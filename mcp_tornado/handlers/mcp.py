"""`/{name}/mcp` (and `/mcp/{name}`): MCP Streamable HTTP on Tornado.

HTTP only: this handler checks headers, parses and validates the JSON-RPC body with
`mcp_types`, authenticates, finds the session, and hands messages to it. It is also the
`Sink` its session writes through: a POST answers as JSON unless the session switched it to
SSE, and a GET is the session's long-lived event stream with a keepalive comment.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from typing import Any

import anyio
import pydantic_core
import tornado.http1connection
import tornado.ioloop
import tornado.web
from mcp_types import (
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcp_tornado import auth
from mcp_tornado.errors import (
    BadProtocolVersion,
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    MissingSession,
    NotAcceptable,
    NotFound,
    ParseError,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.handlers.metrics import RequestCounter
from mcp_tornado.handlers.sse_response import SseResponse
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings
from mcp_tornado.transport import stateless
from mcp_tornado.transport.exchange import Reply, dumps
from mcp_tornado.transport.sessions import Session

logger = logging.getLogger(__name__)

# Our SSE event ids: a session-wide counter (bounded so int() of a header can never be costly).
EVENT_ID = re.compile(r"[0-9]{1,18}")
SESSION_HEADER = "Mcp-Session-Id"
# A chunked body this many times over the limit is not read to its end: Tornado drops the connection.
BODY_CUTOFF_FACTOR = 4
VERSION_HEADER = "MCP-Protocol-Version"
LAST_EVENT_ID_HEADER = "Last-Event-ID"
# What a request without MCP-Protocol-Version speaks, as the 2025-06-18 transport spec says.
DEFAULT_PROTOCOL_VERSION = "2025-03-26"
# Revisions whose base protocol takes JSON-RPC batches: 2024-11-05 (plain JSON-RPC 2.0) and
# 2025-03-26 (which named them); 2025-06-18 removed them.
BATCH_VERSIONS = frozenset({"2024-11-05", "2025-03-26"})


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
    _json_body: bytes | None = None
    _json_status = 200
    _scope: anyio.CancelScope | None = None
    _reply: Reply | None = None
    _sse: SseResponse | None = None
    _detach: Any = None

    def initialize(self, registry: ServerRegistry, settings: Settings, counter: RequestCounter) -> None:
        self.registry = registry
        self.settings_ = settings
        self.counter = counter

    def prepare(self) -> None:
        self.check_host_and_origin()
        self._chunks: list[bytes] = []
        self._received = 0
        limit = self.settings_.max_body_bytes
        length = self.request.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        # A chunked body is counted in data_received; past this Tornado itself cuts the connection.
        connection = self.request.connection
        if isinstance(connection, tornado.http1connection.HTTP1Connection):
            connection.set_max_body_size(limit * BODY_CUTOFF_FACTOR)

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received <= self.settings_.max_body_bytes:
            self._chunks.append(chunk)

    def _body(self) -> bytes:
        if self._received > self.settings_.max_body_bytes:
            raise PayloadTooLarge(f"body over {self.settings_.max_body_bytes} bytes")
        return b"".join(self._chunks)

    # -- shared checks --------------------------------------------------------------------

    def _hosted(self, name: str) -> HostedServer:
        hosted = self.registry.get(name)
        if hosted is None:
            raise NotFound(f"unknown server {name!r}")
        return hosted

    def _protocol_version(self) -> str | None:
        """The request's revision: a handshake one (or None), or a stateless one on POST."""
        version = self.request.headers.get(VERSION_HEADER)
        if version in MODERN_PROTOCOL_VERSIONS:
            if self.request.method != "POST":
                raise MethodNotAllowed(f"protocol version {version} has no {self.request.method}", allow="POST")
            return version
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            supported = ", ".join((*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS))
            raise BadProtocolVersion(f"unsupported {VERSION_HEADER} {version!r}; supported: {supported}")
        return version

    def _principal(self) -> auth.Principal:
        """The request's own token, which it must carry (initialize, and every stateless request)."""
        token = auth.bearer_token(self.request.headers.get("Authorization"))
        if token is None:
            raise Unauthorized("a Bearer token is required", error="invalid_request")
        return auth.verify(token, self.settings_.jwt_secret or "")

    async def _session(self, hosted: HostedServer) -> Session:
        session_id = self.request.headers.get(SESSION_HEADER)
        if not session_id:
            raise MissingSession(f"missing {SESSION_HEADER} header")
        session = hosted.sessions.get(session_id)
        token = auth.bearer_token(self.request.headers.get("Authorization"))
        if token is not None and (session is None or token != session.principal.token):
            # A token on a later request must be valid and name the same server and user.
            principal = auth.verify(token, self.settings_.jwt_secret or "")
            hosted.authorize(principal)
            if session is not None and principal.user_id != session.principal.user_id:
                raise Forbidden("token is for another user than this session's")
        if session is None:
            raise NotFound("unknown or ended session")
        if session.expired:
            await hosted.end_session(session)
            if token is not None:
                raise Unauthorized("token expired")
            raise NotFound("session ended: its token expired")
        hosted.sessions.touch(session)
        return session

    # -- POST -----------------------------------------------------------------------------

    async def post(self, name: str) -> None:
        hosted = self._hosted(name)
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise UnsupportedMediaType("Content-Type must be application/json")
        if not _accepts(self.request.headers.get("Accept", ""), "application/json", "text/event-stream"):
            raise NotAcceptable("Accept must list application/json and text/event-stream")
        body = self._body()
        version = self._protocol_version()
        if version in MODERN_PROTOCOL_VERSIONS:
            await self._serve_stateless(hosted, body)
            return
        messages, batch = _parse(body, self.settings_.max_batch)
        session_id = self.request.headers.get(SESSION_HEADER)

        if (
            not session_id
            and not batch
            and isinstance(messages[0], JSONRPCRequest)
            and messages[0].method == "initialize"
        ):
            await self._open_session(hosted, messages[0])
            return
        if any(isinstance(m, JSONRPCRequest) and m.method == "initialize" for m in messages):
            raise BadRequest(
                "initialize must be sent alone, without a session" if batch else "session already initialized"
            )
        session = await self._session(hosted)
        if batch and session.connection.protocol_version not in BATCH_VERSIONS:
            raise BadRequest(
                f"JSON-RPC batches are not allowed at protocol version {session.connection.protocol_version}"
            )
        await hosted.ready(session)  # 503 with Retry-After while its child or upstream is down

        requests: list[JSONRPCRequest] = []
        for message in messages:
            if isinstance(message, JSONRPCRequest):
                requests.append(message)
            elif isinstance(message, JSONRPCNotification):
                await session.notify(message)
            elif isinstance(message, JSONRPCResponse):
                session.answer(message.id, message.result)
            elif isinstance(message, JSONRPCError) and message.id is not None:
                session.answer(message.id, message.error)
        if not requests:
            self.set_status(202)
            self.finish()
            return
        with hosted.admit(len(requests), session):
            self._reply = Reply(session, self, batch=batch)
            await session.serve(requests, self._reply)
        self._finish_json()

    async def _open_session(self, hosted: HostedServer, request: JSONRPCRequest) -> None:
        principal = self._principal()
        hosted.authorize(principal)
        await hosted.ready()
        with hosted.admit(1):
            session = await hosted.open_session(principal)
            self.set_header(SESSION_HEADER, session.id)
            self._reply = Reply(session, self, batch=False)
            if not await session.serve([request], self._reply):
                # A refused handshake leaves no session behind.
                await hosted.end_session(session)
                self.clear_header(SESSION_HEADER)
        self._finish_json()

    async def _serve_stateless(self, hosted: HostedServer, body: bytes) -> None:
        """A 2026-07-28 request: authenticated on its own, answered on its own."""
        principal = self._principal()
        hosted.authorize(principal)
        await hosted.ready()
        decoded = _loads(body)
        if isinstance(decoded, dict) and "id" not in decoded:
            try:
                JSONRPCNotification.model_validate(decoded)
            except ValidationError:
                raise BadRequest("Invalid Request: not a JSON-RPC 2.0 message") from None
            # No client notification means anything at this revision; acknowledge and drop it.
            self.set_status(202)
            self.finish()
            return
        _check_ids([decoded])
        try:
            request = JSONRPCRequest.model_validate(decoded)
        except ValidationError:
            raise BadRequest("Body must be a single JSON-RPC request or notification object") from None
        refusal = None
        with hosted.admit(1), anyio.CancelScope() as self._scope:  # closing the response is how a client cancels
            refusal = await stateless.serve(hosted, principal, request, decoded, self.request.headers.get_all(), self)
        if refusal is not None and not self._gone:
            self.respond_json(dumps(refusal), stateless.status_of(refusal["error"]))
        self._finish_json()

    def _finish_json(self) -> None:
        if self._json_body is not None and not self._finished and not self._gone:
            self.set_status(self._json_status)
            self.set_header("Content-Type", "application/json")
            self.finish(self._json_body)

    # -- GET ------------------------------------------------------------------------------

    async def get(self, name: str) -> None:
        hosted = self._hosted(name)
        if not _accepts(self.request.headers.get("Accept", ""), "text/event-stream"):
            raise NotAcceptable("Accept must list text/event-stream")
        self._protocol_version()
        session = await self._session(hosted)
        await hosted.ready(session)
        stream, replay_after = session.standalone, None
        last_event_id = self.request.headers.get(LAST_EVENT_ID_HEADER)
        if last_event_id is not None and EVENT_ID.fullmatch(last_event_id):
            resumed = session.stream_for_resume(int(last_event_id))
            if resumed is not None:  # an id we no longer (or never) had: a fresh stream, no replay
                stream, replay_after = resumed, int(last_event_id)
        if stream.attached and replay_after is None:  # a resume (Last-Event-ID) takes the stream over
            raise Conflict("this session already has an open stream")
        self.begin_stream()
        assert self._sse is not None
        self._detach = lambda: stream.detach(self)
        stream.attach(self, replay_after=replay_after)
        if replay_after is None and session.primes_streams:
            stream.prime()
        await self._sse.done

    # -- DELETE ---------------------------------------------------------------------------

    async def delete(self, name: str) -> None:
        hosted = self._hosted(name)  # a session can always be ended, even while its backend is down
        self._protocol_version()
        session = await self._session(hosted)
        await hosted.end_session(session)
        self.set_status(200)
        self.finish()

    # -- the Sink the session writes through -----------------------------------------------

    def respond_json(self, body: bytes, status: int) -> None:
        self._json_body, self._json_status = body, status

    def begin_stream(self) -> None:
        self._sse = SseResponse(
            self,
            keepalive_interval=self.settings_.sse_keepalive_interval,
            max_buffer_bytes=self.settings_.sse_max_buffer_bytes,
            max_lag=self.settings_.sse_max_lag,
            on_drop=self.on_connection_close,
            label=self.path_args[0],
        )
        self._sse.begin()

    def write_frame(self, chunk: bytes, *, replay: bool = False) -> bool:
        return self._sse is not None and self._sse.write_frame(chunk, replay=replay)

    def end_stream(self) -> None:
        if self._sse is not None:
            self._sse.end()

    def on_connection_close(self) -> None:
        """The client left: free its stream at once (a resume can pick the events up)."""
        super().on_connection_close()  # resolves a body still being read, so nothing waits on it
        if self._gone:
            return
        self._gone = True
        if self._sse is not None:
            self._sse.lost()
        if self._scope is not None:
            self._scope.cancel()
        if self._reply is not None:
            self._reply.detach()
        if self._detach is not None:
            self._detach()

    def on_finish(self) -> None:
        if self._sse is not None:
            self._sse.lost()  # finished on some other path (an error): the keepalive stops
        # No path_args when Tornado refused the request before routing it (an unknown method: 405).
        path_args = getattr(self, "path_args", None)
        name = path_args[0] if path_args else ""
        self.counter.count(name if name in self.registry else "(unknown)", self.request.method or "", self.get_status())


def _parse(body: bytes, max_batch: int) -> tuple[list[Any], bool]:
    """The body's JSON-RPC messages, validated with `mcp_types`, and whether it was a batch."""
    raw = _loads(body)
    batch = isinstance(raw, list)
    items = raw if batch else [raw]
    if not items:
        raise BadRequest("Invalid Request: empty batch")
    if len(items) > max_batch:
        raise BadRequest(f"Invalid Request: a batch of {len(items)} messages; the limit is {max_batch}")
    _check_ids(items)
    try:
        return [jsonrpc_message_adapter.validate_python(item, by_name=False) for item in items], batch
    except ValidationError:
        raise BadRequest("Invalid Request: not a JSON-RPC 2.0 message") from None


def _loads(body: bytes) -> Any:
    """Strict JSON: NaN and Infinity are not JSON, and a number too large for a float is refused
    rather than turned into one."""
    try:
        value = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise ParseError(f"Parse error: {exc}") from None
    if _HUGE_NUMBER.search(body) and not _finite(value):
        raise BadRequest("Invalid Request: a number out of range")
    return value


# A float literal that may overflow: an exponent of three digits or more, or 300+ digits in a row.
_HUGE_NUMBER = re.compile(rb"[0-9][eE][+-]?[0-9]{3}|[0-9]{300}")
_MAX_DEPTH = 256


def _finite(value: Any, depth: int = 0) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if depth > _MAX_DEPTH:
        return True  # deeper than any schema we serve; the validators refuse it
    if isinstance(value, dict):
        return all(_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v, depth + 1) for v in value)
    return True


def _check_ids(items: list[Any]) -> None:
    """JSON-RPC ids are strings or integers (MCP: "MUST be a string or integer", never null);
    only an error answer to a message we could not read may carry a null id."""
    for item in items:
        if not isinstance(item, dict) or "id" not in item:
            continue
        request_id = item["id"]
        if isinstance(request_id, str) or (isinstance(request_id, int) and not isinstance(request_id, bool)):
            continue
        if request_id is None and "error" in item and "method" not in item:
            continue
        raise BadRequest("Invalid Request: an id must be a string or an integer")


__all__ = ["McpHandler", "ErrorData"]
