"""`GatewayHTTPServer`: Tornado's `HTTPServer` with a bound on open connections.

Every accepted connection costs a descriptor and some memory, so their number is capped.
A connection is *idle* while it waits for a request's headers (a fresh one, a kept-alive one
between requests, or a slowloris trickling half a header) and *busy* from the moment its
headers are in until its response ends (an SSE stream stays busy). At the cap, a new
connection takes the place of the longest-idle one; when none is idle it is closed at once,
before Tornado allocates anything for it.

Header and body deadlines are ours too: Tornado would arm a timer for every request it reads
(`gen.with_timeout`, a sizeable share of a small request's cost); one sweep a second closes the
connections that waited too long for headers or for the rest of a body instead.

A connection counts as open until its socket closes, whoever holds it by then: a GET stream's
response takes its connection over from Tornado (`RequestHandler.detach`), which ends
Tornado's request loop on it, so the count follows the stream (`_CountedStream`), not the loop.

The accept loop is ours (Tornado's `add_accept_handler` raises on `EMFILE`, so a process out
of descriptors would spin and log a traceback per attempt): out of descriptors, it stops
accepting for `ACCEPT_PAUSE` seconds and logs one warning.
"""

from __future__ import annotations

import collections
import errno
import functools
import logging
import socket
import time
from typing import Any

import tornado.httputil
import tornado.ioloop
import tornado.iostream
from tornado.httpserver import HTTPServer

logger = logging.getLogger(__name__)

