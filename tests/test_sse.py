"""SSE framing, the per-session event buffer and one stream's replay (mcp_tornado/transport/sse.py)."""

from __future__ import annotations

import pytest

from mcp_tornado.transport.sse import EventBuffer, EventStream, frame


class RecordingSink:
    """A `Sink` that records what it is given; `accept` is what `write_frame` answers."""

    def __init__(self, *, accept: bool = True) -> None:
        self.open = True
        self.accept = accept
        self.frames: list[tuple[bytes, bool]] = []
        self.ended = 0

    def write_frame(self, chunk: bytes, *, replay: bool = False) -> bool:
        self.frames.append((chunk, replay))
        return self.accept

    def end(self) -> None:
        self.ended += 1
        self.open = False


# -- frame ------------------------------------------------------------------------------------


def test_frame_is_an_id_line_a_data_line_and_a_blank_line():
    assert frame(7, b'{"a":1}') == b'id: 7\ndata: {"a":1}\n\n'
    assert frame(12345, b"x") == b"id: 12345\ndata: x\n\n"


def test_a_frame_with_no_data_still_has_its_id():
    assert frame(1, b"") == b"id: 1\ndata: \n\n"


def test_a_frame_with_a_retry_says_it_between_id_and_data():
    assert frame(3, b"", 2500) == b"id: 3\nretry: 2500\ndata: \n\n"
    assert frame(3, b"x", 0) == b"id: 3\nretry: 0\ndata: x\n\n"  # zero is a retry, not "none"
    assert frame(3, b"x", None) == frame(3, b"x")


# -- EventBuffer ------------------------------------------------------------------------------


def test_event_ids_start_at_one_and_go_up_by_one():
    buffer = EventBuffer(10)
    assert buffer.add("get", b"a") == (1, frame(1, b"a"))
    assert buffer.add("post-1", b"b") == (2, frame(2, b"b"))
    assert buffer.add("get", b"c") == (3, frame(3, b"c"))


def test_add_frames_with_the_retry_given():
    buffer = EventBuffer(10)
    assert buffer.add("get", b"", 1000) == (1, b"id: 1\nretry: 1000\ndata: \n\n")
    assert buffer.size_in_bytes == len(b"id: 1\nretry: 1000\ndata: \n\n")


def test_a_new_buffer_is_empty():
    buffer = EventBuffer(3, 100)
    assert len(buffer) == 0
    assert buffer.size_in_bytes == 0
    assert buffer.stream_of(1) is None
    assert list(buffer.after(0, "get")) == []


def test_exactly_size_events_are_kept():
    buffer = EventBuffer(3)
    for data in (b"a", b"b", b"c"):
        buffer.add("get", data)
    assert len(buffer) == 3
    assert [buffer.stream_of(i) for i in (1, 2, 3)] == ["get", "get", "get"]


def test_past_size_the_oldest_event_is_dropped_first():
    buffer = EventBuffer(3)
    for data in (b"a", b"b", b"c", b"d"):
        buffer.add("get", data)
    assert len(buffer) == 3
    assert buffer.stream_of(1) is None
    assert list(buffer.after(0, "get")) == [frame(2, b"b"), frame(3, b"c"), frame(4, b"d")]
    assert buffer.size_in_bytes == 3 * len(frame(2, b"b"))


def test_bytes_counts_every_frame_kept():
    buffer = EventBuffer(10, 1000)
    buffer.add("get", b"abc")
    buffer.add("get", b"")
    assert buffer.size_in_bytes == len(frame(1, b"abc")) + len(frame(2, b""))


def test_exactly_max_bytes_is_kept():
    one = len(frame(1, b"x"))  # every frame below is this long: single-digit ids, one byte of data
    buffer = EventBuffer(10, 3 * one)
    for _ in range(3):
        buffer.add("get", b"x")
    assert len(buffer) == 3
    assert buffer.size_in_bytes == 3 * one


