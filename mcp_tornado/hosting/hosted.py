"""`HostedServer`: one route's server: its definition, its backend, its sessions, its keys.

This is where the transport (sessions, stateless requests) meets a backend, and where the
rules that need both live: who may open or resume a session, readiness (503 while a child is
down), and the caps on work in flight (429).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import anyio
from mcp_types import JSONRPCRequest

from mcp_tornado.auth import ApiKeys, Principal, anonymous, require_server
from mcp_tornado.backends.base import Backend
from mcp_tornado.backends.relay import StatelessRelay
from mcp_tornado.definitions import ServerSpec
from mcp_tornado.errors import BadRequest, Forbidden, NotFound, TooManyRequests, Unauthorized, Unavailable
from mcp_tornado.settings import Settings
from mcp_tornado.transport import jsonrpc, stateless
from mcp_tornado.transport.exchange import ACCEPTED, JsonAnswer, OpenSink, Reply
from mcp_tornado.transport.jsonrpc import BATCH_VERSIONS
from mcp_tornado.transport.legacy import LegacyConnection
from mcp_tornado.transport.session import Session
from mcp_tornado.transport.session_table import SessionTable

logger = logging.getLogger(__name__)


class HostedServer:
    def __init__(
        self, spec: ServerSpec, backend: Backend, settings: Settings, verify: Callable[[str], Principal]
    ) -> None:
        """`verify(token)` checks a bearer token (raising `Unauthorized`) and says who it speaks for."""
        self.name = spec.name
        self.spec = spec
        self.backend = backend
        self.api_keys = ApiKeys(spec.api_keys)
        self._verify = verify
        self.sessions = SessionTable(settings.max_sessions_per_server, settings.max_sessions_per_user)
        self._event_buffer_size = settings.event_buffer_size
        self._event_buffer_bytes = settings.event_buffer_bytes
        self._retry_ms = round(settings.sse_retry * 1000)
        self._max_in_flight = settings.max_in_flight_per_server
        self._max_in_flight_per_session = settings.max_in_flight_per_session
        self.in_flight = 0  # requests being served, on every session and stateless
        self._drained = asyncio.Event()
        self._drained.set()
        self._ending: set[asyncio.Task[None]] = set()  # sessions being ended by their expiry timers
        backend.publish = self.publish

    async def ready(self, session: Session | None = None) -> None:
        """Raises `Unavailable` (503 with Retry-After) while the backend (or this session's own
        child) cannot serve; waits for a first start."""
        if self.backend.always_ready:
            return
        await self.backend.ready()
        if session is not None:
            await self.backend.session_ready(session.id)

    @contextlib.contextmanager
    def admit(self, count: int, session: Session | None = None) -> Iterator[None]:
        """Count `count` requests in flight while the block runs; raises `TooManyRequests` (429)
        when they would take the server, or `session`, past its cap."""
        if self.in_flight + count > self._max_in_flight:
            raise TooManyRequests(f"{self.name} has {self.in_flight} requests in flight (limit {self._max_in_flight})")
        if session is not None and session.admitted + count > self._max_in_flight_per_session:
            raise TooManyRequests(
                f"this session has {session.admitted} requests in flight (limit {self._max_in_flight_per_session})"
            )
        self.in_flight += count
        if session is not None:
            session.admitted += count
        self._drained.clear()
        try:
            yield
        finally:
            self.in_flight -= count
            if session is not None:
                session.admitted -= count
            if not self.in_flight:
                self._drained.set()

    async def drained(self) -> None:
        """Return once no request is in flight."""
        await self._drained.wait()

    def principal_for(self, token: str | None) -> Principal:
        """Who a request that must authenticate on its own (initialize, a stateless request) is.

        Raises `Unauthorized` without a valid token, unless the server is public (`auth: none`).
        """
        if token is None:
            if self.spec.public:
                return anonymous(self.name)
            raise Unauthorized("a Bearer token is required", error="invalid_request")
        return self._verify(token)

    def authorize(self, principal: Principal) -> None:
        """Raises `Forbidden` unless the token opens this server."""
        require_server(principal, self.name, self.api_keys)

    # -- what a client asks for -------------------------------------------------------------

    async def initialize(
        self, principal: Principal, request: JSONRPCRequest, open_sink: OpenSink
    ) -> tuple[Session | None, JsonAnswer | None]:
        """Open a session with an `initialize` request: the session (None when the handshake was
        refused: no session is left behind) and the answer."""
        self.authorize(principal)
        await self.ready()
        with self.admit(1):
            session = await self.open_session(principal)
            answer = await session.serve([request], open_sink, batch=False)
        if not session.connection.initialize_accepted:
            await self.end_session(session)
            return None, answer
        return session, answer

    async def resume(self, session_id: str, token: str | None) -> Session:
        """The session a later request names, checked: a token it carries must be valid and name
        this server and the session's user; a session past its token's expiry ends here.

        Raises `NotFound` (unknown or ended), `Unauthorized` or `Forbidden`.
        """
        session = self.sessions.get(session_id)
        if token is not None and (session is None or token != session.principal.token):
            principal = self._verify(token)
            self.authorize(principal)
            if session is not None and principal.user_id != session.principal.user_id:
                raise Forbidden("token is for another user than this session's")
        if session is None:
            raise NotFound("unknown or ended session")
        if session.expired:
            await self.end_session(session)
            if token is not None:
                raise Unauthorized("token expired")
            raise NotFound("session ended: its token expired")
        self.sessions.touch(session)
        return session

    async def deliver(
        self, session: Session, messages: list[Any], open_sink: OpenSink, *, batch: bool
    ) -> JsonAnswer | None:
        """What a later POST carried, on `session`: 202 when it held no request, else the answer
        (None when it went out as an SSE stream)."""
        version = session.connection.protocol_version
        if batch and version not in BATCH_VERSIONS:
            raise BadRequest(f"JSON-RPC batches are not allowed at protocol version {version}")
        await self.ready(session)  # 503 with Retry-After while its child or upstream is down
        requests = await session.receive(messages)
        if not requests:
            return ACCEPTED
        with self.admit(len(requests), session):
            return await session.serve(requests, open_sink, batch=batch)

    async def serve_stateless(
        self, principal: Principal, body: bytes, header_lines: Iterable[tuple[str, str]], open_sink: OpenSink
    ) -> JsonAnswer | None:
        """A 2026-07-28 request: authenticated on its own, answered on its own."""
        self.authorize(principal)
        await self.ready()
        decoded = stateless.decode(body)
        if decoded is None:
            return ACCEPTED  # no client notification means anything at this revision
        request, raw = decoded
        with self.admit(1):
            relay = self.backend.relay
            if relay is not None and await relay.speaks_modern():
                return await self._relay(relay, body, header_lines, open_sink)
            return await stateless.serve(self.backend, self.name, principal, request, raw, header_lines, open_sink)

    async def _relay(
        self, relay: StatelessRelay, body: bytes, header_lines: Iterable[tuple[str, str]], open_sink: OpenSink
    ) -> JsonAnswer | None:
        """The upstream's own answer to a request passed through as it is (see backends/relay.py)."""
        with anyio.fail_after(self.spec.timeout):
            async with relay.forward(body, list(header_lines)) as relayed:
                if relayed.body is not None:
                    return JsonAnswer(relayed.body, relayed.status)
                reply = Reply(None, open_sink)
                assert relayed.events is not None
                async for data in relayed.events:
                    message = jsonrpc.loads(data)
                    if isinstance(message, dict) and "method" not in message:
                        reply.respond(message)
                    else:
                        reply.emit(message)
                return reply.finish()

    # -- sessions -----------------------------------------------------------------------------

    async def open_session(self, principal: Principal) -> Session:
        """A new session; raises `Unavailable` when the backend cannot take one now."""
        session = Session(
            self.name,
            self.backend,
            principal,
            event_buffer_size=self._event_buffer_size,
            event_buffer_bytes=self._event_buffer_bytes,
            retry_ms=self._retry_ms,
        )
        await self.backend.session_opened(session.id)
        session.set_backend(self.backend)  # its init_options may only be known now (an upstream's)
        if principal.expires_at is not None:
            # A session never outlives its token, even while its client only listens.
            delay = max(0.0, principal.expires_at - time.time())
            session.expiry = asyncio.get_running_loop().call_later(delay, self._expire, session)
        for evicted in self.sessions.add(session):
            logger.info("%s: session cap reached, evicting the longest-idle session", self.name)
            await self.end_session(evicted)
        return session

    async def adopt_sessions(self, previous: HostedServer) -> None:
        """Take over `previous`'s live sessions (a reloaded definition of the same route).

        A session whose token the new definition refuses (a revoked API key), or that the new
        backend cannot take (its own child could not start), is ended: the client sees 404 and
        opens a new session.
        """
        adopted, previous.sessions = previous.sessions, SessionTable(1)  # the old server keeps none
        for session in adopted:
            try:
                self.authorize(session.principal)
                await self.backend.session_opened(session.id)
            except (Forbidden, Unavailable):
                await session.close()
                continue
            session.set_backend(self.backend)
            self.sessions.add(session)

    async def publish(self, method: str, params: Mapping[str, Any] | None, session_ids: set[str] | None) -> None:
        """A notification from the backend to its sessions' GET streams (all, or those named)."""
        for session in self.sessions:
            if session_ids is None or session.id in session_ids:
                await session.connection.notify(method, params)

    async def announce_changes(self, old: dict[str, Any] | None) -> None:
        """Tell live sessions which lists changed (on their GET streams), as the spec says.

        When a backend cannot say what it lists, every list counts as changed: a needless
        re-list is cheap, a missed change is not.
        """
        new = await self.backend.catalog()
        capabilities = self.backend.init_options.capabilities
        for kind, declared in (
            ("tools", capabilities.tools),
            ("resources", capabilities.resources),
            ("prompts", capabilities.prompts),
        ):
            if declared is None or not declared.list_changed:
                continue  # the server never said it would tell: its clients do not listen for it
            if old is None or new is None or old.get(kind) != new.get(kind):
                await self.publish(f"notifications/{kind}/list_changed", None, None)

    def _expire(self, session: Session) -> None:
        task = asyncio.ensure_future(self.end_session(session))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def end_session(self, session: Session) -> None:
        self.sessions.remove(session)
        await session.close()
        await self.backend.session_closed(session.id)

    async def reap(self, idle_timeout: float) -> int:
        stale = self.sessions.stale(idle_timeout)
        for session in stale:
            await self.end_session(session)
        return len(stale)

    async def start(self) -> None:
        await self.backend.start()

    async def stop(self) -> None:
        for session in self.sessions:
            await self.end_session(session)
        await self.backend.stop()
        self._drained.set()  # nothing left to wait for

    def describe(self) -> dict[str, Any]:
        """Status for `/health` and the management API: no keys, no hashes, no tokens."""
        return {
            "name": self.name,
            "title": self.spec.title,
            "version": self.spec.version,
            "description": self.spec.description,
            **self.backend.describe(),
            "sessions": len(self.sessions),
            "source": self.spec.source,
            "tools": [t.name for t in self.spec.tools],
            "resources": [r.uri for r in self.spec.resources],
            "prompts": [p.name for p in self.spec.prompts],
            "routes": [f"/{self.name}/mcp", f"/mcp/{self.name}"],
        }

    # -- the legacy HTTP+SSE transport (2024-11-05) ------------------------------------------

    async def open_stream_session(self, principal: Principal) -> Session:
        """A session for a legacy SSE stream, opened by its GET (the `initialize` comes later,
        POSTed). Raises `Forbidden` unless the token opens this server, `Unavailable` (503)
        while the server cannot serve."""
        self.authorize(principal)
        await self.ready()
        return await self.open_session(principal)

    async def deliver_later(self, connection: LegacyConnection, messages: list[Any], *, batch: bool) -> None:
        """What a legacy POST carried, on `connection`'s session: refused now (400, 429, 503), or
        taken in, its requests then served on the connection's stream while the caller answers 202."""
        session = connection.session
        connection.check(messages, batch=batch)
        version = session.connection.protocol_version
        if batch and version not in BATCH_VERSIONS:
            raise BadRequest(f"JSON-RPC batches are not allowed at protocol version {version}")
        await self.ready(session)
        requests = await session.receive(messages)
        if not requests:
            return
        admission = contextlib.ExitStack()  # entered here (429 now), left when the requests are done
        admission.enter_context(self.admit(len(requests), session))
        connection.serve_later(requests, admission)
