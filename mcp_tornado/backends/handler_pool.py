"""`HandlerPool`: one server's worker threads for sync handlers, where a stuck thread is written off.

A thread cannot be interrupted. `concurrent.futures.ThreadPoolExecutor` joins its threads at
interpreter exit, so one handler blocked for ever keeps the process alive after SIGTERM, and
each stuck call costs its pool a thread for good. Here every worker is a daemon thread (exit
never waits for it), and a call that outlives its timeout writes its thread off: the caller
gets `TimeoutError` at once, a fresh worker takes the thread's place, and the stuck thread, if
its call ever returns, drops the result and exits. While `max_abandoned` written-off threads
are still stuck, `run` raises `PoolExhausted` at once instead of starting more.

The one rule for callers: a handler keeps running after its caller gave up; only its result is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Any

from mcp_tornado.deadlines import Deadlines


class PoolExhausted(RuntimeError):
    """Too many of this server's threads are stuck in calls that timed out; try again later."""


@dataclasses.dataclass(eq=False, slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    state: str = "queued"  # -> "running" -> "done" | "written_off"; or "queued" -> "dropped"


class HandlerPool:
    """Up to `size` daemon workers, started on demand, for the sync handlers of server `name`.

    `abandoned` counts written-off threads still stuck in their call; `abandoned_total` every
    thread ever written off. `shutdown()` never blocks: queued calls still run (their callers
    wait with their own timeout), then the workers exit.
    """

    def __init__(self, name: str, *, size: int, max_abandoned: int) -> None:
        self.name = name
        self.size = size
        self.max_abandoned = max_abandoned
        self.abandoned = 0
        self.abandoned_total = 0
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards every counter below and every `_Job.state`
        self._workers = 0  # live workers, written-off ones not counted
        self._idle = 0  # finished calls not yet matched by a new one: workers that will take the next job
        self._started = 0  # numbers the thread names
        self._closed = False
        # One timer per timeout length for every call awaiting a thread (see deadlines.py).
        self._deadlines: dict[float, Deadlines] = {}

    async def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None) -> Any:
        """`fn(*args)` on a worker: its value, or its exception.

        Raises `TimeoutError` after `timeout` seconds (or passes on cancellation) and writes the
        thread off; `PoolExhausted` at once while `max_abandoned` threads are stuck;
        `RuntimeError` after `shutdown()`.
        """
        loop = asyncio.get_running_loop()
        job = _Job(fn, args, loop, loop.create_future())
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: handler pool is shut down")
            if self.abandoned >= self.max_abandoned:
                raise PoolExhausted(
                    f"{self.abandoned} handler threads of server {self.name!r} are still stuck in calls that timed out"
                )
            if self._idle:
                self._idle -= 1
            elif self._workers < self.size:
                self._start()
            self._jobs.put(job)
        try:
            with self._deadline(timeout):
                return await job.future
        finally:
            if job.future.cancelled():  # timed out or cancelled: the handler's result no longer matters
                self._write_off(job)

    def _deadline(self, timeout: float | None) -> contextlib.AbstractContextManager[object]:
        if timeout is None:
            return contextlib.nullcontext()
        deadlines = self._deadlines.get(timeout)
        if deadlines is None:  # one per length: the callers pass their server's `timeout`
            deadlines = self._deadlines[timeout] = Deadlines(timeout)
        return deadlines.start()

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = self._workers
        for _ in range(workers):
            self._jobs.put(None)  # after every queued job: the queue is first in, first out

    def _write_off(self, job: _Job) -> None:
        with self._lock:
            if job.state == "queued":
                job.state = "dropped"  # never started: the worker that takes it skips it
            elif job.state == "running":
                job.state = "written_off"
                self.abandoned += 1
                self.abandoned_total += 1
                self._workers -= 1
                if not self._closed:
                    self._start()  # capacity is restored at once, for the calls queued behind it

    def _start(self) -> None:
        """Called with the lock held. Daemon: interpreter exit never waits for a worker."""
        threading.Thread(target=self._work, name=f"mcp-{self.name}-{self._started + 1}", daemon=True).start()
        self._started += 1
        self._workers += 1

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                if job.state == "dropped":
                    self._idle += 1
                    continue
                job.state = "running"
            value: Any = None
            error: BaseException | None = None
            try:
                value = job.fn(*job.args)
            except Exception as exc:
                error = exc
            except BaseException as exc:  # SystemExit in a handler must not kill the worker silently
                error = RuntimeError(f"handler raised {type(exc).__name__}")
            with self._lock:
                if job.state == "written_off":
                    self.abandoned -= 1
                    return  # a replacement took this thread's place
                job.state = "done"
                self._idle += 1
            try:
                job.loop.call_soon_threadsafe(_settle, job.future, value, error)
            except RuntimeError:  # the loop is closed: nobody waits for this result any more
                pass


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    """On the loop: hand a worker's outcome to its caller, unless the caller already gave up."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
