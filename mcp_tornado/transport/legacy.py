"""The legacy HTTP+SSE transport (protocol 2024-11-05): one long-lived stream per session.

A client opens the stream with a GET. Its first event (`event: endpoint`) names the URI to
POST messages to; every server message after that is an `event: message` on the same stream:
the answers to the client's requests, a call's progress and log messages, the server's own
requests (sampling, elicitation) and its notifications (list_changed). A POST is answered
202 at once, and its requests are served afterwards, in tasks the connection owns.

A `Session` already routes everything that leaves it: to the reply of the request it belongs
to (`Reply`, which opens a stream through its `open_sink` once it must), or to its standalone
stream. `LegacyConnection` hands both a `Sink` that re-frames their events as
`event: message` onto the one legacy stream. The session's events keep their ids in its
buffer, unused: a legacy stream cannot be resumed. HTTP is not touched here: the stream is a
`Sink` the HTTP side opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from mcp_types import JSONRPCRequest

from mcp_tornado.errors import BadRequest
from mcp_tornado.transport.session import Session
from mcp_tornado.transport.sse import Sink

logger = logging.getLogger(__name__)

# What `sse.frame` puts before an event's data; our data is one line of JSON, so one `data:` line.
_DATA_PREFIX = b"\ndata: "


def endpoint_frame(uri: str) -> bytes:
    """The stream's first event: where the client POSTs its messages."""
    return b"event: endpoint\ndata: " + uri.encode("ascii") + b"\n\n"


def message_frame(data: bytes) -> bytes:
    """One JSON-RPC message (or batch) as a legacy client reads it."""
    return b"event: message\ndata: " + data + b"\n\n"


def event_data(chunk: bytes) -> bytes:
    """The data of one frame made by `sse.frame` (`id: N\\ndata: ...\\n\\n`); empty for a priming event."""
    _, _, rest = chunk.partition(_DATA_PREFIX)
    return rest[:-2]


class _Reframed:
    """A `Sink` over the legacy stream for one of the session's own streams: its events go out
    as `event: message`, without ids, and priming events (no data) not at all.

    `ends_stream`: whether the session stream ending ends the legacy stream. The standalone
    stream ends with the session, and the legacy stream with it; a reply's stream only stops.
    """

    def __init__(self, stream: Sink, *, ends_stream: bool) -> None:
        self._stream = stream
        self._ends_stream = ends_stream

    @property
    def open(self) -> bool:
        return self._stream.open

    def write_frame(self, chunk: bytes, *, replay: bool = False) -> bool:
        data = event_data(chunk)
        if not data:
            return self._stream.open
        return self._stream.write_frame(message_frame(data), replay=replay)

    def end(self) -> None:
        if self._ends_stream:
            self._stream.end()


class LegacyConnection:
    """One legacy client: its session, the stream every message to it goes out on, and the
    tasks serving what it POSTed.

    The owner (the HTTP side) calls `close()` once the stream is over, and ends the session:
    a legacy session lives exactly as long as its stream.
    """

    def __init__(self, session: Session, stream: Sink, endpoint: str) -> None:
        """Sends the `endpoint` event, then attaches the session's standalone stream."""
        self.session = session
        self._stream = stream
        self._tasks: set[asyncio.Task[None]] = set()
        self._opening = False  # an initialize was taken in: a second one is refused
        session.streams_resumable = False  # whatever revision it speaks: nothing can come back for a lost stream
        stream.write_frame(endpoint_frame(endpoint))
        session.standalone.attach(_Reframed(stream, ends_stream=True))

    def check(self, messages: list[Any], *, batch: bool) -> None:
        """Raises `BadRequest` for an initialize in a batch, or one after the first."""
        if not any(isinstance(m, JSONRPCRequest) and m.method == "initialize" for m in messages):
            return
        if batch:
            raise BadRequest("initialize must be sent alone")
        if self._opening or self.session.connection.initialize_accepted:
            raise BadRequest("session already initialized")

    def serve_later(self, requests: list[JSONRPCRequest], admission: contextlib.AbstractContextManager[Any]) -> None:
        """Serve `requests` in a task of this connection, each answered on the stream as soon as
        it is done; `admission` (their place under the in-flight caps) is left when all are."""
        self._opening = self._opening or any(r.method == "initialize" for r in requests)
        task = asyncio.ensure_future(self._serve(requests, admission))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, requests: list[JSONRPCRequest], admission: contextlib.AbstractContextManager[Any]) -> None:
        with admission:
            try:
                # A batch's answers go out one by one, as each is ready: every client reads single messages.
                await asyncio.gather(*(self._serve_one(request) for request in requests))
            except Exception:  # a bug below; the client sees no answer, never a dead connection
                logger.exception("%s: serving a legacy SSE request failed", self.session.server_name)

    async def _serve_one(self, request: JSONRPCRequest) -> None:
        answer = await self.session.serve([request], self._open_reply, batch=False)
        if answer is not None and answer.body:
            self._stream.write_frame(message_frame(answer.body))
        if request.method == "initialize" and not self.session.connection.initialize_accepted:
            self._stream.end()  # a refused handshake leaves no session: the stream ends, and the session with it

    def _open_reply(self) -> Sink:
        return _Reframed(self._stream, ends_stream=False)

    async def close(self) -> None:
        """Cancel what is still being served and wait for it."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class LegacyConnections:
    """The open legacy connections, by session id: where a POST finds the stream to answer on."""

    def __init__(self) -> None:
        self._connections: dict[str, LegacyConnection] = {}

    def __len__(self) -> int:
        return len(self._connections)

    def get(self, session_id: str) -> LegacyConnection | None:
        return self._connections.get(session_id)

    @contextlib.contextmanager
    def holding(self, connection: LegacyConnection) -> Iterator[None]:
        """Keep `connection` findable while the block runs."""
        self._connections[connection.session.id] = connection
        try:
            yield
        finally:
            if self._connections.get(connection.session.id) is connection:
                del self._connections[connection.session.id]
