"""`SessionTable`: the caps, eviction order and the reaper's list (mcp_tornado/transport/session_table.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from mcp.server.lowlevel.server import Server
from mcp_types import EmptyResult, JSONRPCRequest

from mcp_tornado.auth import Principal
from mcp_tornado.transport.session import Session
from mcp_tornado.transport.session_table import SessionTable
from tests.conftest import eventually


class Served:
    """The smallest `ServedBackend`: a real lowlevel SDK server whose `ping` waits for `gate`."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

        async def ping(ctx: Any, params: Any) -> EmptyResult:
            await self.gate.wait()
            return EmptyResult()

        self.server = Server("table", on_ping=ping)
        self.lifespan_state: Any = {}
        self.init_options = self.server.create_initialization_options()
        self.fast_paths: dict[str, Any] = {}
        self.request_timeout: float | None = None


def principal(user: str | None = "ada", api_key: str | None = None, expires_at: float | None = None) -> Principal:
    return Principal(token="t", server_name="table", api_key=api_key, user_id=user, admin=False, expires_at=expires_at)


def session(user: str | None = "ada", api_key: str | None = None, expires_at: float | None = None) -> Session:
    return Session("table", Served(), principal(user, api_key, expires_at), event_buffer_size=10)


def ids(sessions: Any) -> list[str]:
    return [s.id for s in sessions]


class OpenSink:
    """A GET stream's response, as far as the table can tell: open until ended."""

    open = True

    def write_frame(self, chunk: bytes, *, replay: bool = False) -> bool:
        return True

    def end(self) -> None:
        self.open = False


# -- the caps ---------------------------------------------------------------------------------


def test_up_to_max_sessions_nothing_is_evicted():
    table = SessionTable(max_sessions=3)
    added = [session(user=f"u{i}") for i in range(3)]
    assert [table.add(s) for s in added] == [[], [], []]
    assert len(table) == 3
    assert ids(table) == ids(added)


def test_past_max_sessions_the_longest_idle_is_evicted():
    table = SessionTable(max_sessions=2)
    a, b, c = session(user="a"), session(user="b"), session(user="c")
    table.add(a)
    table.add(b)
    assert table.add(c) == [a]
    assert len(table) == 2
    assert table.get(a.id) is None
    assert table.get(b.id) is b
    assert table.get(c.id) is c


def test_touch_makes_a_session_the_most_recent():
    table = SessionTable(max_sessions=2)
    a, b, c = session(user="a"), session(user="b"), session(user="c")
    table.add(a)
    table.add(b)
    table.touch(a)
    assert ids(table) == [b.id, a.id]
    assert table.add(c) == [b]
    assert ids(table) == [a.id, c.id]


def test_touch_marks_the_session_active_now():
    table = SessionTable(max_sessions=2)
    a = session()
    table.add(a)
    a.last_active = time.monotonic() - 1000
    before = time.monotonic()
    table.touch(a)
    assert before <= a.last_active <= time.monotonic()


def test_the_per_user_cap_defaults_to_the_server_cap():
    assert SessionTable(max_sessions=5).max_per_user == 5
    assert SessionTable(max_sessions=5, max_per_user=2).max_per_user == 2


def test_past_the_per_user_cap_that_users_longest_idle_is_evicted_never_another_users():
    table = SessionTable(max_sessions=10, max_per_user=2)
    bob = session(user="bob")
    table.add(bob)
    a1, a2, a3 = session(user="ada"), session(user="ada"), session(user="ada")
    assert table.add(a1) == []
    assert table.add(a2) == []
    assert table.add(a3) == [a1]
    assert ids(table) == [bob.id, a2.id, a3.id]


def test_touch_changes_which_of_a_users_sessions_is_evicted():
    table = SessionTable(max_sessions=10, max_per_user=2)
    a1, a2, a3 = session(user="ada"), session(user="ada"), session(user="ada")
    table.add(a1)
    table.add(a2)
    table.touch(a1)
    assert table.add(a3) == [a2]


def test_a_user_at_both_caps_loses_their_own_session_first():
    table = SessionTable(max_sessions=3, max_per_user=2)
    bob = session(user="bob")  # the server's longest-idle session
    a1, a2, a3 = session(user="ada"), session(user="ada"), session(user="ada")
    for s in (bob, a1, a2):
        table.add(s)
    assert table.add(a3) == [a1]  # one eviction makes room under both caps
    assert table.get(bob.id) is bob


def test_the_server_cap_may_evict_another_users_session():
    table = SessionTable(max_sessions=2, max_per_user=2)
    bob, a1, a2 = session(user="bob"), session(user="ada"), session(user="ada")
    table.add(bob)
    table.add(a1)
    assert table.add(a2) == [bob]