def test_one_byte_over_max_bytes_drops_the_oldest():
    one = len(frame(1, b"x"))
    buffer = EventBuffer(10, 3 * one - 1)
    for _ in range(3):
        buffer.add("get", b"x")
    assert len(buffer) == 2
    assert buffer.size_in_bytes == 2 * one
    assert buffer.stream_of(1) is None
    assert list(buffer.after(0, "get")) == [frame(2, b"x"), frame(3, b"x")]


def test_a_big_event_pushes_out_as_many_old_ones_as_it_must():
    small = len(frame(1, b"x"))
    buffer = EventBuffer(10, 4 * small)
    for _ in range(4):
        buffer.add("get", b"x")
    big = b"x" * (small + 2)
    assert len(frame(5, big)) == 2 * small + 1  # one byte more than two small frames: three must go
    buffer.add("get", big)
    assert list(buffer.after(0, "get")) == [frame(4, b"x"), frame(5, big)]
    assert buffer.size_in_bytes == 3 * small + 1


def test_an_event_larger_than_max_bytes_is_not_kept_at_all():
    buffer = EventBuffer(10, 10)
    event_id, chunk = buffer.add("get", b"far too long for ten bytes")
    assert (event_id, chunk) == (1, frame(1, b"far too long for ten bytes"))  # still framed, for the live reader
    assert len(buffer) == 0
    assert buffer.size_in_bytes == 0
    assert buffer.add("get", b"")[0] == 2  # ids keep counting


def test_without_max_bytes_only_the_count_bounds_the_buffer():
    buffer = EventBuffer(2)
    buffer.add("get", b"x" * 100_000)
    buffer.add("get", b"y" * 100_000)
    assert len(buffer) == 2
    assert buffer.size_in_bytes == len(frame(1, b"x" * 100_000)) + len(frame(2, b"y" * 100_000))


def test_stream_of_names_the_stream_of_an_event_still_held():
    buffer = EventBuffer(2)
    buffer.add("get", b"a")
    buffer.add("post-1", b"b")
    assert buffer.stream_of(1) == "get"
    assert buffer.stream_of(2) == "post-1"
    assert buffer.stream_of(3) is None  # never sent
    assert buffer.stream_of(0) is None
    buffer.add("post-2", b"c")
    assert buffer.stream_of(1) is None  # gone


def test_after_gives_only_that_streams_frames_strictly_after_the_id_oldest_first():
    buffer = EventBuffer(10)
    for key, data in [("a", b"1"), ("b", b"2"), ("a", b"3"), ("a", b"4"), ("b", b"5"), ("a", b"6")]:
        buffer.add(key, data)
    assert list(buffer.after(0, "a")) == [frame(1, b"1"), frame(3, b"3"), frame(4, b"4"), frame(6, b"6")]
    assert list(buffer.after(3, "a")) == [frame(4, b"4"), frame(6, b"6")]  # not 3 itself
    assert list(buffer.after(2, "a")) == [frame(3, b"3"), frame(4, b"4"), frame(6, b"6")]
    assert list(buffer.after(1, "b")) == [frame(2, b"2"), frame(5, b"5")]
    assert list(buffer.after(6, "a")) == []
    assert list(buffer.after(0, "c")) == []


def test_after_may_be_read_while_events_are_added():
    buffer = EventBuffer(10)
    buffer.add("get", b"a")
    buffer.add("get", b"b")
    seen = []
    for chunk in buffer.after(0, "get"):
        seen.append(chunk)
        buffer.add("get", b"new")  # as a stream does when a replayed frame leads to a new event
    assert seen == [frame(1, b"a"), frame(2, b"b")]


# -- EventStream ------------------------------------------------------------------------------


