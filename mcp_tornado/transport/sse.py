"""Server-Sent Events: framing, per-session event ids, and replay after `Last-Event-ID`.

An `EventStream` is one SSE stream of a session: the long-lived GET stream, or one POST's
response once it had to switch from JSON to SSE. Every event gets a session-unique id and is
kept in the session's bounded `EventBuffer`, so a client that lost the stream can come back
with `Last-Event-ID` and receive what it missed on *that* stream, never another's.

The stream writes through a `Sink` (the HTTP response); this module never touches HTTP.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Protocol


def frame(event_id: int | str, data: bytes, retry_ms: int | None = None) -> bytes:
    """One SSE event; `event_id` is a session buffer's number or a Redis stream entry's id (the
    shared store's); `retry_ms` tells the client how long to wait before reconnecting."""
    ident = b"%d" % event_id if isinstance(event_id, int) else event_id.encode()
    if retry_ms is None:
        return b"id: %s\ndata: %s\n\n" % (ident, data)
    return b"id: %s\nretry: %d\ndata: %s\n\n" % (ident, retry_ms, data)


class Sink(Protocol):
    """Where an SSE stream's frames go: an open HTTP response."""

    @property
    def open(self) -> bool:
        """False once the client is gone, was dropped, or the response ended."""
        ...

    def write_frame(self, chunk: bytes, *, replay: bool = False) -> bool:
        """Send one frame (`replay`: one the buffer already held); False when the response is
        over (the stream then lets go of it)."""
        ...

    def end(self) -> None:
        """Finish the response once what was written has gone out."""
        ...


class EventBuffer:
    """The last `size` events of a session, at most `max_bytes` of them, in order, for replay."""

    def __init__(self, size: int, max_bytes: int | None = None) -> None:
        # A list, not a deque: most buffers hold an event or two for ever (an idle session's GET
        # stream), and an empty deque alone is 600 bytes. Trimming moves at most `size` pointers.
        self._events: list[tuple[int, str, bytes]] = []
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._events)

    @property
    def size_in_bytes(self) -> int:
        return self._bytes

    def add(self, stream_key: str, data: bytes, retry_ms: int | None = None) -> tuple[int, bytes]:
        """Frame `data` with the next id; keep it, dropping the oldest events past the bounds."""
        event_id = next(self._ids)
        chunk = frame(event_id, data, retry_ms)
        self._events.append((event_id, stream_key, chunk))
        self._bytes += len(chunk)
        events, drop = self._events, 0
        while len(events) - drop > self._size or (self._max_bytes is not None and self._bytes > self._max_bytes):
            self._bytes -= len(events[drop][2])
            drop += 1
        if drop:
            del events[:drop]
        return event_id, chunk

    def stream_of(self, event_id: int) -> str | None:
        """The stream an event still in the buffer belongs to; None once it is gone."""
        for seen_id, key, _ in self._events:
            if seen_id == event_id:
                return key
        return None

    def after(self, event_id: int, stream_key: str) -> Iterator[bytes]:
        """The frames of `stream_key` newer than `event_id`, oldest first."""
        for seen_id, key, chunk in list(self._events):
            if seen_id > event_id and key == stream_key:
                yield chunk


class EventStream:
    """One SSE stream of a session; events are buffered whether or not a client is attached."""

    def __init__(self, key: str, buffer: EventBuffer) -> None:
        self.key = key
        self._buffer = buffer
        self._sink: Sink | None = None
        self.finished = False

    @property
    def attached(self) -> bool:
        """Whether a live response is reading this stream."""
        return self._sink is not None and self._sink.open

    def attach(self, sink: Sink, *, replay_after: int | None = None) -> None:
        """Send `sink` what it missed after `replay_after`, then everything new.

        A resuming client replaces whatever response is still attached (typically its own
        half-open one): that response ends.
        """
        previous, self._sink = self._sink, sink
        if previous is not None and previous is not sink:
            previous.end()
        if replay_after is not None:
            for chunk in self._buffer.after(replay_after, self.key):
                if not self._write(chunk, replay=True):
                    return
        if self.finished:
            self.end()

    def prime(self, retry_ms: int | None = None) -> None:
        """An event with an id and no data: a client that loses the stream before anything else
        arrives still has an id to resume from (2025-11-25, "SHOULD"); `retry_ms` is how soon
        it should come back."""
        _, chunk = self._buffer.add(self.key, b"", retry_ms)
        self._write(chunk)

    def send(self, data: bytes) -> None:
        _, chunk = self._buffer.add(self.key, data)
        self._write(chunk)

    def release(self) -> None:
        """End the attached response but not the stream (SSE polling): the client reconnects
        with `Last-Event-ID` and reads on from where it was."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.end()

    def end(self) -> None:
        """No more events: finish the attached response (a later resume replays, then ends)."""
        self.finished = True
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.end()

    def _write(self, chunk: bytes, *, replay: bool = False) -> bool:
        sink = self._sink
        if sink is None:
            return False
        if sink.write_frame(chunk, replay=replay):
            return True
        self._sink = None
        return False