def test_a_user_is_the_user_id_else_the_api_key():
    table = SessionTable(max_sessions=10, max_per_user=1)
    by_user = session(user="x", api_key="k")
    same_user_other_key = session(user="x", api_key="other")
    assert table.add(by_user) == []
    assert table.add(same_user_other_key) == [by_user]  # the user id decides, not the key

    table = SessionTable(max_sessions=10, max_per_user=1)
    by_key = session(user=None, api_key="k")
    same_key = session(user=None, api_key="k")
    table.add(by_key)
    assert table.add(same_key) == [by_key]


def test_a_user_id_and_an_api_key_of_the_same_text_are_different_users():
    table = SessionTable(max_sessions=10, max_per_user=1)
    user = session(user="x")
    key = session(user=None, api_key="x")
    assert table.add(user) == []
    assert table.add(key) == []
    assert len(table) == 2


def test_a_user_with_no_sessions_left_starts_afresh():
    table = SessionTable(max_sessions=10, max_per_user=1)
    a1, a2 = session(user="ada"), session(user="ada")
    table.add(a1)
    table.remove(a1)
    assert table.add(a2) == []
    assert ids(table) == [a2.id]


# -- remove -----------------------------------------------------------------------------------


def test_remove_forgets_a_session():
    table = SessionTable(max_sessions=10)
    a, b = session(user="a"), session(user="b")
    table.add(a)
    table.add(b)
    table.remove(a)
    assert table.get(a.id) is None
    assert ids(table) == [b.id]


def test_removing_a_session_not_in_the_table_is_harmless():
    table = SessionTable(max_sessions=10)
    a, stranger = session(), session()
    table.add(a)
    table.remove(stranger)
    table.remove(a)
    table.remove(a)  # twice
    assert len(table) == 0


def test_removing_an_evicted_session_is_harmless_and_keeps_its_successor():
    table = SessionTable(max_sessions=10, max_per_user=2)
    a1, a2, a3 = session(user="ada"), session(user="ada"), session(user="ada")
    table.add(a1)
    table.add(a2)
    assert table.add(a3) == [a1]
    table.remove(a1)
    assert ids(table) == [a2.id, a3.id]
    a4 = session(user="ada")
    assert table.add(a4) == [a2]  # ada's group still holds a2 and a3


# The two below fail today: when an eviction empties a user's group, `_forget` deletes the group
# from the table, but `add` goes on filling the (now detached) group it already holds, so the new
# session belongs to no group the table can find again.


def test_a_per_user_cap_of_one_keeps_holding():
    table = SessionTable(max_sessions=10, max_per_user=1)
    a1, a2, a3 = session(user="ada"), session(user="ada"), session(user="ada")
    table.add(a1)
    assert table.add(a2) == [a1]
    assert table.add(a3) == [a2]
    assert ids(table) == [a3.id]


def test_a_session_added_as_the_server_cap_evicts_its_users_only_other_one_can_be_touched_and_removed():
    table = SessionTable(max_sessions=2)
    a1, bob, a2 = session(user="ada"), session(user="bob"), session(user="ada")
    table.add(a1)
    table.add(bob)
    assert table.add(a2) == [a1]
    table.touch(a2)
    table.remove(a2)
    assert ids(table) == [bob.id]


def test_the_table_can_be_changed_while_iterating_it():
    table = SessionTable(max_sessions=10)
    added = [session(user=f"u{i}") for i in range(3)]
    for s in added:
        table.add(s)
    for s in table:
        table.remove(s)
    assert len(table) == 0


# -- stale ------------------------------------------------------------------------------------


def test_a_fresh_session_is_not_stale():
    table = SessionTable(max_sessions=10)
    a = session()
    table.add(a)
    assert list(table.stale(60)) == []


def test_a_session_idle_past_the_timeout_is_stale():
    table = SessionTable(max_sessions=10)
    idle, busy = session(user="a"), session(user="b")
    table.add(idle)
    table.add(busy)
    idle.last_active = time.monotonic() - 120
    assert list(table.stale(60)) == [idle]
    assert list(table.stale(180)) == []


def test_stale_lists_sessions_in_the_order_they_were_added():
    """Not by activity: a touched session keeps its place (see `SessionTable.stale`)."""
    table = SessionTable(max_sessions=10)
    a, b, c = session(user="a"), session(user="b"), session(user="c")
    for s in (a, b, c):
        table.add(s)
        s.last_active = time.monotonic() - 120
    table.touch(a)
    a.last_active = time.monotonic() - 120
    assert list(table.stale(60)) == [a, b, c]
    assert list(table) == [b, c, a]  # while the table itself is by activity (eviction order)


