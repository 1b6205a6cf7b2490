"""`SseResponse` on a real Tornado handler: lifecycle, order, backpressure, lag and keepalive
(mcp_tornado/handlers/sse_response.py).

Each test starts a tiny application whose one handler opens an `SseResponse` and hands it to
the test, which then drives it (`begin`, `write_frame`, `end`) while a raw socket client reads,
or does not. A client that does not read, with small socket buffers on both ends, is how a slow
reader looks to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.web

from mcp_tornado.handlers.sse_response import HIGH_WATER, KEEPALIVE_FRAME, SseResponse, State
from tests.conftest import eventually

SMALL_BUFFER = 4096  # bytes of socket buffer on each end of a slow reader's connection
TEST_TIMEOUT = 3


class Probe:
    """What the test sets for the next response, and what it learns from the handler."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self.small_send_buffer = False
        self.hand_over = False
        self.responses: asyncio.Queue[SseResponse] = asyncio.Queue()
        self.drops = 0


class SseHandler(tornado.web.RequestHandler):
    def initialize(self, probe: Probe) -> None:
        self.probe = probe
        self.sse: SseResponse | None = None

    async def get(self) -> None:
        if self.probe.small_send_buffer:
            stream = self.request.connection.stream  # type: ignore[union-attr]
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        options = {"keepalive_interval": 60.0, "max_buffer_bytes": 1 << 30, "max_lag": 60.0, **self.probe.options}
        self.sse = SseResponse(self, on_drop=self.dropped, label="test", hand_over=self.probe.hand_over, **options)
        self.probe.responses.put_nowait(self.sse)
        await self.sse.done

    def dropped(self) -> None:
        self.probe.drops += 1

    def on_connection_close(self) -> None:
        if self.sse is not None:
            self.sse.lost()


@pytest.fixture(params=[False, True], ids=["on-the-handler", "handed-over"])
def probe(request: pytest.FixtureRequest) -> Probe:
    """Every test runs twice: writing through the handler, and on a connection the response
    took over from it (`hand_over=True`, as the MCP route's GET streams do)."""
    made = Probe()
    made.hand_over = request.param
    return made


@pytest.fixture
def app(probe: Probe) -> tornado.web.Application:
    return tornado.web.Application([("/sse", SseHandler, {"probe": probe})])


