"""`SseResponse`: one Server-Sent Events response on a Tornado handler, with backpressure.

An explicit lifecycle, as aiohttp's `StreamResponse` has: `begin()` sends the headers, then
`write_frame()` any number of times, then `end()`; writing before `begin()` is a bug and
raises. The client going away (`lost()`) or being dropped ends it early; `done` resolves
either way.

Backpressure: one flush of at most `HIGH_WATER` bytes is handed to Tornado at a time; frames
past that wait in a queue of references (the same bytes the session's event
buffer holds, so waiting costs no copy). A reader is dropped (its connection closed; its
events stay in the session's buffer for a `Last-Event-ID` resume) when live frames waiting
for it pass `max_buffer_bytes`, or when a frame has waited `max_lag` seconds, or when the
frames queued before `end()` (and, handed over, the last chunk) have not gone out `max_lag`
seconds after it. Replayed frames
do not count against the bytes (they are the event buffer's own, already bounded), only
against the time.

Handed over (`hand_over=True`, HTTP/1.1 only): once the headers are out, the response takes
the connection from Tornado (`RequestHandler.detach`, as a WebSocket does) and writes its
chunks to the `IOStream` itself. The handler, the request with its headers and Tornado's
connection objects are then freed: a long-lived GET stream holds about 10 KB less. The
stream closes after the last chunk; what the handler did at its end (metrics, the access
log) is `done`'s callbacks to do.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

import tornado.ioloop
import tornado.iostream
import tornado.web

logger = logging.getLogger(__name__)

KEEPALIVE_FRAME = b": keepalive\n\n"
LAST_CHUNK = b"0\r\n\r\n"  # the end of a chunked HTTP/1.1 body
# Bytes handed to Tornado (and so copied into its write buffer) beyond what the socket took.
HIGH_WATER = 64 * 1024


class State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    ENDING = "ending"  # end() was called; queued frames are still going out
    CLOSED = "closed"


class Keepalives:
    """The keepalive of every open SSE response of one loop with one interval, from one timer.

    A `PeriodicCallback` per stream was a loop timer each, re-armed every interval, about 1 KB
    a stream with its handle. Here the streams sit in `SLOTS` buckets, each joining the one
    just pinged; a tick every interval / `SLOTS` pings the next bucket. So each stream still
    hears from us about once an interval (its first keepalive within one), and 10,000 streams
    cost 10,000 / `SLOTS` pings a tick rather than 10,000 timers.
    """

    SLOTS = 50

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._slots: list[set[SseResponse]] = [set() for _ in range(self.SLOTS)]
        self._cursor = 0  # the slot the next tick pings
        self._count = 0
        self._timer: tornado.ioloop.PeriodicCallback | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, response: SseResponse) -> int:
        """Ping `response` from now on; returns its slot (for `remove`)."""
        slot = (self._cursor - 1) % self.SLOTS  # reached again a whole round from now
        self._slots[slot].add(response)
        self._count += 1
        if self._timer is None:
            self._timer = tornado.ioloop.PeriodicCallback(self._tick, self.interval * 1000 / self.SLOTS)
            self._timer.start()
        return slot

    def remove(self, response: SseResponse, slot: int) -> None:
        bucket = self._slots[slot]
        if response in bucket:
            bucket.discard(response)
            self._count -= 1
        if not self._count and self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _tick(self) -> None:
        bucket = self._slots[self._cursor]
        self._cursor = (self._cursor + 1) % self.SLOTS
        for response in list(bucket):  # a ping may drop its reader, which leaves the bucket
            response._ping()


# Per loop (tests run several), per interval: the wheels of the streams open on that loop.
_KEEPALIVES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Keepalives]] = weakref.WeakKeyDictionary()


def keepalives(interval: float) -> Keepalives:
    """The running loop's `Keepalives` for `interval` seconds."""
    wheels = _KEEPALIVES.setdefault(asyncio.get_running_loop(), {})
    wheel = wheels.get(interval)
    if wheel is None:
        wheel = wheels[interval] = Keepalives(interval)
    return wheel


