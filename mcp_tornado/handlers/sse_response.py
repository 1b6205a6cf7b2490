"""`SseResponse`: one Server-Sent Events response on a Tornado handler, with backpressure.

An explicit lifecycle, as aiohttp's `StreamResponse` has: `begin()` sends the headers, then
`write_frame()` any number of times, then `end()`; writing before `begin()` is a bug and
raises. The client going away (`lost()`) or being dropped ends it early; `done` resolves
either way.

Backpressure: one flush of at most `HIGH_WATER` bytes is handed to Tornado at a time; frames
past that wait in a queue of references (the same bytes the session's event
buffer holds, so waiting costs no copy). A reader is dropped (its connection closed; its
events stay in the session's buffer for a `Last-Event-ID` resume) when live frames waiting
for it pass `max_buffer_bytes`, or when a frame has waited `max_lag` seconds. Replayed frames
do not count against the bytes (they are the event buffer's own, already bounded), only
against the time.
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
import tornado.web

logger = logging.getLogger(__name__)

KEEPALIVE_FRAME = b": keepalive\n\n"
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
    ) -> None:
        """`on_drop()` runs after a reader is dropped: Tornado does not call the handler's
        `on_connection_close` for a connection the server closed itself."""
        self._handler = handler
        self._on_drop = on_drop
        self._keepalive_interval = keepalive_interval
        self._max_buffer_bytes = max_buffer_bytes
        self._max_lag = max_lag
        self._label = label
        self.state = State.NEW
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._keepalive: tuple[Keepalives, int] | None = None  # its wheel, and its slot there
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
        handler.set_status(200)
        handler.set_header("Content-Type", "text/event-stream")
        handler.set_header("Cache-Control", "no-cache")
        handler.set_header("X-Accel-Buffering", "no")  # tell nginx-style proxies not to hold events back
        self.state = State.OPEN
        self._flush(None)  # the headers go out first; frames follow once they have
        wheel = keepalives(self._keepalive_interval)
        self._keepalive = (wheel, wheel.add(self))

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
        self._pump()

    def lost(self) -> None:
        """The connection closed under us: nothing more goes out."""
        self.state = State.CLOSED
        self._stop_keepalive()
        self._queue = None
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
        handler = self._handler
        size, oldest, queue = 0, None, self._queue
        while queue and size < HIGH_WATER:
            queued_at, chunk, replay = queue.popleft()
            if not replay:
                self._queued_live -= len(chunk)
            oldest = queued_at if oldest is None else oldest
            handler.write(chunk)
            size += len(chunk)
        if queue is not None and not queue:
            self._queue = None
        if size:
            self._flush(oldest)
        elif self.state is State.ENDING:
            self.state = State.CLOSED
            handler.finish()
            self._settle()

    def _flush(self, oldest: float | None) -> None:
        self._flushing = (oldest, time.monotonic())
        self._handler.flush().add_done_callback(self._flushed)

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
        connection = self._handler.request.connection
        if connection is not None:
            connection.close()  # type: ignore[attr-defined]
        self.lost()
        self._on_drop()

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            wheel, slot = self._keepalive
            wheel.remove(self, slot)
            self._keepalive = None

    def _settle(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
