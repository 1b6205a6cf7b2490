"""`SessionTable`: one hosted server's live sessions, with caps, the reaper's list, and the
clock that ends each one at its token's expiry."""

from __future__ import annotations

import asyncio
import collections
import heapq
import time
from collections.abc import Callable, Iterator
from typing import Any

from mcp_tornado.auth import Principal
from mcp_tornado.transport.session import Session


def identity_of(principal: Principal, address: str | None = None) -> str:
    """Who a caller is, for the per-user cap and the per-identity rate limit.

    The token's `userId`; without one, its `apiKey` and `sub` together; a token with none of
    them is its own caller (its `jti`, else the token itself), so callers nobody can tell apart
    are never pooled. Nobody in particular (a public server's anonymous caller) is its client
    address. The kinds are prefixed, so a user id and an api key of the same text differ.
    """
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    if principal.api_key is not None or principal.subject is not None:
        return f"key:{principal.api_key}\x00sub:{principal.subject}"
    if principal.token:
        return f"jti:{principal.token_id}" if principal.token_id is not None else f"token:{principal.token}"
    return f"address:{address}"


class SessionTable:
    """One hosted server's live sessions, most recently active last.

    Two caps: `max_sessions` for the server, and `max_per_user` for one identity (see
    `identity_of`), so one caller opening sessions in a loop only ever evicts its own.
    """

    def __init__(
        self,
        max_sessions: int,
        max_per_user: int | None = None,
        on_expire: Callable[[Session], None] | None = None,
    ) -> None:
        """`on_expire(session)` runs when a session's token expires while it is in the table."""
        self._expiries = ExpiryClock(on_expire) if on_expire is not None else None
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self._by_user: dict[str, collections.OrderedDict[str, Session]] = {}
        self._identity: dict[str, str] = {}  # session id -> its group in _by_user
        self.max_sessions = max_sessions
        self.max_per_user = max_per_user or max_sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Any:
        return iter(list(self._sessions.values()))

    def add(self, session: Session, identity: str | None = None) -> list[Session]:
        """Register `session` for `identity` (default: `identity_of` its principal); returns the
        longest-idle sessions evicted to stay under the caps (that identity's own first)."""
        evicted = []
        user = identity if identity is not None else identity_of(session.principal)
        own: collections.OrderedDict[str, Session] = self._by_user.get(user, collections.OrderedDict())
        while len(own) >= self.max_per_user:
            evicted.append(self._forget(next(iter(own.values()))))
        while len(self._sessions) >= self.max_sessions:
            evicted.append(self._forget(next(iter(self._sessions.values()))))
        self._sessions[session.id] = session
        self._identity[session.id] = user
        # Looked up again: evicting a user's last session above drops their group.
        self._by_user.setdefault(user, collections.OrderedDict())[session.id] = session
        if self._expiries is not None:
            self._expiries.add(session)
        return evicted

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def identity(self, session: Session) -> str:
        """The identity `session` was added for (its group under the per-user cap)."""
        return self._identity[session.id]

    def touch(self, session: Session) -> None:
        session.touch()
        self._sessions.move_to_end(session.id)
        self._by_user[self._identity[session.id]].move_to_end(session.id)

    def remove(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            self._forget(session)

    def stop_clock(self) -> None:
        """No more expiries from this table (its sessions moved to another one)."""
        if self._expiries is not None:
            self._expiries.stop()

    def _forget(self, session: Session) -> Session:
        if self._expiries is not None:
            self._expiries.remove(session)
        del self._sessions[session.id]
        user = self._identity.pop(session.id)
        own = self._by_user[user]
        del own[session.id]
        if not own:
            del self._by_user[user]
        return session

    def stale(self, idle_timeout: float) -> Iterator[Session]:
        """Sessions past their token's expiry, or idle longer than `idle_timeout` seconds.

        Idle means no request for that long and none in flight, and no GET stream attached:
        a client that is listening, or waiting for an answer, is not idle. Lazy, over the sessions
        of the moment it starts, each judged when reached and only if still in the table: the
        reaper may pause between two (see `HostedServer.reap`) while clients carry on.

        In the order the sessions were added, not by activity: the snapshot is read off the
        dict under the OrderedDict, sequentially (100,000 sessions: 3 ms, where walking the
        OrderedDict's own order took 20 ms, one stall of the loop).
        """
        cutoff = time.monotonic() - idle_timeout
        for session in list(dict.values(self._sessions)):
            if self._sessions.get(session.id) is not session:
                continue  # ended while the reaper paused
            if session.expired:
                yield session
            elif session.last_active < cutoff and not session.in_flight and not session.standalone.attached:
                yield session


class ExpiryClock:
    """Calls `on_expire(session)` at each session's token expiry, with one timer for them all.

    A timer per session costs a loop handle each, and cancelling 100,000 of them (the reaper
    ending idle sessions) made the loop rebuild its timer heap again and again, stalling it for
    32, 23, 15, 9 ms (bench/README.md). Sessions opened with one token share its expiry, so they
    are grouped by it: a heap of distinct expiry times, each with its set of sessions. A time
    whose sessions have all gone stays in the heap until reached, or until most of the heap is
    such times (then it is rebuilt from the live ones), so the heap stays within twice them.
    """

    def __init__(self, on_expire: Callable[[Session], None]) -> None:
        self._on_expire = on_expire
        self._groups: dict[float, set[Session]] = {}  # expiry (epoch seconds) -> its sessions
        self._times: list[float] = []  # a heap of expiry times
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups.values())

    def add(self, session: Session) -> None:
        at = session.principal.expires_at
        if at is None:
            return
        group = self._groups.get(at)
        if group is None:
            group = self._groups[at] = set()
            if len(self._times) > 2 * len(self._groups) + 64:
                self._times = list(self._groups)
                heapq.heapify(self._times)
            else:
                heapq.heappush(self._times, at)
            if self._armed_for is None or at < self._armed_for:
                self._arm(at)
        group.add(session)

    def remove(self, session: Session) -> None:
        at = session.principal.expires_at
        group = self._groups.get(at) if at is not None else None
        if group is not None:
            group.discard(session)
            if not group:
                del self._groups[at]  # type: ignore[arg-type]

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._armed_for = None
        self._groups.clear()
        self._times.clear()

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = at
        self._timer = asyncio.get_running_loop().call_later(max(0.0, at - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer = self._armed_for = None
        now = time.time()
        while self._times and self._times[0] <= now:
            for session in self._groups.pop(heapq.heappop(self._times), ()):
                self._on_expire(session)
        if self._times:
            self._arm(self._times[0])