class SseResponse:
    def __init__(
        self,
        handler: tornado.web.RequestHandler,
        *,
        keepalive_interval: float,
        max_buffer_bytes: int,
        max_lag: float,
        on_drop: Callable[[], None],
        label: str = "",
        hand_over: bool = False,
    ) -> None:
        """`on_drop()` runs after a reader is dropped: Tornado does not call the handler's
        `on_connection_close` for a connection the server closed itself. `hand_over`: take
        the connection from the handler once the headers are out (see the module docstring);
        the handler is done with it then, so `on_drop` had better not be the handler's."""
        self._handler: tornado.web.RequestHandler | None = handler
        self._stream: tornado.iostream.IOStream | None = None  # once handed over
        self._hand_over = hand_over
        self._on_drop = on_drop
        self._keepalive_interval = keepalive_interval
        self._max_buffer_bytes = max_buffer_bytes
        self._max_lag = max_lag
        self._label = label
        self.state = State.NEW
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._keepalive: tuple[Keepalives, int] | None = None  # its wheel, and its slot there
        self._overdue: asyncio.TimerHandle | None = None  # from end(), until the end has gone out
        # Frames waiting for the socket; None while there are none (most of an idle stream's life:
        # an empty deque holds 600 bytes, and there is one per open stream).
        self._queue: collections.deque[tuple[float, bytes, bool]] | None = None
        self._queued_live = 0  # bytes of queued frames that are not replays
        # The flush in progress, if any: when its oldest frame was queued (None for the headers).
        self._flushing: tuple[float | None, float] | None = None

    @property
    def open(self) -> bool:
        return self.state is State.OPEN

    def begin(self) -> None:
        """Send the status and headers; start the keepalive."""
        if self.state is not State.NEW:
            raise RuntimeError(f"begin() on an SSE response that is {self.state.value}")
        handler = self._handler
        assert handler is not None
        handler.set_status(200)
        handler.set_header("Content-Type", "text/event-stream")
        handler.set_header("Cache-Control", "no-cache")
        handler.set_header("X-Accel-Buffering", "no")  # tell nginx-style proxies not to hold events back
        self.state = State.OPEN
        if self._hand_over:
            self._take_connection(handler)
        else:
            self._flush(None)  # the headers go out first; frames follow once they have
        if self.state is State.OPEN:
            wheel = keepalives(self._keepalive_interval)
            self._keepalive = (wheel, wheel.add(self))

    def _take_connection(self, handler: tornado.web.RequestHandler) -> None:
        """Write the headers (a chunked body follows: Tornado chose chunking for a 200 without a
        length to an HTTP/1.1 request), then hold the connection instead of the handler."""
        handler.set_header("Connection", "close")  # it ends with the stream: not one for another request
        handler.flush()  # into the stream's buffer at once; the next write's future covers them
        stream = self._stream = handler.detach()
        self._handler = None
        if stream.closed():  # the client left before the headers went
            self.lost()
            return
        stream.set_close_callback(self.lost)

    def write_frame(self, chunk: bytes, *, replay: bool = False) -> bool:
        """Queue one frame; False when the response is over (the client left or was dropped)."""
        if self.state is State.NEW:
            raise RuntimeError("write_frame() before begin()")
        if self.state is not State.OPEN:
            return False
        if self._behind():
            logger.info(
                "%s: dropping an SSE reader that fell behind (%d bytes waiting)", self._label, self._queued_live
            )
            self._drop()
            return False
        if self._queue is None:
            self._queue = collections.deque()
        self._queue.append((time.monotonic(), chunk, replay))
        if not replay:
            self._queued_live += len(chunk)
        self._pump()
        return True

    def end(self) -> None:
        """No more frames: finish the response once the queued ones are out."""
        if self.state is State.NEW:
            self.state = State.CLOSED
            self._settle()
            return
        if self.state is not State.OPEN:
            return
        self.state = State.ENDING
        self._stop_keepalive()
        # A client that stops reading cannot keep the response open by not taking its end.
        self._overdue = asyncio.get_running_loop().call_later(self._max_lag, self._end_overdue)
        self._pump()

    def lost(self) -> None:
        """The connection closed under us: nothing more goes out. (A connection this response
        holds is closed here, if it is not yet: nobody else will.)"""
        self.state = State.CLOSED
        self._stop_keepalive()
        self._queue = None
        if self._stream is not None and not self._stream.closed():
            self._stream.close()
        self._cancel_overdue()
        self._settle()

    # -- internals ------------------------------------------------------------------------

    def _behind(self) -> bool:
        if self._queued_live > self._max_buffer_bytes:
            return True
        oldest = self._flushing[0] if self._flushing is not None else None
        if oldest is None and self._queue:
            oldest = self._queue[0][0]
        return oldest is not None and time.monotonic() - oldest > self._max_lag

    def _pump(self) -> None:
        """Hand queued frames to Tornado while the socket keeps up; finish an ending response.

        One flush at a time: Tornado resolves only the latest of several pending flushes, so a
        second one would leave the first for ever unresolved.
        """
        if self.state not in (State.OPEN, State.ENDING) or self._flushing is not None:
            return
        size, oldest, queue, chunks = 0, None, self._queue, []
        if self._stream is not None:
            chunks.append(b"")  # the chunk's size line goes here (one copy of the frames, not two)
        while queue and size < HIGH_WATER:
            queued_at, chunk, replay = queue.popleft()
            if not replay:
                self._queued_live -= len(chunk)
            oldest = queued_at if oldest is None else oldest
            chunks.append(chunk)
            size += len(chunk)
        if queue is not None and not queue:
            self._queue = None
        if size:
            self._flush(oldest, chunks, size)
        elif self.state is State.ENDING:
            self.state = State.CLOSED
            if self._stream is not None:
                self._end_stream(self._stream)
            elif self._handler is not None:
                self._handler.finish()  # the rest is Tornado's: the handler's response is over
                self._cancel_overdue()
            self._settle()

    def _flush(self, oldest: float | None, chunks: list[bytes] | None = None, size: int = 0) -> None:
        self._flushing = (oldest, time.monotonic())
        if self._stream is None:
            assert self._handler is not None
            for chunk in chunks or ():
                self._handler.write(chunk)
            self._handler.flush().add_done_callback(self._flushed)
            return
        assert chunks is not None
        chunks[0] = b"%x\r\n" % size
        chunks.append(b"\r\n")
        try:
            written = self._stream.write(b"".join(chunks))  # one HTTP/1.1 chunk
        except tornado.iostream.StreamClosedError:
            self.lost()
            return
        written.add_done_callback(self._flushed)

    def _end_stream(self, stream: tornado.iostream.IOStream) -> None:
        """The last chunk, then the connection closes (Tornado no longer reads requests on it)."""
        try:
            stream.write(LAST_CHUNK).add_done_callback(lambda _: stream.close())
        except tornado.iostream.StreamClosedError:
            pass

    def _flushed(self, future: Any) -> None:
        if future.exception() is not None:
            return  # the client left; lost() follows
        self._flushing = None
        self._pump()

    def _ping(self) -> None:
        if not self._queue and self._flushing is None:
            self.write_frame(KEEPALIVE_FRAME)
        elif self._behind():
            self.write_frame(KEEPALIVE_FRAME)  # only to drop the reader: the frame is not sent

    def _drop(self) -> None:
        """Close the connection of a reader that cannot keep up."""
        if self._stream is not None:
            self._stream.close()
        elif self._handler is not None and self._handler.request.connection is not None:
            self._handler.request.connection.close()  # type: ignore[attr-defined]
        self.lost()
        self._on_drop()

    def _end_overdue(self) -> None:
        """`max_lag` seconds after `end()`, the client has not taken what was left: close it."""
        self._overdue = None
        if self.state is State.ENDING or (self._stream is not None and not self._stream.closed()):
            logger.info("%s: closing an SSE reader that did not take the end of its stream", self._label)
            self._drop()

    def _cancel_overdue(self) -> None:
        if self._overdue is not None:
            self._overdue.cancel()
            self._overdue = None

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            wheel, slot = self._keepalive
            wheel.remove(self, slot)
            self._keepalive = None

    def _settle(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