def test_a_session_past_its_tokens_expiry_is_stale_even_when_busy():
    table = SessionTable(max_sessions=10)
    expired = session(expires_at=time.time() - 1)
    table.add(expired)
    expired.standalone.attach(OpenSink())
    assert expired.expired
    assert list(table.stale(3600)) == [expired]


def test_a_session_before_its_tokens_expiry_is_not_stale():
    table = SessionTable(max_sessions=10)
    live = session(expires_at=time.time() + 3600)
    table.add(live)
    assert not live.expired
    assert list(table.stale(3600)) == []


def test_an_idle_session_with_its_get_stream_attached_is_not_stale():
    table = SessionTable(max_sessions=10)
    listening = session()
    table.add(listening)
    sink = OpenSink()
    listening.standalone.attach(sink)
    listening.last_active = time.monotonic() - 120
    assert list(table.stale(60)) == []
    sink.open = False  # the client went away
    assert list(table.stale(60)) == [listening]


@pytest.mark.gen_test
async def test_an_idle_session_with_a_request_in_flight_is_not_stale():
    table = SessionTable(max_sessions=10)
    waiting = session()
    table.add(waiting)
    backend = Served()
    waiting.set_backend(backend)

    def no_stream() -> Any:
        raise AssertionError("a ping answers as JSON")

    ping = JSONRPCRequest(jsonrpc="2.0", id=1, method="ping")
    answer = asyncio.ensure_future(waiting.serve([ping], no_stream, batch=False))
    try:
        await eventually(lambda: _true(bool(waiting.in_flight)))
        waiting.last_active = time.monotonic() - 120
        assert list(table.stale(60)) == []
    finally:
        backend.gate.set()
        json_answer = await answer
        assert json_answer is not None
        assert json_answer.body == b'{"jsonrpc":"2.0","id":1,"result":{}}'
    assert not waiting.in_flight
    waiting.last_active = time.monotonic() - 120
    assert list(table.stale(60)) == [waiting]
    await waiting.close()


async def _true(value: bool) -> bool:
    return value


# -- the expiry clock: each session ends at its token's expiry, one timer for them all ------------


def expiring_table(ended: list[Session]) -> SessionTable:
    return SessionTable(max_sessions=100_000, on_expire=ended.append)


def ended_are(ended: list[Session], expected: list[Session]) -> Any:
    async def check() -> bool:
        return ended == expected

    return check


@pytest.mark.gen_test
async def test_each_session_ends_at_its_own_tokens_expiry_in_order():
    ended: list[Session] = []
    table = expiring_table(ended)
    now = time.time()
    later, sooner, never = session(expires_at=now + 0.3), session(expires_at=now + 0.1), session()
    for s in (later, sooner, never):
        table.add(s)
    await eventually(ended_are(ended, [sooner]), timeout=2)  # the later one has not gone with it
    await eventually(ended_are(ended, [sooner, later]), timeout=2)
    await asyncio.sleep(0.05)
    assert ended == [sooner, later]  # a session without an expiry never ends this way


@pytest.mark.gen_test
async def test_a_session_removed_before_its_expiry_is_not_ended_by_it():
    ended: list[Session] = []
    table = expiring_table(ended)
    at = time.time() + 0.1
    gone, stays = session(user="a", expires_at=at), session(user="b", expires_at=at)
    table.add(gone)
    table.add(stays)
    table.remove(gone)
    await eventually(ended_are(ended, [stays]), timeout=2)
    await asyncio.sleep(0.05)
    assert ended == [stays]


@pytest.mark.gen_test
async def test_sessions_of_one_token_share_one_timer():
    """A timer per session made reaping 100,000 of them stall the loop (bench/README.md)."""
    loop = asyncio.get_running_loop()
    table = expiring_table([])
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    at = time.time() + 3600
    for _ in range(1000):
        table.add(session(expires_at=at))
    assert len(loop._scheduled) - before == 1  # type: ignore[attr-defined]
    table.stop_clock()


@pytest.mark.gen_test
async def test_expiry_times_whose_sessions_are_gone_do_not_pile_up():
    """Many tokens, each session ended early: what the clock keeps stays bounded."""
    table = expiring_table([])
    now = time.time()
    for n in range(5000):
        s = session(user=f"u{n}", expires_at=now + 3600 + n)
        table.add(s)
        table.remove(s)
    clock = table._expiries  # type: ignore[attr-defined]
    assert clock is not None and len(clock) == 0
    assert len(clock._times) <= 2 * 1 + 64 + 1  # rebuilt from the live ones as it grows


@pytest.mark.gen_test
async def test_a_stopped_clock_ends_nothing():
    ended: list[Session] = []
    table = expiring_table(ended)
    table.add(session(expires_at=time.time() + 0.05))
    table.stop_clock()
    await asyncio.sleep(0.15)
    assert ended == []