# Out of descriptors (or kernel memory): stop accepting this long, so the loop does not spin.
ACCEPT_PAUSE = 0.1
# How often the header and body deadlines are enforced: a connection may outlive its deadline by this much.
SWEEP_SECONDS = 1.0
# Accepted per readiness event, as Tornado does (its listen backlog), so other work is not starved.
ACCEPT_BATCH = 128
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class GatewayHTTPServer(HTTPServer):
    """`HTTPServer(app, max_connections=N, ...)`; every other argument is Tornado's."""

    def initialize(self, *args: Any, max_connections: int, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        # Enforced by the sweep, not by a timer per request (see the module docstring).
        self.header_timeout = self.conn_params.header_timeout
        self.body_timeout = self.conn_params.body_timeout
        self.conn_params.header_timeout = None
        self.conn_params.body_timeout = None
        self._sweeper: tornado.ioloop.PeriodicCallback | None = None
        self._open: set[_CountedStream] = set()
        # Idle connections (waiting for a request's headers) in the order they became idle, with
        # since when: the first is the one to evict, and the first to time out.
        self._idle: collections.OrderedDict[_CountedStream, float] = collections.OrderedDict()
        # Connections whose request's headers are in and whose body is still coming, since when.
        self._reading: collections.OrderedDict[_CountedStream, float] = collections.OrderedDict()
        self._listening: dict[int, socket.socket] = {}
        self.refused = 0
        self.evicted = 0
        self._exhausted = False
        self._draining = False  # stopping: no new request on any connection

    @property
    def open_connections(self) -> int:
        return len(self._open)

    # -- accepting ------------------------------------------------------------------------

    def add_sockets(self, sockets: Any) -> None:
        loop = tornado.ioloop.IOLoop.current()
        if self._sweeper is None and (self.header_timeout or self.body_timeout):
            self._sweeper = tornado.ioloop.PeriodicCallback(self._sweep, SWEEP_SECONDS * 1000)
            self._sweeper.start()
        for sock in sockets:
            self._listening[sock.fileno()] = sock
            loop.add_handler(sock, functools.partial(self._accept, sock), tornado.ioloop.IOLoop.READ)

    def stop(self) -> None:
        """Stop listening, and take no new request on a kept-alive connection: the idle ones
        close now, the busy ones once their response is out. (A proxy's kept-alive connection
        must not bring a request in while the gateway's routes go away: the proxy opens a new
        one, which this host refuses, and so goes to another.) A connection accepted just
        before, that has not sent its first request yet, still gets it answered."""
        self._draining = True
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        loop = tornado.ioloop.IOLoop.current()
        for sock in self._listening.values():
            loop.remove_handler(sock)
            sock.close()
        self._listening.clear()
        super().stop()
        for stream in list(self._idle):
            if stream.served:
                stream.close()

    async def close_all_connections(self) -> None:
        await super().close_all_connections()
        for stream in list(self._open):  # handed over to a response (a GET stream) and still open
            stream.close()

    def _accept(self, sock: socket.socket, fd: Any, events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if sock.fileno() not in self._listening:
                return  # stopped
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                self._pause(sock, exc)
                return
            if self._exhausted:
                self._exhausted = False
                logger.info("accepting connections again")
            if not self._make_room():
                self.refused += 1
                connection.close()  # refused before Tornado allocates anything for it
                continue
            stream = _CountedStream(
                self._open, connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
            )
            self.handle_stream(stream, address)

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        loop = tornado.ioloop.IOLoop.current()
        loop.remove_handler(sock)
        if not self._exhausted:  # one line per episode, not per failed accept
            self._exhausted = True
            logger.warning("out of descriptors (%s): accepting again as connections close", exc.strerror)

        def resume() -> None:
            if sock.fileno() in self._listening:
                loop.add_handler(sock, functools.partial(self._accept, sock), tornado.ioloop.IOLoop.READ)

        loop.call_later(ACCEPT_PAUSE, resume)

    def _make_room(self) -> bool:
        """True when one more connection fits, evicting the longest-idle one if need be."""
        if len(self._open) < self.max_connections:
            return True
        if not self._idle:
            return False
        oldest, _ = self._idle.popitem(last=False)
        self.evicted += 1
        oldest.close()  # and so leaves `_open` (`_CountedStream.close`)
        return True

    # -- tracking -------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Close connections past their header or body deadline (oldest first, so it stops early)."""
        now = time.monotonic()
        for waiting, deadline in ((self._idle, self.header_timeout), (self._reading, self.body_timeout)):
            if not deadline:
                continue
            while waiting:
                stream, since = next(iter(waiting.items()))
                if now - since < deadline:
                    break
                del waiting[stream]
                stream.close()

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        assert isinstance(stream, _CountedStream)  # every connection comes from `_accept`
        self._open.add(stream)
        self._idle[stream] = time.monotonic()
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        # Called when the connection starts reading the next request: it waits for headers.
        stream = getattr(server_conn, "stream", None)
        if self._draining and stream is not None and stream.served:
            stream.close()  # its last response is out; no next request (see `stop`)
        elif stream in self._open:
            self._idle[stream] = time.monotonic()
            self._idle.move_to_end(stream)
        return _Busy(super().start_request(server_conn, request_conn), self._idle, self._reading, stream)

    def on_close(self, server_conn: object) -> None:
        # Tornado's request loop on this connection is over; the connection may live on, handed
        # over to a response: it leaves `_open` when it closes (`_CountedStream.close`), not here.
        stream = getattr(server_conn, "stream", None)
        self._idle.pop(stream, None)  # type: ignore[arg-type]
        self._reading.pop(stream, None)  # type: ignore[arg-type]
        super().on_close(server_conn)


class _CountedStream(tornado.iostream.IOStream):
    """A connection's stream, which leaves the server's open set when it closes."""

    served = False  # whether a request has come in on it

    def __init__(self, open_set: set[_CountedStream], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open_set = open_set

    def close(self, exc_info: Any = False) -> None:
        super().close(exc_info)
        self._open_set.discard(self)


class _Busy(tornado.httputil.HTTPMessageDelegate):
    """Marks its connection busy once a request's headers are in, and reading until its body is."""

    def __init__(
        self,
        inner: tornado.httputil.HTTPMessageDelegate,
        idle: collections.OrderedDict[Any, float],
        reading: collections.OrderedDict[Any, float],
        stream: Any,
    ) -> None:
        self._inner = inner
        self._idle = idle
        self._reading = reading
        self._stream = stream

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders) -> Any:
        self._stream.served = True
        self._idle.pop(self._stream, None)
        self._reading[self._stream] = time.monotonic()
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._reading.pop(self._stream, None)
        self._inner.finish()

    def on_connection_close(self) -> None:
        self._reading.pop(self._stream, None)
        self._inner.on_connection_close()