def test_events_are_buffered_with_no_sink_attached():
    buffer = EventBuffer(10)
    stream = EventStream("get", buffer)
    assert stream.key == "get"
    assert not stream.attached
    assert not stream.finished
    stream.send(b"a")
    stream.send(b"b")
    assert list(buffer.after(0, "get")) == [frame(1, b"a"), frame(2, b"b")]


def test_an_attached_sink_receives_new_events_as_live_frames():
    stream = EventStream("get", EventBuffer(10))
    sink = RecordingSink()
    stream.attach(sink)
    assert stream.attached
    stream.send(b"a")
    stream.send(b"b")
    assert sink.frames == [(frame(1, b"a"), False), (frame(2, b"b"), False)]
    assert sink.ended == 0


def test_attach_without_replay_after_skips_what_was_buffered():
    stream = EventStream("get", EventBuffer(10))
    stream.send(b"old")
    sink = RecordingSink()
    stream.attach(sink)
    stream.send(b"new")
    assert sink.frames == [(frame(2, b"new"), False)]


def test_attach_replays_this_streams_frames_after_the_id_flagged_as_replay():
    buffer = EventBuffer(10)
    stream = EventStream("post-1", buffer)
    other = EventStream("post-2", buffer)
    stream.send(b"a")  # 1
    other.send(b"x")  # 2
    stream.send(b"b")  # 3
    stream.send(b"c")  # 4
    sink = RecordingSink()
    stream.attach(sink, replay_after=1)
    stream.send(b"d")  # 5
    assert sink.frames == [(frame(3, b"b"), True), (frame(4, b"c"), True), (frame(5, b"d"), False)]


def test_attach_with_replay_after_zero_replays_everything_the_stream_still_has():
    stream = EventStream("get", EventBuffer(2))
    for data in (b"a", b"b", b"c"):
        stream.send(data)
    sink = RecordingSink()
    stream.attach(sink, replay_after=0)
    assert sink.frames == [(frame(2, b"b"), True), (frame(3, b"c"), True)]


def test_a_resume_ends_the_sink_it_replaces():
    stream = EventStream("get", EventBuffer(10))
    first, second = RecordingSink(), RecordingSink()
    stream.attach(first)
    stream.send(b"a")
    stream.attach(second, replay_after=0)
    assert first.ended == 1
    assert second.ended == 0
    stream.send(b"b")
    assert first.frames == [(frame(1, b"a"), False)]
    assert second.frames == [(frame(1, b"a"), True), (frame(2, b"b"), False)]


def test_attaching_the_same_sink_again_does_not_end_it():
    stream = EventStream("get", EventBuffer(10))
    sink = RecordingSink()
    stream.attach(sink)
    stream.attach(sink)
    assert sink.ended == 0
    assert stream.attached


def test_a_sink_that_refuses_a_frame_is_let_go():
    buffer = EventBuffer(10)
    stream = EventStream("get", buffer)
    sink = RecordingSink(accept=False)
    stream.attach(sink)
    stream.send(b"a")
    assert sink.frames == [(frame(1, b"a"), False)]
    assert not stream.attached
    stream.send(b"b")  # buffered, not written
    assert sink.frames == [(frame(1, b"a"), False)]
    assert list(buffer.after(0, "get")) == [frame(1, b"a"), frame(2, b"b")]
    assert sink.ended == 0  # it said it was over: nothing to end


def test_a_sink_that_refuses_a_replayed_frame_gets_no_more_of_the_replay():
    stream = EventStream("get", EventBuffer(10))
    for data in (b"a", b"b", b"c"):
        stream.send(data)
    sink = RecordingSink(accept=False)
    stream.attach(sink, replay_after=0)
    assert sink.frames == [(frame(1, b"a"), True)]
    assert not stream.attached
    stream.send(b"d")
    assert sink.frames == [(frame(1, b"a"), True)]


