"""`Supervisor`: keeps one upstream connection (a child process, a remote session) alive.

`run(life)` is one life of the connection: it calls `life.ready()` once usable, and returns
(or raises) when the connection is gone; it watches `life.wait_end()`, which the supervisor
triggers to renew the connection on purpose. The supervisor starts it again with exponential backoff
(0.5 s doubling to 30 s); after `BREAKER_FAST_CRASHES` lives shorter than
`FAST_CRASH_SECONDS` in a row the circuit opens (`crashed`) and it waits `BREAKER_COOLDOWN`
before one more try. `retry_after()` tells a client when to come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from mcp_tornado.backends.state import BackendState

logger = logging.getLogger(__name__)

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# A life shorter than this counts as a crash at start, not a crash after useful work.
FAST_CRASH_SECONDS = 5.0
BREAKER_FAST_CRASHES = 5
BREAKER_COOLDOWN = 60.0


class Life:
    """One attempt at a connection, as the running code and the supervisor share it."""

    def __init__(self, on_ready: Callable[[], None]) -> None:
        self._on_ready = on_ready
        self._ended = asyncio.Event()

    def ready(self) -> None:
        """The connection is usable."""
        self._on_ready()

    def end(self) -> None:
        """The connection is gone (the run noticed) or must go (the supervisor renews it)."""
        self._ended.set()

    async def wait_end(self) -> None:
        await self._ended.wait()


Run = Callable[[Life], Awaitable[None]]
"""One life: `run(life)` calls `life.ready()` once usable and returns when the connection is gone."""


class Supervisor:
    def __init__(
        self,
        name: str,
        run: Run,
        *,
        first_backoff: float = FIRST_BACKOFF,
        breaker_fast_crashes: int = BREAKER_FAST_CRASHES,
        breaker_cooldown: float = BREAKER_COOLDOWN,
    ) -> None:
        self.name = name
        self._run = run
        self._first_backoff = first_backoff
        self._breaker_fast_crashes = breaker_fast_crashes
        self._breaker_cooldown = breaker_cooldown
        self.state = BackendState.STOPPED
        self.restarts = 0
        self.last_error: str | None = None
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # the current attempt either became ready or failed
        self._wake = asyncio.Event()  # cuts a backoff short (`kick`)
        self._task: asyncio.Task[None] | None = None
        self._next_attempt = 0.0
        self._renewing = False
        self._life: Life | None = None  # the current attempt

    @property
    def running(self) -> bool:
        return self.state is BackendState.RUNNING

    def start(self) -> None:
        if self._task is None:
            self.state = BackendState.STARTING
            self._task = asyncio.ensure_future(self._supervise())

    async def wait_ready(self, timeout: float) -> bool:
        """Start if needed and wait for the current attempt; True when it is running."""
        self.start()
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            return False
        return self.running

    def retry_after(self) -> float:
        return max(1.0, self._next_attempt - time.monotonic())

    def kick(self) -> None:
        """The connection is known to be broken: retry at once instead of waiting out a backoff."""
        self._next_attempt = 0.0
        self._wake.set()

    def renew(self) -> None:
        """End the current life on purpose (e.g. the upstream forgot our session) and start a new
        one at once; this is not a crash."""
        self._renewing = True
        self.state = BackendState.STARTING
        self._ready.clear()
        self._settled.clear()
        if self._life is not None:
            self._life.end()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._ready.clear()
        self.state = BackendState.STOPPED

    def _mark_ready(self) -> None:
        self.state = BackendState.RUNNING
        self.last_error = None
        self._ready.set()
        self._settled.set()

    async def _supervise(self) -> None:
        fast_crashes = 0
        while True:
            began = time.monotonic()
            self._settled.clear()
            self._life = Life(self._mark_ready)
            try:
                await self._run(self._life)
                self.last_error = "the connection ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = _describe(exc)
            finally:
                self._life = None
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # `stop()` cancelled us while the run was failing, and the run's task group turned
                # the cancellation into its own error: stop anyway, or `stop()` waits for ever.
                raise asyncio.CancelledError
            self._ready.clear()
            if self._renewing:  # waiters want the next life, not the end of this one
                self._renewing = False
                self.state = BackendState.STARTING
                continue
            self._settled.set()
            lived = time.monotonic() - began
            fast_crashes = fast_crashes + 1 if lived < FAST_CRASH_SECONDS else 1
            if fast_crashes >= self._breaker_fast_crashes:
                self.state, delay = BackendState.CRASHED, self._breaker_cooldown
                fast_crashes = self._breaker_fast_crashes - 1  # after the cool-down, one more try decides
            else:
                self.state, delay = (
                    BackendState.RESTARTING,
                    min(self._first_backoff * 2 ** (fast_crashes - 1), MAX_BACKOFF),
                )
            self.restarts += 1
            logger.warning("%s: %s; %s in %.1f s", self.name, self.last_error, self.state, delay)
            self._next_attempt = time.monotonic() + delay
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)


def _describe(exc: BaseException) -> str:
    """The first real error inside task-group wrappers, as `Type: message`."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
