"""`SessionTable`: one hosted server's live sessions, with caps and the reaper's list."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
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

    def __init__(self, max_sessions: int, max_per_user: int | None = None) -> None:
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

    def _forget(self, session: Session) -> Session:
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
        """
        cutoff = time.monotonic() - idle_timeout
        for session in list(self._sessions.values()):
            if self._sessions.get(session.id) is not session:
                continue  # ended while the reaper paused
            if session.expired:
                yield session
            elif session.last_active < cutoff and not session.in_flight and not session.standalone.attached:
                yield session