def test_a_new_sink_can_attach_after_one_was_let_go():
    stream = EventStream("get", EventBuffer(10))
    gone = RecordingSink(accept=False)
    stream.attach(gone)
    stream.send(b"a")
    fresh = RecordingSink()
    stream.attach(fresh, replay_after=0)
    assert gone.ended == 0  # already let go, so the new one replaces nothing
    assert fresh.frames == [(frame(1, b"a"), True)]
    assert stream.attached


def test_attached_follows_the_sinks_open():
    stream = EventStream("get", EventBuffer(10))
    sink = RecordingSink()
    stream.attach(sink)
    assert stream.attached
    sink.open = False
    assert not stream.attached
    sink.open = True
    assert stream.attached


def test_end_finishes_the_attached_sink():
    stream = EventStream("get", EventBuffer(10))
    sink = RecordingSink()
    stream.attach(sink)
    stream.send(b"a")
    stream.end()
    assert stream.finished
    assert sink.ended == 1
    assert not stream.attached
    stream.send(b"late")  # buffered only
    assert sink.frames == [(frame(1, b"a"), False)]


def test_end_with_no_sink_only_marks_the_stream_finished():
    stream = EventStream("get", EventBuffer(10))
    stream.end()
    assert stream.finished
    assert not stream.attached


def test_a_resume_of_a_finished_stream_replays_then_ends():
    stream = EventStream("post-1", EventBuffer(10))
    stream.send(b"a")
    stream.send(b"b")
    stream.end()
    sink = RecordingSink()
    stream.attach(sink, replay_after=1)
    assert sink.frames == [(frame(2, b"b"), True)]
    assert sink.ended == 1
    assert not stream.attached


def test_attaching_to_a_finished_stream_without_replay_ends_at_once():
    stream = EventStream("post-1", EventBuffer(10))
    stream.send(b"a")
    stream.end()
    sink = RecordingSink()
    stream.attach(sink)
    assert sink.frames == []
    assert sink.ended == 1


@pytest.mark.parametrize("primes", [1, 2])
def test_prime_sends_an_event_with_an_id_and_no_data(primes):
    buffer = EventBuffer(10)
    stream = EventStream("get", buffer)
    sink = RecordingSink()
    stream.attach(sink)
    for _ in range(primes):
        stream.prime()
    assert sink.frames == [(frame(i, b""), False) for i in range(1, primes + 1)]
    assert sink.frames[0][0] == b"id: 1\ndata: \n\n"
    assert buffer.stream_of(primes) == "get"  # resumable from that id


def test_prime_with_a_retry_tells_the_client_how_soon_to_come_back():
    buffer = EventBuffer(10)
    stream = EventStream("get", buffer)
    sink = RecordingSink()
    stream.attach(sink)
    stream.prime(3000)
    assert sink.frames == [(b"id: 1\nretry: 3000\ndata: \n\n", False)]
    assert list(buffer.after(0, "get")) == [b"id: 1\nretry: 3000\ndata: \n\n"]  # a resume replays it too


def test_prime_with_no_sink_is_buffered():
    buffer = EventBuffer(10)
    stream = EventStream("get", buffer)
    stream.prime()
    assert list(buffer.after(0, "get")) == [frame(1, b"")]


def test_release_ends_the_response_but_not_the_stream():
    stream = EventStream("get", EventBuffer(10))
    first = RecordingSink()
    stream.attach(first)
    stream.send(b"a")
    stream.release()
    assert first.ended == 1
    assert not stream.attached
    assert not stream.finished
    stream.send(b"b")  # buffered for the client's return
    assert first.frames == [(frame(1, b"a"), False)]
    second = RecordingSink()
    stream.attach(second, replay_after=1)
    assert second.frames == [(frame(2, b"b"), True)]
    assert second.ended == 0  # not finished: it stays open for more
    stream.send(b"c")
    assert second.frames[-1] == (frame(3, b"c"), False)


def test_release_with_no_sink_is_harmless():
    stream = EventStream("get", EventBuffer(10))
    stream.release()
    assert not stream.finished
    assert not stream.attached