class RawClient:
    """A GET over a plain socket that reads only when told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""
        self.eof = False

    async def read_some(self, timeout: float = TEST_TIMEOUT) -> bool:
        """Read what has arrived (waiting for something); False at EOF."""
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 16), timeout)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.received += data
        return True

    async def read_to_eof(self) -> bytes:
        while await self.read_some():
            pass
        return self.received

    async def read_until(self, wanted: bytes) -> None:
        while wanted not in self.payload():
            assert await self.read_some(), f"EOF before {wanted!r}"

    @property
    def head(self) -> bytes:
        return self.received.partition(b"\r\n\r\n")[0]

    def payload(self) -> bytes:
        return dechunk(self.received.partition(b"\r\n\r\n")[2])[0]

    def complete(self) -> bool:
        """Whether the chunked body ended with its last (empty) chunk."""
        return dechunk(self.received.partition(b"\r\n\r\n")[2])[1]


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """The data of a chunked body read so far, and whether its last chunk arrived."""
    out = b""
    while b"\r\n" in body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out, True
        if len(rest) < size + 2:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out, False


@contextlib.asynccontextmanager
async def connect(port: int, *, small_receive_buffer: bool = False) -> AsyncIterator[RawClient]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if small_receive_buffer:  # before connecting, so the window it advertises is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        yield RawClient(sock)
    finally:
        sock.close()


async def opened(probe: Probe, client: RawClient) -> SseResponse:
    """The response of the request just sent, begun, once its headers reached the client."""
    sse = await asyncio.wait_for(probe.responses.get(), TEST_TIMEOUT)
    sse.begin()
    while b"\r\n\r\n" not in client.received:
        assert await client.read_some(), "EOF before the headers"
    return sse


async def settled(sse: SseResponse) -> None:
    await asyncio.wait_for(asyncio.shield(sse.done), TEST_TIMEOUT)


def event(n: int, size: int = 0) -> bytes:
    """A frame of `n`, padded to `size` bytes when asked."""
    head = b"id: %d\ndata: " % n
    pad = max(0, size - len(head) - 2)
    return head + b"x" * pad + b"\n\n"


async def stall(sse: SseResponse) -> None:
    """Fill the socket buffers of a reader that does not read, so what follows waits."""
    sse.write_frame(b": " + b"s" * (4 * HIGH_WATER) + b"\n\n")
    await asyncio.sleep(0)  # one turn of the loop: the socket takes what it can


# -- lifecycle --------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_new_response_refuses_frames_until_begun(http_server, http_port, probe):
    async with connect(http_port) as client:
        sse = await asyncio.wait_for(probe.responses.get(), TEST_TIMEOUT)
        assert sse.state is State.NEW
        assert not sse.open
        with pytest.raises(RuntimeError, match=r"^write_frame\(\) before begin\(\)$"):
            sse.write_frame(event(1))
        sse.begin()
        assert sse.state is State.OPEN
        assert sse.open
        assert sse.write_frame(event(1))
        sse.end()
        await client.read_to_eof()
        assert client.payload() == event(1)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_begin_twice_raises(http_server, http_port, probe):
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        with pytest.raises(RuntimeError, match=r"^begin\(\) on an SSE response that is open$"):
            sse.begin()
        sse.end()
        await client.read_to_eof()
        with pytest.raises(RuntimeError, match=r"^begin\(\) on an SSE response that is closed$"):
            sse.begin()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_begin_sends_the_event_stream_headers(http_server, http_port, probe):
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        head = client.head.decode().lower().split("\r\n")
        assert head[0] == "http/1.1 200 ok"
        assert "content-type: text/event-stream" in head
        assert "cache-control: no-cache" in head
        assert "x-accel-buffering: no" in head
        assert "transfer-encoding: chunked" in head
        sse.end()
        await client.read_to_eof()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_frames_arrive_in_order_and_exactly_then_the_body_ends(http_server, http_port, probe):
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        frames = [event(i, size) for i, size in enumerate([0, 10, 3000, 0, 70_000, 5, 200_000, 1], start=1)]
        for i, chunk in enumerate(frames):
            assert sse.write_frame(chunk, replay=i % 2 == 0)
        sse.end()
        assert not sse.open
        assert not sse.write_frame(event(99))  # nothing is taken once it is ending
        await client.read_to_eof()
        assert client.payload() == b"".join(frames)
        assert client.complete()
        await settled(sse)
        assert sse.state is State.CLOSED
        assert not sse.write_frame(event(100))
        assert probe.drops == 0


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_end_finishes_only_once_the_queued_frames_are_out(http_server, http_port, probe):
    probe.small_send_buffer = True
    async with connect(http_port, small_receive_buffer=True) as client:
        sse = await opened(probe, client)
        frames = [event(1, 4 * HIGH_WATER), event(2), event(3)]  # the first one alone fills every buffer
        for chunk in frames:
            assert sse.write_frame(chunk)
        await asyncio.sleep(0)
        sse.end()
        assert sse.state is State.ENDING
        assert not sse.open
        assert not sse.done.done()
        assert not sse.write_frame(event(99))
        await client.read_to_eof()  # only as the client reads do the frames go out, and the response end
        assert client.payload() == b"".join(frames)
        assert client.complete()
        await settled(sse)
        assert sse.state is State.CLOSED


# Tornado's HTTP1Connection keeps one write future: a flush() made while an earlier one still
# waits for the socket takes its place, and the earlier future never resolves. A response that
# counted one completion per flush would keep those bytes "unsent" for good: it would never leave
# ENDING, and a reader that has caught up would be dropped once the lost flush is `max_lag` old.
# It takes a reader slower than the writer for a moment (any real network); small socket
# buffers make one here.


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_end_finishes_after_frames_that_each_waited_for_the_socket(http_server, http_port, probe):
    probe.small_send_buffer = True
    async with connect(http_port, small_receive_buffer=True) as client:
        sse = await opened(probe, client)
        frames = [event(i, 30_000) for i in range(1, 5)]  # written while the socket is still full
        for chunk in frames:
            assert sse.write_frame(chunk)
        sse.end()
        assert sse.state is State.ENDING
        await client.read_to_eof()
        assert client.payload() == b"".join(frames)
        assert client.complete()
        await settled(sse)
        assert sse.state is State.CLOSED


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_reader_that_caught_up_is_not_dropped_for_lag(http_server, http_port, probe):
    probe.options = {"max_lag": 0.3, "keepalive_interval": 0.05}
    probe.small_send_buffer = True
    async with connect(http_port, small_receive_buffer=True) as client:
        sse = await opened(probe, client)
        frames = [event(i, 30_000) for i in range(1, 5)]
        for chunk in frames:
            assert sse.write_frame(chunk)
        await client.read_until(frames[-1])  # caught up
        caught_up = time.monotonic()
        while time.monotonic() - caught_up < 0.6:  # twice max_lag, on keepalives alone
            await client.read_until(client.payload() + KEEPALIVE_FRAME)
        assert probe.drops == 0
        sse.end()
        await client.read_to_eof()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_end_twice_is_harmless(http_server, http_port, probe):
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        sse.write_frame(event(1))
        sse.end()
        sse.end()
        await client.read_to_eof()
        assert client.payload() == event(1)
        assert client.complete()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_end_before_begin_closes_without_sending_a_stream(http_server, http_port, probe):
    async with connect(http_port) as client:
        sse = await asyncio.wait_for(probe.responses.get(), TEST_TIMEOUT)
        sse.end()
        assert sse.state is State.CLOSED
        assert sse.done.done()
        assert not sse.write_frame(event(1))  # no longer NEW: refused, not raised
        await client.read_to_eof()
        assert b"text/event-stream" not in client.head


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_client_that_leaves_ends_the_response(http_server, http_port, probe):
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        assert sse.write_frame(event(1))
        await client.read_until(event(1))
        client.sock.close()
        await settled(sse)
    assert sse.state is State.CLOSED
    assert not sse.open
    assert not sse.write_frame(event(2))
    assert probe.drops == 0  # it left; it was not dropped


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_lost_stops_everything_at_once(http_server, http_port, probe):
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        sse.lost()
        assert sse.state is State.CLOSED
        assert sse.done.done()
        assert not sse.write_frame(event(1))
        sse.end()  # after lost: nothing to do
        assert sse.state is State.CLOSED
        await client.read_to_eof()
        assert client.payload() == b""
        assert probe.drops == 0


# -- backpressure -----------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_live_bytes_waiting_up_to_max_buffer_bytes_are_kept(http_server, http_port, probe):
    """Frames written in one turn of the loop wait beyond the first HIGH_WATER bytes: exactly
    `max_buffer_bytes` of them waiting is fine, the next frame is still taken."""
    probe.options = {"max_buffer_bytes": 10_000}
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        frames = [event(1, HIGH_WATER), event(2, 10_000), event(3)]
        assert all(sse.write_frame(chunk) for chunk in frames)  # waiting: 10,000 bytes, then 10,000 + len(3)
        sse.end()
        await client.read_to_eof()
        assert client.payload() == b"".join(frames)
        assert probe.drops == 0


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_one_byte_past_max_buffer_bytes_drops_the_reader(http_server, http_port, probe):
    probe.options = {"max_buffer_bytes": 10_000}
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        assert sse.write_frame(event(1, HIGH_WATER))
        assert sse.write_frame(event(2, 10_001))
        assert not sse.write_frame(event(3))  # 10,001 bytes were waiting: dropped
        assert probe.drops == 1
        assert sse.state is State.CLOSED
        assert sse.done.done()
        assert not sse.write_frame(event(4))
        assert probe.drops == 1  # dropped once
        await client.read_to_eof()  # the server closed the connection
        assert not client.complete()
        assert event(3) not in client.payload()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_reader_that_does_not_read_is_dropped(http_server, http_port, probe):
    probe.options = {"max_buffer_bytes": 32_768}
    probe.small_send_buffer = True
    async with connect(http_port, small_receive_buffer=True) as client:
        sse = await opened(probe, client)
        written = 0
        for n in range(1, 1000):
            if not sse.write_frame(event(n, 4096)):
                break
            written += 4096
            await asyncio.sleep(0)  # a turn of the loop between events, as a session's sends have
        assert probe.drops == 1
        assert sse.state is State.CLOSED
        # What it fell behind by: its socket buffers, HIGH_WATER handed to Tornado, max_buffer_bytes waiting.
        assert 32_768 < written <= HIGH_WATER + 32_768 + 128 * 1024
        await client.read_to_eof()  # the connection was closed
        assert not client.complete()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_reader_that_does_not_take_the_end_is_closed_after_max_lag(http_server, http_port, probe):
    probe.options = {"max_lag": 0.3}
    probe.small_send_buffer = True
    async with connect(http_port, small_receive_buffer=True) as client:
        sse = await opened(probe, client)
        await stall(sse)
        sse.write_frame(event(1))
        sse.end()  # what is queued cannot go out while the client does not read
        await asyncio.sleep(0.6)  # the client: not reading for twice max_lag
        await client.read_to_eof()
        assert not client.complete()  # the connection was closed before the body's end went
        assert probe.drops == 1
        assert sse.state is State.CLOSED


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_reader_that_keeps_up_is_never_dropped(http_server, http_port, probe):
    probe.options = {"max_buffer_bytes": 10_000}
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        frames = [event(n, 4000) for n in range(1, 31)]  # 120,000 live bytes in all, 12 times the limit
        for chunk in frames:
            assert sse.write_frame(chunk)
            await client.read_until(chunk)
        sse.end()
        await client.read_to_eof()
        assert client.payload() == b"".join(frames)
        assert probe.drops == 0


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_replayed_frames_do_not_count_against_the_bytes(http_server, http_port, probe):
    probe.options = {"max_buffer_bytes": 10_000}
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        replayed = [event(1, HIGH_WATER)] + [event(n, 10_000) for n in range(2, 12)]  # 100,000 waiting
        assert all(sse.write_frame(chunk, replay=True) for chunk in replayed)
        await client.read_until(replayed[-1])
        # Once they are out, the live limit is whole: the same boundary as with nothing replayed.
        assert sse.write_frame(event(20, HIGH_WATER))
        assert sse.write_frame(event(21, 10_001))
        assert not sse.write_frame(event(22))
        assert probe.drops == 1


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_replayed_frames_then_live_ones_within_the_limit_all_arrive(http_server, http_port, probe):
    probe.options = {"max_buffer_bytes": 10_000}
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        frames = [event(1, HIGH_WATER)] + [event(n, 10_000) for n in range(2, 12)]
        assert all(sse.write_frame(chunk, replay=True) for chunk in frames)
        live = [event(12, 10_000), event(13)]
        assert all(sse.write_frame(chunk) for chunk in live)
        sse.end()
        await client.read_to_eof()
        assert client.payload() == b"".join(frames + live)
        assert probe.drops == 0


# -- lag --------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_frame_older_than_max_lag_drops_the_reader_on_the_next_write(http_server, http_port, probe):
    probe.options = {"max_lag": 0.3}
    probe.small_send_buffer = True
    async with connect(http_port, small_receive_buffer=True) as client:
        sse = await opened(probe, client)
        started = time.monotonic()
        await stall(sse)
        assert sse.write_frame(event(1))  # waiting, but not for long yet

        async def refused() -> bool:
            return not sse.write_frame(event(2))

        await eventually(refused, timeout=TEST_TIMEOUT)
        assert time.monotonic() - started > 0.3
        assert probe.drops == 1
        assert sse.state is State.CLOSED
        await client.read_to_eof()
        assert not client.complete()


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_frame_older_than_max_lag_drops_the_reader_on_the_keepalive(http_server, http_port, probe):
    probe.options = {"max_lag": 0.3, "keepalive_interval": 0.05}
    probe.small_send_buffer = True
    async with connect(http_port, small_receive_buffer=True) as client:
        sse = await opened(probe, client)
        started = time.monotonic()
        await stall(sse)
        await settled(sse)  # no write needed: the keepalive notices
        assert time.monotonic() - started > 0.3
        assert probe.drops == 1
        await client.read_to_eof()
        assert KEEPALIVE_FRAME not in client.payload()  # none was sent while frames waited


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_replayed_frame_counts_against_the_lag(http_server, http_port, probe):
    probe.options = {"max_lag": 0.3, "keepalive_interval": 0.05}
    probe.small_send_buffer = True
    async with connect(http_port, small_receive_buffer=True) as client:
        sse = await opened(probe, client)
        assert sse.write_frame(b": " + b"r" * (4 * HIGH_WATER) + b"\n\n", replay=True)
        await settled(sse)
        assert probe.drops == 1
        await client.read_to_eof()


# -- keepalive --------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_keepalive_comments_arrive_at_the_interval_when_idle(http_server, http_port, probe):
    probe.options = {"keepalive_interval": 0.1}
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        begun = time.monotonic()
        await client.read_until(KEEPALIVE_FRAME)
        assert time.monotonic() - begun >= 0.09  # not before the interval
        await client.read_until(KEEPALIVE_FRAME * 2)
        assert time.monotonic() - begun >= 0.18
        assert client.payload().startswith(KEEPALIVE_FRAME * 2)
        assert set(client.payload().split(KEEPALIVE_FRAME)) == {b""}  # nothing but keepalives
        assert KEEPALIVE_FRAME == b": keepalive\n\n"
        sse.end()
        await client.read_to_eof()
        assert client.complete()
        assert probe.drops == 0


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_keepalive_comments_go_between_frames(http_server, http_port, probe):
    probe.options = {"keepalive_interval": 0.05}
    async with connect(http_port) as client:
        sse = await opened(probe, client)
        sse.write_frame(event(1))
        await client.read_until(event(1) + KEEPALIVE_FRAME)
        sse.write_frame(event(2))
        await client.read_until(event(2))
        sse.end()
        await client.read_to_eof()
        payload = client.payload()
        assert payload.startswith(event(1) + KEEPALIVE_FRAME)
        assert payload.endswith(event(2))
        assert payload.replace(KEEPALIVE_FRAME, b"") == event(1) + event(2)


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_open_streams_share_one_keepalive_timer(http_server, http_port, probe):
    """A timer per stream was about 1 KB each (bench/README.md): 30 streams, one timer, gone with the last."""
    probe.options = {"keepalive_interval": 0.2}
    loop = asyncio.get_running_loop()

    def timers() -> int:
        return sum(not timer.cancelled() for timer in loop._scheduled)  # type: ignore[attr-defined]

    before = timers()
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(http_port)) for _ in range(30)]
        responses = [await opened(probe, client) for client in clients]
        assert timers() - before <= 1
        for client in clients:  # and every one of them hears it
            await client.read_until(KEEPALIVE_FRAME)
        for sse, client in zip(responses, clients, strict=True):
            sse.end()
            await client.read_to_eof()
    await asyncio.sleep(0.25)  # past one tick: a stopped timer is not re-armed
    assert timers() - before <= 0


@pytest.mark.gen_test(timeout=TEST_TIMEOUT)
async def test_a_stream_opened_mid_round_hears_within_an_interval(http_server, http_port, probe):
    probe.options = {"keepalive_interval": 0.3}
    async with connect(http_port) as first, connect(http_port) as second:
        await opened(probe, first)
        await asyncio.sleep(0.13)  # the keepalive round is under way
        await opened(probe, second)
        begun = time.monotonic()
        await second.read_until(KEEPALIVE_FRAME)
        waited = time.monotonic() - begun
        assert 0.25 <= waited  # not much before its interval
        await second.read_until(KEEPALIVE_FRAME * 2)
        assert time.monotonic() - begun >= 0.5  # and then once an interval
