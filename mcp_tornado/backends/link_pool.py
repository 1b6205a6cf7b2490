"""`LinkPool`: the upstream connections of one route: one shared link, or one per session.

Shared (the default): every session of the route talks to one child or remote session.
Per session (`per_session: true`): each session gets its own link, started with the session
and stopped with it, at most `max_links` at once (503 past it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcp_tornado.backends.link import CONNECT_TIMEOUT, Connect, OnMessage, UpstreamLink
from mcp_tornado.backends.state import BackendState
from mcp_tornado.errors import Unavailable


class LinkPool:
    def __init__(
        self, name: str, connect: Connect, on_message: OnMessage, *, per_session: bool, max_links: int
    ) -> None:
        self.name = name
        self._connect = connect
        self._on_message = on_message
        self.per_session = per_session
        self.max_links = max_links
        self.shared = None if per_session else UpstreamLink(name, connect, on_message)
        self._by_session: dict[str, UpstreamLink] = {}

    def __iter__(self) -> Any:
        return iter(([self.shared] if self.shared is not None else []) + list(self._by_session.values()))

    def __len__(self) -> int:
        return len(self._by_session)

    def of(self, session_id: str | None) -> UpstreamLink | None:
        """The link a session's requests go over (the shared one, or its own)."""
        return self.shared if self.shared is not None else self._by_session.get(session_id or "")

    async def open(self, session_id: str) -> None:
        """Start the session's own link (per session only) and wait for it; `Unavailable` (503)
        at `max_links`, or when it does not come up."""
        if self.shared is not None:
            return
        if len(self._by_session) >= self.max_links:
            raise Unavailable(f"{self.name} runs its limit of {self.max_links} processes", retry_after=5)
        link = self._by_session[session_id] = UpstreamLink(
            f"{self.name}[{session_id[:8]}]", self._connect, self._on_message
        )
        try:
            await wait_for(link, self.name)
        except Unavailable:
            await self.close(session_id)
            raise

    async def close(self, session_id: str) -> None:
        link = self._by_session.pop(session_id, None)
        if link is not None:
            await link.supervisor.stop()

    async def stop(self) -> None:
        await asyncio.gather(*(link.supervisor.stop() for link in self))
        self._by_session.clear()

    def describe(self) -> dict[str, Any]:
        """State, last error and restarts of the pool as a whole (the worst link speaks for it)."""
        links = list(self)
        states = {link.supervisor.state for link in links}
        if self.shared is not None:
            state = self.shared.supervisor.state
        else:
            state = (
                BackendState.RUNNING if states <= {BackendState.RUNNING} else sorted(states - {BackendState.RUNNING})[0]
            )
        last_error = next((link.supervisor.last_error for link in links if link.supervisor.last_error), None)
        return {
            "state": state.value,
            "last_error": last_error,
            "restarts": sum(link.supervisor.restarts for link in links),
            "processes": len(self._by_session) if self.per_session else None,
        }


async def wait_for(link: UpstreamLink, name: str) -> None:
    """Return once `link` can be used; a first start is waited for, a link that is down is
    `Unavailable` (503 with the supervisor's Retry-After, and no detail of why)."""
    supervisor = link.supervisor
    if supervisor.running:
        return
    if supervisor.state in (BackendState.STOPPED, BackendState.STARTING) and await supervisor.wait_ready(
        CONNECT_TIMEOUT
    ):
        return
    # The client learns the state, never the cause: that (an exception, a path) is in the log and
    # in the management API's view of the server.
    raise Unavailable(f"{name} is {supervisor.state.value}", retry_after=round(supervisor.retry_after()))
