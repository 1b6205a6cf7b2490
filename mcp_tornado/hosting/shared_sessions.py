"""`SharedSessions`: the session store every worker and every host shares, on Redis (`MCP_REDIS_URL`).

Long because the store is one thing with five faces that must agree on the same keys: the
session records, the GET streams (delivery and replay), the caps, the answers to our requests
that land on another worker, and what happens while Redis is away.

Without `MCP_REDIS_URL` none of this exists and a session lives in one process's memory, as it
always did. With it, a session is a record in Redis and each worker keeps a *local copy* (a
`SharedSession`, rebuilt from the record on the first request that reaches a worker without
one); any worker of any host can serve any request of any session.

Keys, all under `mcpt:` (`{srv}` a route name, `{sid}` a session id):

    mcpt:s:{srv}:{sid}      the record (JSON): the token's claims (never the token nor its
                            apiKey: their sha256; a request's token brings the key back), the
                            identity it counts against, the protocol revision, the client's
                            capabilities and info, its log level, its subscriptions, the token's
                            expiry. TTL: MCP_SESSION_IDLE_TIMEOUT, refreshed at most every
                            `refresh_every` seconds per worker and session, never per request.
    mcpt:e:{srv}:{sid}      the session's GET stream: a Redis stream, XADD MAXLEN ~ MCP_EVENT_BUFFER.
    mcpt:g:{srv}:{sid}      the worker holding the GET stream now (its inbox).
    mcpt:n:{srv}            the server's sessions by last refresh (a sorted set): MCP_MAX_SESSIONS.
    mcpt:u:{srv}:{hash}     the same per identity: MCP_MAX_SESSIONS_PER_USER.
    mcpt:r:{srv}:{hash}     the sessions subscribed to a resource (by the URI's sha256; at most
                            MAX_SUBSCRIPTIONS a session; TTL: the idle timeout).

Channels: `mcpt:w:{inbox}`, one per worker (answers to its server-to-client requests, "let go
of this GET stream"); `mcpt:all` ("this session ended": every worker drops its copy).

**One Redis stream per session serves both delivery and replay.** Whatever is meant for the
GET stream (a notification, a resource update, a server-to-client request) is XADDed to it,
from whichever worker produced it; the worker holding the GET response reads it with
`XREAD BLOCK` and writes each entry as an SSE event whose id *is* the entry id (`1732...-0`).
`Last-Event-ID` is then simply the position to read on from, on any host: no second buffer,
no id mapping, and no gap between replay and live events, because both are one read of one
log. Pub/sub alone would lose what is published while a client reconnects (nobody
subscribed), and a buffer beside a channel would need the two kept in step. The cost is one
Redis connection per open GET stream per worker (blocking reads), bounded like the streams
themselves by the session caps and MCP_MAX_CONNECTIONS. The stream is bounded by count
(`MAXLEN`), not bytes; MCP_EVENT_BUFFER_BYTES applies to the in-process POST streams only.

POST responses stay where the request is served (their replay buffer is the worker's own): a
client that resumes a *POST* stream on another host gets a fresh GET stream instead.

Server-to-client requests carry the asking worker's inbox in their id (`mcpt-{inbox}-{n}`):
the worker that receives the answer POST publishes it to that inbox, where the call waits.

Redis away: a request that needs it (a session this worker has no copy of, `initialize`, a GET
stream) gets 503 with Retry-After; local copies go on serving; nothing is retried by hand: the
client's connection pool reconnects on the next command, and the listener task resubscribes.
A local copy whose record Redis lost (a restart without persistence) writes it again.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

import jwt
import redis.asyncio
import redis.exceptions
from mcp_types import ClientCapabilities, ErrorData, InitializeRequestParams, JSONRPCRequest, RequestId

from mcp_tornado.auth import Principal
from mcp_tornado.errors import Forbidden, Unavailable
from mcp_tornado.request_info import RequestInfo
from mcp_tornado.settings import Settings
from mcp_tornado.transport.jsonrpc import dumps
from mcp_tornado.transport.protocols import ServedBackend
from mcp_tornado.transport.session import Session
from mcp_tornado.transport.session_table import SessionTable, identity_of
from mcp_tornado.transport.sse import EventStream, Sink, frame

logger = logging.getLogger(__name__)

BROADCAST = "mcpt:all"
# Seconds a 503 tells the client to wait while Redis is unreachable.
RETRY_AFTER = 2
# A GET stream's blocking read returns at least this often (ms), to notice its client left.
READ_BLOCK_MS = 5000
ENTRY_ID = re.compile(r"[0-9]{1,15}-[0-9]{1,10}")
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
REQUEST_ID = re.compile(r"mcpt-([0-9a-f]{12})-[0-9]+")
# What a request can change in a session's record.
RECORDED_METHODS = frozenset({"logging/setLevel", "resources/subscribe", "resources/unsubscribe"})
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)
# Seconds the listener waits before subscribing again after losing Redis.
RESUBSCRIBE_DELAY = 0.5

SinkT = TypeVar("SinkT", bound=Sink)


class Route(Protocol):
    """What the store needs of a route (`hosting.hosted.HostedServer` is one; it imports us)."""

    name: str
    sessions: SessionTable

    async def open_session(
        self, principal: Principal, identity: str | None = None, *, session_id: str | None = None, local: bool = False
    ) -> Session: ...

    async def drop_session(self, session: Session) -> None: ...


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SharedGetStream(EventStream):
    """A session's GET stream when it lives in Redis: `send` appends to the session's Redis
    stream; the response attached here (if any) is fed by `SharedSessions._pump`."""

    def __init__(self, session: SharedSession, store: SharedSessions) -> None:
        super().__init__("get", session.events)
        self._session = session
        self._store = store

    def send(self, data: bytes) -> None:
        self._store.append(self._session.server_name, self._session.id, data)

    def prime(self, retry_ms: int | None = None) -> None:
        """Primed by `SharedSessions.serve_get`, with the Redis entry id it starts from."""

    def take(self, sink: Sink) -> None:
        """`sink` reads this stream from now on; a response still attached here ends."""
        previous, self._sink = self._sink, sink
        if previous is not None and previous is not sink:
            previous.end()

    def holds(self, sink: Sink) -> bool:
        return self._sink is sink and sink.open


class SharedSession(Session):
    """A local copy of a session kept in Redis."""

    def __init__(self, *args: Any, store: SharedSessions, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = store
        self.request_prefix = f"mcpt-{store.inbox}-"
        self.standalone = SharedGetStream(self, store)
        self.refreshed = time.monotonic()  # when this worker last refreshed the record's TTL
        self.recorded: tuple[Any, ...] | None = None  # what the record says of its mutable parts

    def answer(self, request_id: RequestId, outcome: dict[str, Any] | ErrorData) -> bool:
        """A local waiter's answer, or one for a request another worker sent: passed on to it."""
        if super().answer(request_id, outcome):
            return True
        match = REQUEST_ID.fullmatch(request_id) if isinstance(request_id, str) else None
        if match is None or match.group(1) == self.store.inbox:
            return False
        self.store.forward_answer(match.group(1), self.server_name, self.id, str(request_id), outcome)
        return True

    def local_answer(self, request_id: RequestId, outcome: dict[str, Any] | ErrorData) -> bool:
        return super().answer(request_id, outcome)


