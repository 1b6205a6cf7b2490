"""Deadlines of one fixed length for many concurrent awaits, kept by one timer among them.

`asyncio.timeout` arms a timer for every await it guards: a handle, a copy of the context, a
push onto the loop's heap and a cancelled handle left behind in it. On the hot path (every
in-process tool call runs under its server's timeout) that was a fifth of the call's own work
(bench/README.md, "Profile"). All the awaits of one `Deadlines` share its length, so their
deadlines fall in the order they start: an insertion-ordered dict holds the live ones, and a
single timer, armed at the oldest one's deadline, cancels what is overdue and re-arms itself
for the next. Starting and ending a guarded await is a dict insert and a dict delete.

    guard = Deadlines(30.0)
    with guard.start():     # raises TimeoutError out of the block once 30 s have passed
        await something()

Semantics are `asyncio.timeout`'s: the task is cancelled at the deadline and the block's
`CancelledError` comes out as `TimeoutError`, unless the task was also cancelled by someone
else (then the cancellation goes on).
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    """One guarded await (see `Deadlines.start`)."""

    __slots__ = ("_owner", "_task", "_cancelling", "at", "expired")
    _task: asyncio.Task[object]
    _cancelling: int
    at: float  # the loop's clock

    def __init__(self, owner: Deadlines) -> None:
        self._owner = owner
        self.expired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline guards an await inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._owner._add(self, task.get_loop())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._owner._live.pop(self, None)
        if self.expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


class Deadlines:
    """Deadlines `seconds` after each `start()`, on the running loop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._live: dict[Deadline, None] = {}  # oldest first: dicts keep insertion order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> Deadline:
        """A context manager: the block's awaits end with `TimeoutError` after `seconds`."""
        return Deadline(self)

    def __len__(self) -> int:
        return len(self._live)

    def _add(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:  # a new loop (tests run several): nothing of the old one carries over
            if self._timer is not None:
                self._timer.cancel()
            self._live.clear()
            self._loop, self._timer = loop, None
        deadline.at = loop.time() + self.seconds
        self._live[deadline] = None
        if self._timer is None:
            self._timer = loop.call_at(deadline.at, self._expire)

    def _expire(self) -> None:
        """Cancel every overdue await; re-arm for the oldest one left."""
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        live = self._live
        while live:
            oldest = next(iter(live))
            if oldest.at > now:
                self._timer = self._loop.call_at(oldest.at, self._expire)
                return
            del live[oldest]
            oldest.expired = True
            oldest._task.cancel()
