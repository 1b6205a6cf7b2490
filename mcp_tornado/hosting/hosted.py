"""`HostedServer`: one route's server: its definition, its backend, its sessions, its keys.

This is where the transport (sessions, stateless requests) meets a backend, and where the
rules that need both live: who may open or resume a session (the token's server, keys, scopes
and identity), which tools a caller may see and call, readiness (503 while a child is down),
and the caps on work in flight and the rate limits (429).

Long because those rules are one thing, who may do what on this route, and each of them
needs the sessions and the backend together.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, JSONRPCRequest

from mcp_tornado.auth import ApiKeys, Principal, anonymous, require_server
from mcp_tornado.backends.base import Backend
from mcp_tornado.backends.composed import Follower
from mcp_tornado.backends.curation import Curator
from mcp_tornado.backends.relay import StatelessRelay
from mcp_tornado.definitions import ServerSpec
from mcp_tornado.errors import (
    BadRequest,
    Forbidden,
    InsufficientScope,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from mcp_tornado.rate_limit import RateLimiter
from mcp_tornado.settings import Settings
from mcp_tornado.transport import jsonrpc, stateless
from mcp_tornado.transport.exchange import ACCEPTED, JsonAnswer, OpenSink, Reply
from mcp_tornado.transport.handshakes import Handshakes
from mcp_tornado.transport.jsonrpc import BATCH_VERSIONS
from mcp_tornado.transport.legacy import LegacyConnection
from mcp_tornado.transport.protocols import FastPath, ServedBackend
from mcp_tornado.transport.session import Session
from mcp_tornado.transport.session_table import SessionTable, identity_of

if TYPE_CHECKING:  # redis is imported only by a gateway that uses it (registry.py)
    from mcp_tornado.hosting.shared_sessions import SharedSessions

logger = logging.getLogger(__name__)

# Scope sets whose view of the tools is remembered; callers carry a handful of distinct sets,
# and past this many the memory is simply dropped (an attacker's made-up sets cannot grow it).
MAX_REMEMBERED_SCOPE_SETS = 256
# The reaper ends sessions for this long (seconds) before letting the loop serve others again.
REAP_SLICE = 0.005


class HostedServer:
    def __init__(
        self,
        spec: ServerSpec,
        backend: Backend,
        settings: Settings,
        verify: Callable[[str], Principal],
        revoked: Callable[[str | None], bool] = lambda token_id: False,
        shared: SharedSessions | None = None,
    ) -> None:
        """`verify(token)` checks a bearer token (raising `Unauthorized`) and says who it speaks for;
        `revoked(jti)` says whether a token id was revoked since (its sessions then end);
        `shared`: the session store all workers share (MCP_REDIS_URL), None for memory only."""
        self._revoked = revoked
        self.shared = shared
        self.name = spec.name
        self.spec = spec
        self.backend = backend
        self.api_keys = ApiKeys(spec.api_keys)
        self._verify = verify
        # A session never outlives its token, even while its client only listens: the table ends it then.
        self.sessions = SessionTable(settings.max_sessions_per_server, settings.max_sessions_per_user, self._expire)
        self._handshakes = Handshakes()  # what clients said in `initialize`, one copy per kind
        self._event_buffer_size = settings.event_buffer_size
        self._event_buffer_bytes = settings.event_buffer_bytes
        self._retry_ms = round(settings.sse_retry * 1000)
        self._max_in_flight = settings.max_in_flight_per_server
        self._max_in_flight_per_session = settings.max_in_flight_per_session
        self.in_flight = 0  # requests being served, on every session and stateless
        self._drained = asyncio.Event()
        self._drained.set()
        self._ending: set[asyncio.Task[None]] = set()  # sessions being ended by their expiry timers
        # What a caller with these scopes is served by: the backend, or a view that hides tools.
        self._views: dict[frozenset[str], ServedBackend] = {}
        # The definition's curation, for 2026-07-28 requests relayed to the upstream as they are.
        self._curator = Curator(spec.curation) if spec.curation.active else None
        # Counts the backend's `notifications/tools/list_changed`: what is cached from the tool
        # list (the route's OpenAPI document, handlers/tools_http.py) is keyed on it.
        self.tools_generation = 0
        limits, burst = spec.rate_limit, spec.rate_limit.burst or settings.rate_limit_burst
        self._per_identity = _limiter(limits.per_identity or settings.rate_limit_per_identity, burst)
        self._per_address = _limiter(limits.per_address or settings.rate_limit_per_address, burst)
        backend.publish = self.publish
        # Composed servers over this one: told what it tells its sessions (backends/composed.py).
        self.followers: set[Follower] = set()

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
        """Raises `Forbidden` unless the token opens this server: its name, one of its keys, and
        every scope the server asks for (`InsufficientScope` when one is missing)."""
        require_server(principal, self.name, self.api_keys)
        needed = self.spec.scopes
        if needed and not principal.scopes.issuperset(needed):
            missing = " ".join(s for s in needed if s not in principal.scopes)
            raise InsufficientScope(f"{self.name} needs a token with scope {missing}", scopes=needed)

    # -- who may call which tool ----------------------------------------------------------------

    def check_tools(self, principal: Principal, requests: Iterable[Any]) -> None:
        """Raises `InsufficientScope` (403) when one of `requests` calls a tool whose scopes the
        token lacks: nothing of a POST runs unless all of it may."""
        if not self.spec.tool_scopes:
            return
        for request in requests:
            if not isinstance(request, JSONRPCRequest) or request.method != "tools/call":
                continue
            name = (request.params or {}).get("name")
            needed = self.spec.tool_scopes.get(name) if isinstance(name, str) else None
            if needed and not principal.scopes.issuperset(needed):
                missing = " ".join(s for s in needed if s not in principal.scopes)
                raise InsufficientScope(
                    f"tool {name!r} needs a token with scope {missing}", scopes=(*self.spec.scopes, *needed)
                )

    def served_by(self, principal: Principal) -> ServedBackend:
        """What serves `principal`: the backend, or, when some tools need scopes its token lacks,
        a view of the backend without them (`tools/list` leaves them out)."""
        if not self.spec.tool_scopes:
            return self.backend
        served = self._views.get(principal.scopes)
        if served is None:
            hidden = frozenset(
                tool for tool, needed in self.spec.tool_scopes.items() if not principal.scopes.issuperset(needed)
            )
            served = _HidingTools(self.backend, hidden) if hidden else self.backend
            if len(self._views) >= MAX_REMEMBERED_SCOPE_SETS:
                self._views.clear()
            self._views[principal.scopes] = served
        return served

    # -- rate limits ------------------------------------------------------------------------------

    def limit_address(self, address: str | None) -> None:
        """Raises `TooManyRequests` (429 with Retry-After) when `address` (the connection's peer;
        None when it has none, such as a Unix socket's) is past its rate."""
        if self._per_address is not None:
            _take(self._per_address, address, "client address")

    def _limit_identity(self, identity: str) -> None:
        if self._per_identity is not None:
            _take(self._per_identity, identity, "caller")

    # -- what a client asks for -------------------------------------------------------------

    async def initialize(
        self, principal: Principal, request: JSONRPCRequest, open_sink: OpenSink, address: str | None = None
    ) -> tuple[Session | None, JsonAnswer | None]:
        """Open a session with an `initialize` request from `address`: the session (None when the
        handshake was refused: no session is left behind) and the answer."""
        self.authorize(principal)
        identity = identity_of(principal, address)
        self._limit_identity(identity)
        await self.ready()
        with self.admit(1):
            session = await self.open_session(principal, identity)
            answer = await session.serve([request], open_sink, batch=False)
        connection = session.connection
        if not connection.initialize_accepted:
            await self.end_session(session)
            return None, answer
        if connection.client_params is not None:
            connection.client_params = self._handshakes.shared(request.params, connection.client_params)
        if self.shared is not None:
            try:
                await self.shared.created(self, session)
            except Unavailable:
                await self.drop_session(session)
                raise
        return session, answer

    async def resume(self, session_id: str, token: str | None) -> tuple[Session, Principal]:
        """The session a later request names, checked, and who the request speaks for.

        A token the request carries must be valid, open this server (its keys and scopes) and
        speak for the session's identity: the same `userId`, `apiKey` and `sub` (absent where
        the session's token had none). That token then decides the request's tool calls and
        what the session lists from now on (an OAuth client's step-up to more scopes); without
        one the session's own token does. A session past its token's expiry ends here.

        Raises `NotFound` (unknown or ended), `Unauthorized`, `Forbidden` or `TooManyRequests`.
        """
        session = self.sessions.get(session_id)
        if self.shared is not None:  # this worker's copy, or one rebuilt from the shared store
            session = await self.shared.resume(self, session_id, session, token)
        principal = session.principal if session is not None else None
        if token is not None and (session is None or token != session.principal.token):
            principal = self._verify(token)
            self.authorize(principal)
            if session is not None and _identity_claims(principal) != _identity_claims(session.principal):
                raise Forbidden("token is for another identity (userId, apiKey or sub) than this session's")
        if session is None or principal is None:
            raise NotFound("unknown or ended session")
        if self._revoked(session.principal.token_id):
            await self.end_session(session)
            raise Unauthorized("token revoked: the session it opened has ended")
        if session.expired:
            await self.end_session(session)
            if token is not None:
                raise Unauthorized("token expired")
            raise NotFound("session ended: its token expired")
        self._limit_identity(self.sessions.identity(session))
        self.sessions.touch(session)
        if self.spec.tool_scopes and principal is not session.principal:
            served = self.served_by(principal)
            if session.runner.server is not served.server:
                session.set_backend(served)
        return session, principal

    async def deliver(
        self, session: Session, principal: Principal, messages: list[Any], open_sink: OpenSink, *, batch: bool
    ) -> JsonAnswer | None:
        """What a later POST carried, on `session`, for `principal` (see `resume`): 202 when it
        held no request, else the answer (None when it went out as an SSE stream)."""
        version = session.connection.protocol_version
        if batch and version not in BATCH_VERSIONS:
            raise BadRequest(f"JSON-RPC batches are not allowed at protocol version {version}")
        self.check_tools(principal, messages)
        # A ping is the gateway's to answer, whatever the backend's state.
        if not self.backend.always_ready and not _only_pings(messages):
            await self.ready(session)  # 503 with Retry-After while its child or upstream is down
        requests = await session.receive(messages)
        if not requests:
            return ACCEPTED
        with self.admit(len(requests), session):
            answer = await session.serve(requests, open_sink, batch=batch)
        if self.shared is not None:
            await self.shared.observe(self, session, requests)
        return answer

    async def serve_stateless(
        self,
        principal: Principal,
        body: bytes,
        header_lines: Iterable[tuple[str, str]],
        open_sink: OpenSink,
        address: str | None = None,
    ) -> JsonAnswer | None:
        """A 2026-07-28 request from `address`: authenticated on its own, answered on its own."""
        self.authorize(principal)
        self._limit_identity(identity_of(principal, address))
        await self.ready()
        decoded = stateless.decode(body)
        if decoded is None:
            return ACCEPTED  # no client notification means anything at this revision
        request, raw = decoded
        self.check_tools(principal, [request])
        served = self.served_by(principal)
        with self.admit(1):
            relay = self.backend.relay
            # Passed through as it is only when nothing needs hiding from the upstream's answer.
            # An upstream without tools would refuse tools/list; ours answers an empty list.
            no_tools = request.method == "tools/list" and self.backend.init_options.capabilities.tools is None
            if relay is not None and served is self.backend and not no_tools and await relay.speaks_modern():
                return await self._relay(relay, body, header_lines, open_sink)
            return await stateless.serve(served, self.name, principal, request, raw, header_lines, open_sink)

    async def _relay(
        self, relay: StatelessRelay, body: bytes, header_lines: Iterable[tuple[str, str]], open_sink: OpenSink
    ) -> JsonAnswer | None:
        """The upstream's own answer to a request passed through as it is (see backends/relay.py)."""
        with anyio.fail_after(self.spec.timeout):
            async with relay.forward(body, list(header_lines), self._curator) as relayed:
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

    async def open_session(
        self, principal: Principal, identity: str | None = None, *, session_id: str | None = None, local: bool = False
    ) -> Session:
        """A new session of `identity` (default: its token's, see `identity_of`); raises
        `Unavailable` when the backend cannot take one now. `session_id`: this worker's copy
        of a session from the shared store; `local`: one kept out of that store (a legacy
        HTTP+SSE session, whose stream and messages must meet in one process)."""
        served = self.served_by(principal)
        if self.shared is not None and not local:
            session = self.shared.new_session(self.name, served, principal, session_id)
        else:
            session = Session(
                self.name,
                served,
                principal,
                event_buffer_size=self._event_buffer_size,
                event_buffer_bytes=self._event_buffer_bytes,
                retry_ms=self._retry_ms,
            )
        await self.backend.session_opened(session.id)
        session.set_backend(served)  # its init_options may only be known now (an upstream's)
        for evicted in self.sessions.add(session, identity):
            if self.shared is not None:  # only this worker's copy: the caps that end sessions are in Redis
                await self.drop_session(evicted)
                continue
            logger.info("%s: session cap reached, evicting the longest-idle session", self.name)
            await self.end_session(evicted)
        return session

    async def adopt_sessions(self, previous: HostedServer) -> None:
        """Take over `previous`'s live sessions (a reloaded definition of the same route).

        A session whose token the new definition refuses (a revoked API key, a scope it now
        asks for), or that the new backend cannot take (its own child could not start), is
        ended: the client sees 404 and opens a new session. The rate limits' buckets carry over
        while the limits stay the same.
        """
        adopted, previous.sessions = previous.sessions, SessionTable(1)  # the old server keeps none
        adopted.stop_clock()  # their expiries are this server's to keep now
        self._per_identity = _carried_over(self._per_identity, previous._per_identity)
        self._per_address = _carried_over(self._per_address, previous._per_address)
        for session in adopted:
            try:
                self.authorize(session.principal)
                await self.backend.session_opened(session.id)
            except (Forbidden, Unavailable):
                await session.close()
                continue
            session.set_backend(self.served_by(session.principal))
            self.sessions.add(session, adopted.identity(session))

    async def publish(self, method: str, params: Mapping[str, Any] | None, session_ids: set[str] | None) -> None:
        """A notification from the backend to its sessions' GET streams (all, or those named)."""
        if method == "notifications/tools/list_changed":
            self.tools_generation += 1
        if self.shared is not None:
            await self.shared.publish(self, method, params, session_ids)
        else:
            for session in self.sessions:
                if session_ids is None or session.id in session_ids:
                    await session.connection.notify(method, params)
        for follower in list(self.followers):
            await follower(self.name, method, params, session_ids)

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
        if self.shared is not None:  # for good: on every worker, and in the store
            await self.shared.ended(self, session)
        await self.drop_session(session)

    async def drop_session(self, session: Session) -> None:
        """End this process's copy of `session` (with a shared store, the session lives on)."""
        self.sessions.remove(session)
        await session.close()
        await self.backend.session_closed(session.id)

    async def reap(self, idle_timeout: float) -> int:
        """End the stale sessions; returns how many. In slices of `REAP_SLICE` seconds with the loop
        let run in between, so reaping 100,000 sessions never stalls the clients of the others."""
        reaped = 0
        slice_ends = time.monotonic() + REAP_SLICE
        for session in self.sessions.stale(idle_timeout):
            if self.shared is not None and not session.expired:
                await self.drop_session(session)  # idle here; its record's TTL decides for the rest
            else:
                await self.end_session(session)
            reaped += 1
            if time.monotonic() > slice_ends:
                await asyncio.sleep(0)
                slice_ends = time.monotonic() + REAP_SLICE
        if self.shared is not None:
            await self.shared.sweep(self)
        return reaped

    async def start(self) -> None:
        await self.backend.start()

    async def stop(self) -> None:
        for session in self.sessions:  # with a shared store, the sessions live on in other workers
            await (self.drop_session(session) if self.shared is not None else self.end_session(session))
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

    async def open_stream_session(self, principal: Principal, address: str | None = None) -> Session:
        """A session for a legacy SSE stream from `address`, opened by its GET (the `initialize`
        comes later, POSTed). Raises `Forbidden` unless the token opens this server,
        `TooManyRequests` past the caller's rate, `Unavailable` (503) while the server cannot serve."""
        self.authorize(principal)
        identity = identity_of(principal, address)
        self._limit_identity(identity)
        await self.ready()
        return await self.open_session(principal, identity, local=True)

    async def deliver_later(
        self, connection: LegacyConnection, principal: Principal, messages: list[Any], *, batch: bool
    ) -> None:
        """What a legacy POST carried, on `connection`'s session, for `principal` (see `resume`):
        refused now (400, 403, 429, 503), or taken in, its requests then served on the
        connection's stream while the caller answers 202."""
        session = connection.session
        connection.check(messages, batch=batch)
        version = session.connection.protocol_version
        if batch and version not in BATCH_VERSIONS:
            raise BadRequest(f"JSON-RPC batches are not allowed at protocol version {version}")
        self.check_tools(principal, messages)
        await self.ready(session)
        requests = await session.receive(messages)
        if not requests:
            return
        admission = contextlib.ExitStack()  # entered here (429 now), left when the requests are done
        admission.enter_context(self.admit(len(requests), session))
        connection.serve_later(requests, admission)


def _identity_claims(principal: Principal) -> tuple[str | None, str | None, str | None]:
    """The claims that say who a token speaks for: a session stays bound to all of them."""
    return principal.user_id, principal.api_key, principal.subject


def _limiter(rate: float | None, burst: int) -> RateLimiter | None:
    return RateLimiter(rate, burst) if rate is not None else None


def _carried_over(new: RateLimiter | None, old: RateLimiter | None) -> RateLimiter | None:
    """`old`, buckets and all, when it limits exactly as `new` would (a reload that left them alone)."""
    if new is not None and old is not None and old.same_as(new.rate, new.burst):
        return old
    return new


def _take(limiter: RateLimiter, key: str | None, kind: str) -> None:
    wait = limiter.take(key, time.monotonic())
    if wait:
        raise TooManyRequests(
            f"rate limit: {limiter.rate:g} requests a second per {kind} (burst {limiter.burst})",
            retry_after=math.ceil(wait),
        )


class _HidingTools:
    """The backend as a caller sees it whose token lacks the scopes of the tools in `hidden`:
    `tools/list` leaves them out, and `tools/call` of one is refused (`HostedServer.check_tools`
    has answered 403 before that; this is the backstop).

    Its `server` is a shallow copy of the backend's with one more middleware (the SDK's
    documented way to wrap every request), redone whenever the backend's server changes (an
    upstream's, once it has said who it is). A server with middleware is served on the SDK's
    path: the backend's fast paths are not used for such a caller.
    """

    def __init__(self, backend: Backend, hidden: frozenset[str]) -> None:
        self._backend = backend
        self._hidden = hidden
        self._copied: Server[Any] | None = None  # the backend's server the copy was made from
        self._server: Server[Any] | None = None

    @property
    def server(self) -> Server[Any]:
        inner = self._backend.server
        if self._server is None or inner is not self._copied:
            server = copy.copy(inner)
            # Outermost: a curated backend's own middleware renames, and tool scopes name
            # tools as clients see them.
            server.middleware = [self._hide, *inner.middleware]
            self._copied, self._server = inner, server
        return self._server

    @property
    def lifespan_state(self) -> Any:
        return self._backend.lifespan_state

    @property
    def init_options(self) -> InitializationOptions:
        return self._backend.init_options

    @property
    def fast_paths(self) -> Mapping[str, FastPath]:
        return self._backend.fast_paths

    @property
    def request_timeout(self) -> float | None:
        return self._backend.request_timeout

    async def _hide(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        if ctx.method == "tools/call" and params.get("name") in self._hidden:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.get('name')}")
        result = await call_next(ctx)
        if ctx.method == "tools/list" and isinstance(result, dict) and isinstance(result.get("tools"), list):
            shown = [t for t in result["tools"] if not (isinstance(t, dict) and t.get("name") in self._hidden)]
            return {**result, "tools": shown}
        return result


def _only_pings(messages: list[Any]) -> bool:
    return all(getattr(message, "method", None) == "ping" for message in messages)