@dataclasses.dataclass
class _Keys:
    server: str
    session: str

    @property
    def record(self) -> str:
        return f"mcpt:s:{self.server}:{self.session}"

    @property
    def stream(self) -> str:
        return f"mcpt:e:{self.server}:{self.session}"

    @property
    def holder(self) -> str:
        return f"mcpt:g:{self.server}:{self.session}"


def _all_sessions(server: str) -> str:
    return f"mcpt:n:{server}"


def _user_sessions(server: str, identity: str, *, digest: str | None = None) -> str:
    return f"mcpt:u:{server}:{digest or _digest(identity)[:32]}"


def _plain_identity(identity: str) -> str | None:
    """`identity` if it may be written to Redis as is; None for one built on an api key or a token."""
    return identity if identity.startswith(("user:", "address:")) else None


def _subscribers(server: str, uri: str) -> str:
    return f"mcpt:r:{server}:{_digest(uri)[:32]}"  # a URI may be long: its digest names the set


# Resource subscriptions one session may hold in the store (past it, a subscribe is not recorded).
MAX_SUBSCRIPTIONS = 64


def _api_key_in(token: str | None) -> str | None:
    """The `apiKey` claim of a token, read without checking it: only ever compared with the digest
    a session's record keeps, and `HostedServer.resume` verifies any token it then accepts."""
    if not token:
        return None
    try:
        value = jwt.decode(token, options={"verify_signature": False}).get("apiKey")
    except jwt.PyJWTError:
        return None
    return value if isinstance(value, str) else None


class SharedSessions:
    """This process's link to the shared store; one per gateway (worker), used by every route.

    `lookup(name)` finds a hosted server by route name (the registry's `get`).
    """

    def __init__(self, settings: Settings, lookup: Callable[[str], Route | None]) -> None:
        assert settings.redis_url is not None
        self.url = settings.redis_url
        self.lookup = lookup
        self.inbox = secrets.token_hex(6)
        self.ttl = max(1, round(settings.session_idle_timeout))
        self.idle_timeout = settings.session_idle_timeout
        # How often one worker refreshes one session's TTL: often enough that a session in use
        # anywhere never expires, seldom enough to cost nothing per request.
        self.refresh_every = max(0.5, min(60.0, settings.session_idle_timeout / 10))
        self.buffer_size = settings.event_buffer_size
        self.max_sessions = settings.max_sessions_per_server
        self.max_per_user = settings.max_sessions_per_user or settings.max_sessions_per_server
        self._settings = settings
        # Typed loosely: without decode_responses every reply is bytes, which the stubs cannot say.
        self._redis: Any = None
        self._blocking: Any = None  # for XREAD BLOCK, which holds its connection
        self._outbox: dict[str, collections.deque[bytes]] = {}  # stream key -> events not yet XADDed
        self._rebuilding: dict[tuple[str, str], asyncio.Future[Session | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flushing: set[asyncio.Task[Any]] = set()  # of those, the writes to GET streams
        self._listener: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect lazily (a Redis that is down now is not a reason not to start) and listen."""
        if self._redis is not None:
            return
        common: dict[str, Any] = {"socket_connect_timeout": 2, "health_check_interval": 10}
        self._redis = redis.asyncio.Redis.from_url(self.url, socket_timeout=5, **common)
        self._blocking = redis.asyncio.Redis.from_url(self.url, socket_timeout=READ_BLOCK_MS / 1000 + 5, **common)
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        """Flush what is waiting to be written (briefly), stop listening, close the connections."""
        if self._flushing:
            await asyncio.wait(self._flushing, timeout=2)
        for task in [*self._tasks, *([self._listener] if self._listener else [])]:
            task.cancel()
        if self._listener is not None:
            await asyncio.gather(self._listener, return_exceptions=True)
        for client in (self._redis, self._blocking):
            if client is not None:
                await client.aclose()

    @property
    def redis(self) -> Any:
        assert self._redis is not None, "SharedSessions.start() first"
        return self._redis

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def new_session(self, server: str, served: ServedBackend, principal: Principal, session_id: str | None) -> Session:
        settings = self._settings
        return SharedSession(
            server,
            served,
            principal,
            event_buffer_size=settings.event_buffer_size,
            event_buffer_bytes=settings.event_buffer_bytes,
            retry_ms=round(settings.sse_retry * 1000),
            session_id=session_id,
            store=self,
        )

    # -- records --------------------------------------------------------------------------------

    def _record(self, hosted: Route, session: Session) -> tuple[str, tuple[Any, ...]]:
        p = session.principal
        info = session.metadata.request_context
        level = info.log_level if isinstance(info, RequestInfo) else None
        subscriptions = sorted(getattr(session, "subscriptions", ()))
        connection = session.connection
        params = connection.client_params
        caps = connection.client_capabilities
        record = {
            "p": {
                "server_name": p.server_name,
                # Never the key itself: its digest, matched against the key each request's token carries.
                "api_key": None,
                "akd": _digest(p.api_key) if p.api_key is not None else None,
                "user_id": p.user_id,
                "admin": p.admin,
                "expires_at": p.expires_at,
                "subject": p.subject,
                "scopes": sorted(p.scopes),
                "token_id": p.token_id,
            },
            "th": _digest(p.token) if p.token else None,
            # The identity only when it holds no secret (a user id, an address); else it is worked
            # out again from the principal (`identity_of`), whose api key the request brings back.
            "id": _plain_identity(hosted.sessions.identity(session)),
            "ud": _digest(hosted.sessions.identity(session))[:32],
            "v": connection.protocol_version,
            "cp": params.model_dump(by_alias=True, mode="json", exclude_none=True) if params is not None else None,
            "cc": caps.model_dump(by_alias=True, mode="json", exclude_none=True) if caps is not None else None,
            "init": connection.initialized.is_set(),
            "ll": level,
            "subs": subscriptions,
        }
        return json.dumps(record, separators=(",", ":")), (level, tuple(subscriptions), record["init"])

    async def created(self, hosted: Route, session: Session) -> None:
        """A session this worker opened: record it, start its stream, and hold the caps (the
        longest-idle sessions past them end, on every worker). Raises `Unavailable`."""
        identity = hosted.sessions.identity(session)
        keys = _Keys(hosted.name, session.id)
        text, state = self._record(hosted, session)
        now = time.time()
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(keys.record, text, ex=self.ttl)
            pipe.xadd(keys.stream, {"d": b""}, maxlen=self.buffer_size, approximate=True)
            pipe.expire(keys.stream, self.ttl)
            pipe.zadd(_all_sessions(hosted.name), {session.id: now})
            pipe.zadd(_user_sessions(hosted.name, identity), {session.id: now})
            pipe.expire(_user_sessions(hosted.name, identity), self.ttl)
            pipe.zcard(_all_sessions(hosted.name))
            pipe.zcard(_user_sessions(hosted.name, identity))
            *_, total, own = await pipe.execute()
            evicted: list[bytes] = []
            if own > self.max_per_user:
                evicted += [
                    m
                    for m, _ in await self.redis.zpopmin(_user_sessions(hosted.name, identity), own - self.max_per_user)
                ]
            if total > self.max_sessions:
                evicted += [
                    m for m, _ in await self.redis.zpopmin(_all_sessions(hosted.name), total - self.max_sessions)
                ]
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        if isinstance(session, SharedSession):
            session.recorded = state
        for member in evicted:
            victim = member.decode()
            if victim != session.id:
                logger.info("%s: session cap reached, evicting the longest-idle session", hosted.name)
                await self._end(hosted.name, victim, identity=None)

    async def save(self, hosted: Route, session: Session) -> None:
        """Write the record again when what a request may change in it (log level,
        subscriptions) did change; best effort: the local copy is right either way."""
        if not isinstance(session, SharedSession):
            return
        text, state = self._record(hosted, session)
        if state == session.recorded:
            return
        try:
            await self.redis.set(_Keys(hosted.name, session.id).record, text, ex=self.ttl)
            session.recorded = state
        except REDIS_ERRORS as exc:
            logger.warning("%s: cannot update session record: %s", hosted.name, exc)

    async def observe(self, hosted: Route, session: Session, requests: Iterable[JSONRPCRequest]) -> None:
        """After `requests` were served: keep the record and the subscriber sets in step."""
        changed = False
        for request in requests:
            if request.method not in RECORDED_METHODS:
                continue
            changed = True
            uri = (request.params or {}).get("uri")
            if not isinstance(uri, str) or not isinstance(session, SharedSession):
                continue
            subs: set[str] = session.__dict__.setdefault("subscriptions", set())
            try:
                if request.method == "resources/subscribe":
                    if uri in subs or len(subs) >= MAX_SUBSCRIPTIONS:
                        continue
                    subs.add(uri)
                    pipe = self.redis.pipeline(transaction=False)
                    pipe.sadd(_subscribers(hosted.name, uri), session.id)
                    pipe.expire(_subscribers(hosted.name, uri), self.ttl)  # outlives no subscriber's record
                    await pipe.execute()
                elif request.method == "resources/unsubscribe":
                    subs.discard(uri)
                    await self.redis.srem(_subscribers(hosted.name, uri), session.id)
            except REDIS_ERRORS as exc:
                logger.warning("%s: cannot record a subscription: %s", hosted.name, exc)
        if changed:
            await self.save(hosted, session)

    async def resume(self, hosted: Route, session_id: str, local: Session | None, token: str | None) -> Session | None:
        """The session a request names: this worker's copy (its record's TTL refreshed now and
        then), or one rebuilt from the record; None when the store has no such session.
        Raises `Unavailable` when a copy must be rebuilt and Redis cannot be reached."""
        if local is not None:
            if isinstance(local, SharedSession) and time.monotonic() - local.refreshed >= self.refresh_every:
                return await self._refresh(hosted, local)
            return local
        if not SESSION_ID.fullmatch(session_id):
            return None
        key = (hosted.name, session_id)
        waiting = self._rebuilding.get(key)
        if waiting is not None:  # another request of the same session is rebuilding it
            return await asyncio.shield(waiting)
        future: asyncio.Future[Session | None] = asyncio.get_running_loop().create_future()
        self._rebuilding[key] = future
        try:
            session = await self._rebuild(hosted, session_id, token)
            future.set_result(session)
            return session
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._rebuilding[key]

    async def _refresh(self, hosted: Route, session: SharedSession) -> Session | None:
        session.refreshed = time.monotonic()
        try:
            alive = await self._touch(hosted, session)
        except REDIS_ERRORS:
            return session  # Redis away: the local copy serves on
        if alive:
            return session
        if time.monotonic() - session.last_active < self.idle_timeout and not session.expired:
            # In use here, yet its record is gone: Redis lost it (restarted without persistence).
            try:
                await self.created(hosted, session)
            except Unavailable:
                pass
            logger.info("%s: session record written again (the store had lost it)", hosted.name)
            return session
        await hosted.drop_session(session)
        return None

    async def _touch(self, hosted: Route, session: Session) -> bool:
        """Refresh a session's TTLs and its place among the idle; False when its record is gone."""
        keys = _Keys(hosted.name, session.id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.expire(keys.record, self.ttl)
        pipe.expire(keys.stream, self.ttl)
        pipe.zadd(_all_sessions(hosted.name), {session.id: time.time()}, xx=True)
        identity = hosted.sessions.identity(session) if hosted.sessions.get(session.id) is session else None
        if identity is not None:
            pipe.zadd(_user_sessions(hosted.name, identity), {session.id: time.time()}, xx=True)
        results = await pipe.execute()
        return bool(results[0])

    async def _rebuild(self, hosted: Route, session_id: str, token: str | None) -> Session | None:
        keys = _Keys(hosted.name, session_id)
        try:
            raw = await self.redis.get(keys.record)
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        if raw is None:
            return None
        record = json.loads(raw)
        claims = dict(record["p"])
        key_digest = claims.pop("akd", None)
        if key_digest is not None:  # the session's api key comes back with the request's token
            presented = _api_key_in(token)
            if presented is None or _digest(presented) != key_digest:
                raise Forbidden("token is for another identity (userId, apiKey or sub) than this session's")
            claims["api_key"] = presented
        principal = Principal(token="", **{**claims, "scopes": frozenset(claims["scopes"])})
        if token is not None and record["th"] is not None and _digest(token) == record["th"]:
            principal = dataclasses.replace(principal, token=token)  # the very token that opened it
        identity = record["id"] if record["id"] is not None else identity_of(principal)
        session = await hosted.open_session(principal, identity, session_id=session_id)
        connection = session.connection
        connection.protocol_version = record["v"]
        if record["cp"] is not None:
            connection.client_params = InitializeRequestParams.model_validate(record["cp"])
        if record["cc"] is not None:
            connection.client_capabilities = ClientCapabilities.model_validate(record["cc"])
        if record["init"] or record["cp"] is not None:
            # A later request (this one) comes after the client's `notifications/initialized`,
            # which the worker that opened the session may have received after writing the record.
            connection.initialized.set()
        info = session.metadata.request_context
        if isinstance(info, RequestInfo):
            info.log_level = record["ll"]
        if isinstance(session, SharedSession):
            session.__dict__["subscriptions"] = set(record["subs"])
            session.recorded = (record["ll"], tuple(record["subs"]), record["init"])
        logger.debug("%s: session rebuilt from the shared store", hosted.name)
        return session

    async def ended(self, hosted: Route, session: Session) -> None:
        """A session ended here for good (DELETE, its token's expiry, a revocation): remove it
        from the store and tell every worker to drop its copy. Best effort."""
        identity = hosted.sessions.identity(session) if hosted.sessions.get(session.id) is session else None
        await self._end(hosted.name, session.id, identity, getattr(session, "subscriptions", ()), drop=False)

    async def _end(
        self, server: str, session_id: str, identity: str | None, subscriptions: Iterable[str] = (), drop: bool = True
    ) -> None:
        """Remove a session from the store, tell the other workers; `drop`: this worker's copy too."""
        keys = _Keys(server, session_id)
        try:
            user_digest = None
            if identity is None or not subscriptions:
                raw = await self.redis.get(keys.record)
                if raw is not None:
                    record = json.loads(raw)
                    user_digest, subscriptions = record.get("ud"), subscriptions or record["subs"]
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(keys.record, keys.stream, keys.holder)
            pipe.zrem(_all_sessions(server), session_id)
            if identity is not None or user_digest is not None:
                pipe.zrem(_user_sessions(server, identity or "", digest=user_digest), session_id)
            for uri in subscriptions:
                pipe.srem(_subscribers(server, uri), session_id)
            pipe.publish(BROADCAST, json.dumps({"k": "end", "srv": server, "sid": session_id, "from": self.inbox}))
            await pipe.execute()
        except REDIS_ERRORS as exc:
            logger.warning("%s: cannot remove an ended session from the store: %s", server, exc)
        hosted = self.lookup(server) if drop else None
        local = hosted.sessions.get(session_id) if hosted is not None else None
        if hosted is not None and local is not None:
            await hosted.drop_session(local)

    async def sweep(self, hosted: Route) -> None:
        """The reaper's part in Redis: records expire by their TTL; their places in the caps'
        sorted sets are cleared here."""
        try:
            await self.redis.zremrangebyscore(_all_sessions(hosted.name), 0, time.time() - self.idle_timeout)
        except REDIS_ERRORS as exc:
            logger.warning("%s: cannot sweep the session store: %s", hosted.name, exc)

    def _unavailable(self, exc: BaseException) -> Unavailable:
        logger.warning("session store unreachable: %s", exc)
        return Unavailable("the session store is unreachable; try again shortly", retry_after=RETRY_AFTER)

    # -- the GET stream ---------------------------------------------------------------------------

    def append(self, server: str, session_id: str, data: bytes) -> None:
        """Queue `data` for the session's GET stream; written in order, in batches."""
        key = _Keys(server, session_id).stream
        queue = self._outbox.get(key)
        if queue is None:
            queue = self._outbox[key] = collections.deque(maxlen=self.buffer_size)
            flushing = self._spawn(self._flush(key, queue))
            self._flushing.add(flushing)
            flushing.add_done_callback(self._flushing.discard)
        queue.append(data)

    async def _flush(self, key: str, queue: collections.deque[bytes]) -> None:
        try:
            while queue:
                batch = list(queue)
                queue.clear()
                pipe = self.redis.pipeline(transaction=False)
                for data in batch:
                    # NOMKSTREAM: an event for a session that has ended creates nothing.
                    pipe.xadd(key, {"d": data}, maxlen=self.buffer_size, approximate=True, nomkstream=True)
                try:
                    await pipe.execute()
                except REDIS_ERRORS as exc:
                    logger.warning("%d GET stream event(s) lost: the session store is unreachable: %s", len(batch), exc)
        finally:
            if self._outbox.get(key) is queue:
                del self._outbox[key]

    async def serve_get(
        self, hosted: Route, session: Session, last_event_id: str | None, open_sink: Callable[[], SinkT]
    ) -> SinkT:
        """Open the session's GET stream on `open_sink()`: from just after `last_event_id` when
        the stream still holds it (a resume, on any host), else from now (with a priming event
        for the revisions that want one). Raises `Unavailable` before any byte is sent."""
        keys = _Keys(hosted.name, session.id)
        stream = session.standalone
        assert isinstance(stream, SharedGetStream)
        try:
            start = prime = None
            known = last_event_id is not None and ENTRY_ID.fullmatch(last_event_id) is not None
            if known and await self.redis.xrange(keys.stream, last_event_id, last_event_id, count=1):
                start = last_event_id
            if start is None:  # a fresh stream: it starts at an entry of its own
                pipe = self.redis.pipeline(transaction=True)
                pipe.xadd(keys.stream, {"d": b""}, maxlen=self.buffer_size, approximate=True)
                pipe.expire(keys.stream, self.ttl)
                entry, _ = await pipe.execute()
                start = prime = entry.decode()
            previous = await self.redis.set(keys.holder, self.inbox, ex=self.ttl, get=True)
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        if previous is not None and previous.decode() != self.inbox:  # it was read elsewhere: stop there
            message = {"k": "release", "srv": hosted.name, "sid": session.id}
            self._spawn(self._publish(f"mcpt:w:{previous.decode()}", message))
        sink = open_sink()
        stream.take(sink)
        if prime is not None and session.resumable:
            sink.write_frame(frame(prime, b"", session.retry_ms))
        identity = hosted.sessions.identity(session) if hosted.sessions.get(session.id) is session else None
        self._spawn(self._pump(hosted, session, stream, sink, keys, start, identity))
        return sink

    async def _pump(
        self,
        hosted: Route,
        session: Session,
        stream: SharedGetStream,
        sink: Sink,
        keys: _Keys,
        start: str,
        identity: str | None,
    ) -> None:
        """Feed `sink` from the session's Redis stream until it closes or is replaced."""
        assert self._blocking is not None
        last, refreshed = start, time.monotonic()
        try:
            while stream.holds(sink):
                found = await self._blocking.xread({keys.stream: last}, count=100, block=READ_BLOCK_MS)
                for _, entries in found:
                    for entry, fields in entries:
                        last = entry.decode()
                        data = fields.get(b"d", b"")
                        if data and stream.holds(sink) and not sink.write_frame(frame(last, data)):
                            return
                if time.monotonic() - refreshed >= self.refresh_every:  # a listening client is not idle
                    refreshed = time.monotonic()
                    session.touch()
                    await self._touch(hosted, session)
                    await self.redis.expire(keys.holder, self.ttl)
        except REDIS_ERRORS as exc:
            logger.warning("%s: GET stream ended: the session store is unreachable: %s", hosted.name, exc)
        finally:
            if stream.holds(sink):
                stream.release()  # the client comes back with Last-Event-ID, here or elsewhere
            elif sink.open and not stream.holds(sink):
                sink.end()

    async def publish(
        self, hosted: Route, method: str, params: Mapping[str, Any] | None, session_ids: set[str] | None
    ) -> None:
        """A backend's notification for its sessions' GET streams: every session with a copy
        here (list changes: each worker follows servers.d/ and tells its own), or those named
        plus every session subscribed, on any worker, to the resource it is about."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if session_ids is None:
            targets = {session.id for session in hosted.sessions}
        else:
            targets = set(session_ids)
            uri = (params or {}).get("uri")
            if method == "notifications/resources/updated" and isinstance(uri, str):
                try:
                    targets |= {m.decode() for m in await self.redis.smembers(_subscribers(hosted.name, uri))}
                except REDIS_ERRORS as exc:
                    logger.warning("%s: cannot read a resource's subscribers: %s", hosted.name, exc)
        data = dumps(message)
        for session_id in targets:
            self.append(hosted.name, session_id, data)

    # -- worker to worker -------------------------------------------------------------------------

    def forward_answer(
        self, inbox: str, server: str, session_id: str, request_id: str, outcome: dict[str, Any] | ErrorData
    ) -> None:
        """The client answered a request another worker sent: pass the answer on to it."""
        if isinstance(outcome, ErrorData):
            body: dict[str, Any] = {"error": outcome.model_dump(by_alias=True, mode="json", exclude_none=True)}
        else:
            body = {"result": outcome}
        message = {"k": "answer", "srv": server, "sid": session_id, "id": request_id, **body}
        self._spawn(self._publish(f"mcpt:w:{inbox}", message))

    async def _publish(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await self.redis.publish(channel, json.dumps(message))
        except REDIS_ERRORS as exc:
            logger.warning("cannot reach another worker through the session store: %s", exc)

    async def _listen(self) -> None:
        """This worker's inbox and the broadcast channel, subscribed again whenever Redis returns."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(f"mcpt:w:{self.inbox}", BROADCAST)
                while True:
                    message = await pubsub.get_message(timeout=READ_BLOCK_MS / 1000)
                    if message is not None:
                        await self._dispatch(message["data"])
            except REDIS_ERRORS as exc:
                logger.debug("session store listener lost Redis: %s", exc)
            finally:
                try:
                    await pubsub.aclose()
                except REDIS_ERRORS:
                    pass
            await asyncio.sleep(RESUBSCRIBE_DELAY)

    async def _dispatch(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            hosted = self.lookup(message["srv"])
            session = hosted.sessions.get(message["sid"]) if hosted is not None else None
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed message on the session store's channels")
            return
        if hosted is None or session is None:
            return
        kind = message.get("k")
        if kind == "answer" and isinstance(session, SharedSession):
            outcome = ErrorData.model_validate(message["error"]) if "error" in message else message.get("result")
            session.local_answer(message["id"], outcome)
        elif kind == "release":
            session.standalone.release()
        elif kind == "end" and message.get("from") != self.inbox:
            await hosted.drop_session(session)
