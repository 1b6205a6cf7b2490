"""`serve --workers N`: N gateway processes on one port, and the parent that keeps them running.

The parent binds the listening sockets once and forks the workers; each inherits them and runs
its own IOLoop and its own `Gateway` on them (Tornado's multi-process model, with our own
supervisor in place of `tornado.process.fork_processes`, which neither backs off, nor drains,
nor outlives a signal). One shared accept queue, rather than a SO_REUSEPORT socket per worker:

- `--port 0` picks one port, in the one place that binds, and a restarted worker inherits it:
  with SO_REUSEPORT the parent would have to hold the port with a bound socket that must never
  listen (one that did would be dealt its share of connections and never accept them).
- Connections the kernel has accepted but no worker has taken yet belong to the socket, not to
  a worker: a worker that dies loses only its own connections (SO_REUSEPORT resets the queue of
  a closed listener), and a busy or stalled worker simply takes fewer (SO_REUSEPORT would keep
  dealing it 1/N of them). Idle workers all wake for a new connection and one wins the accept;
  at a few workers per host that costs less than those losses.
- No other process of the same user can bind the port beside us and take a share.

The parent's contract, as a single gateway's (README, "Shutdown"):

- A worker that exits while the gateway runs is started again after 0.5 s, doubling up to 30 s
  while it keeps dying young (`STABLE_AFTER`). One that exits before all of them were first
  ready stops the whole start: what kills a fresh worker would kill every restart too (exit 1).
- The first SIGTERM or SIGINT closes the parent's copy of the sockets and sends every worker one
  SIGTERM: each stops listening and drains as a single gateway does. The parent exits 0 when all
  have exited 0 (1 otherwise, or if they outlive their own exit deadline). A second signal
  SIGKILLs them and exits at once (128 + signal).
- Each worker is in its own process group (a terminal's Ctrl-C reaches the parent alone, which
  sends one SIGTERM, not two) and gets SIGTERM from the kernel when the parent dies, even by
  SIGKILL (PR_SET_PDEATHSIG): no worker outlives it by more than its grace period.

The parent runs no event loop (one cannot be forked safely): it waits in `select` on a pipe the
signal handlers write to (`signal.set_wakeup_fd`) and on a pipe the workers report ready on.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import tornado.netutil

from mcp_tornado.server import EXIT_DEADLINE_MARGIN, STOP_MARGIN, Gateway, serve_forever
from mcp_tornado.settings import Settings

logger = logging.getLogger(__name__)

# A worker that keeps dying waits this long before its next start, doubling up to the maximum
# (the stdio supervisor's steps): a crash loop costs little, a single crash is mended at once.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
# A worker that ran this long before exiting was not crash-looping: its next start is prompt.
STABLE_AFTER = 30.0
# Past each worker's own exit deadline, the parent waits this much more before SIGKILL.
REAP_MARGIN = 5.0
# What the kernel sends a worker whose parent died: the signal that drains it.
PARENT_DIED = signal.SIGTERM
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
WATCHED = frozenset({signal.SIGCHLD, *STOP_SIGNALS})

# `run_worker(settings, sockets, on_ready)`: serve on the inherited sockets until stopped, call
# `on_ready(port)` once listening; returns the worker's exit status.
RunWorker = Callable[[Settings, list[socket.socket], Callable[[int], None]], int]
# Signal dispositions as `signal.signal` hands them back, to be put back the same way.
_Handlers = dict[signal.Signals, Any]


class _SharedSocketGateway(Gateway):
    """A `Gateway` that serves on sockets its supervisor bound, instead of binding its own."""

    def __init__(self, settings: Settings, sockets: list[socket.socket]) -> None:
        super().__init__(settings)
        self._shared = sockets

    async def start(self, sockets: list[socket.socket] | None = None) -> int:
        return await super().start(self._shared if sockets is None else sockets)


def run_gateway(settings: Settings, sockets: list[socket.socket], on_ready: Callable[[int], None]) -> int:
    """A worker: a whole gateway, with its own IOLoop, on the shared sockets (the default `RunWorker`)."""
    asyncio.run(serve_forever(_SharedSocketGateway(settings, sockets), on_ready))
    return 0


def serve(settings: Settings, on_ready: Callable[[int], None], run_worker: RunWorker = run_gateway) -> int:
    """Bind `settings.host:port`, run `settings.workers` workers on it until stopped; the exit status.

    `on_ready(port)` runs once, in this process, when every worker is listening. Raises
    `OSError` when the address cannot be bound.
    """
    sockets = tornado.netutil.bind_sockets(settings.port, settings.host)
    return WorkerSupervisor(settings, sockets, run_worker).run(on_ready)


@dataclasses.dataclass
class _Worker:
    index: int
    pid: int | None = None
    started: float = 0.0
    ready: bool = False
    young_exits: int = 0  # exits in a row, each within STABLE_AFTER of its start
    restart_at: float | None = None


class WorkerSupervisor:
    """Forks, restarts and stops the workers; `run` is the parent's whole life after binding.

    Owns `sockets` from here on: they are closed when `run` returns (and in each worker by its
    gateway). Call `run` once, from the main thread of a process with no other threads.
    """

    def __init__(self, settings: Settings, sockets: list[socket.socket], run_worker: RunWorker = run_gateway) -> None:
        self.settings = settings
        self.sockets = sockets
        self.run_worker = run_worker
        self.port: int = sockets[0].getsockname()[1]
        self.workers = [_Worker(index) for index in range(settings.workers)]
        self._stopping = False
        self._stop_deadline = 0.0
        self._failed = False  # a worker failed to start, or failed its drain
        self._announced = False
        self._pipes: list[int] = []

    # -- the parent's loop ------------------------------------------------------------------

    def run(self, on_ready: Callable[[int], None]) -> int:
        wake_r, wake_w = self._pipe()
        ready_r, ready_w = self._pipe()
        os.set_blocking(ready_w, True)  # a worker's one short line must not be lost
        previous = {signum: signal.signal(signum, _note) for signum in WATCHED}
        previous_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            for worker in self.workers:
                self._spawn(worker, previous, ready_w)
            return self._loop(on_ready, wake_r, ready_r, previous, ready_w)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._close_sockets()
            for fd in self._pipes:
                os.close(fd)

    def _loop(
        self, on_ready: Callable[[int], None], wake_r: int, ready_r: int, previous: _Handlers, ready_w: int
    ) -> int:
        pending = b""
        while True:
            select.select([wake_r, ready_r], [], [], self._timeout())
            for signum in _drain(wake_r):
                if signum not in STOP_SIGNALS:
                    continue  # SIGCHLD: reaped below, whatever woke us
                if self._stopping:
                    logger.warning("second %s: killing the workers", signal.Signals(signum).name)
                    self._kill_all()
                    return 128 + signum
                logger.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.workers))
                self._stop()
            pending += b"".join(_drain_bytes(ready_r))
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._mark_ready(*map(int, line.split()))
            if not self._announced and all(w.ready for w in self.workers) and not self._stopping:
                self._announced = True
                on_ready(self.port)
            self._reap()
            if self._stopping:
                if all(w.pid is None for w in self.workers):
                    return 1 if self._failed else 0
                if time.monotonic() >= self._stop_deadline:
                    logger.error("workers still running past their exit deadline; killing them")
                    self._kill_all()
                    return 1
                continue
            now = time.monotonic()
            for worker in self.workers:
                if worker.restart_at is not None and worker.restart_at <= now:
                    try:
                        self._spawn(worker, previous, ready_w)
                    except OSError as exc:  # out of processes or memory: the others serve on meanwhile
                        worker.restart_at = now + BACKOFF_MAX
                        logger.error(
                            "cannot start worker %d (%s); trying again in %.0f s", worker.index, exc, BACKOFF_MAX
                        )

    def _timeout(self) -> float | None:
        """Seconds until the next restart or the stop deadline; None when nothing is due."""
        if self._stopping:
            due = [self._stop_deadline]
        else:
            due = [w.restart_at for w in self.workers if w.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _mark_ready(self, index: int, pid: int) -> None:
        worker = self.workers[index]
        if worker.pid == pid:  # not a line from a predecessor that died meanwhile
            worker.ready = True
            if self._announced:
                logger.info("worker %d (pid %d) is serving again", index, pid)

    def _reap(self) -> None:
        for worker in self.workers:
            if worker.pid is None:
                continue
            try:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = worker.pid, 0  # reaped by someone else: nothing left to learn
            if pid == 0:
                continue
            self._exited(worker, os.waitstatus_to_exitcode(status))

    def _exited(self, worker: _Worker, code: int) -> None:
        lived = time.monotonic() - worker.started
        pid, worker.pid, worker.ready = worker.pid, None, False
        if self._stopping:
            # A worker that got our SIGTERM before it could handle it died of it: a clean stop too.
            if code not in (0, -signal.SIGTERM):
                self._failed = True
                logger.error("worker %d (pid %s) %s while stopping", worker.index, pid, _describe(code))
            return
        if not self._announced:
            logger.error("worker %d (pid %s) %s before it was ready; not starting", worker.index, pid, _describe(code))
            self._failed = True
            self._stop()
            return
        worker.young_exits = worker.young_exits + 1 if lived < STABLE_AFTER else 0
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, worker.young_exits - 1))
        worker.restart_at = time.monotonic() + delay
        logger.error(
            "worker %d (pid %s) %s after %.1f s; starting it again in %.1f s",
            worker.index,
            pid,
            _describe(code),
            lived,
            delay,
        )

    def _stop(self) -> None:
        """Stop listening here, and send each worker the SIGTERM that drains it."""
        self._stopping = True
        self._close_sockets()  # once the workers close theirs, new connections are refused
        grace = self.settings.shutdown_grace
        self._stop_deadline = time.monotonic() + grace + STOP_MARGIN + EXIT_DEADLINE_MARGIN + REAP_MARGIN
        for worker in self.workers:
            worker.restart_at = None
            if worker.pid is not None:
                _signal(worker.pid, signal.SIGTERM)

    def _kill_all(self) -> None:
        for worker in self.workers:
            if worker.pid is not None:
                _signal(worker.pid, signal.SIGKILL)
                try:
                    os.waitpid(worker.pid, 0)  # SIGKILL cannot be caught: this is prompt
                except ChildProcessError:
                    pass
                worker.pid = None

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    def _pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        for fd in (read, write):
            os.set_blocking(fd, False)
        self._pipes += [read, write]
        return read, write

    # -- forking a worker -------------------------------------------------------------------

    def _spawn(self, worker: _Worker, handlers: _Handlers, ready_w: int) -> None:
        parent = os.getpid()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the worker would write the parent's buffered lines again
        # Until the worker has its own handlers, a signal for it must not run ours.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        try:
            pid = os.fork()
            if pid == 0:
                self._worker_main(worker.index, parent, handlers, mask, ready_w)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        worker.pid, worker.started, worker.ready, worker.restart_at = pid, time.monotonic(), False, None
        logger.info("worker %d started (pid %d)", worker.index, pid)

    def _worker_main(self, index: int, parent: int, handlers: _Handlers, mask: Iterable[int], ready_w: int) -> NoReturn:
        """The worker's whole life; it never returns into the parent's stack (a test's, say)."""
        code = 1
        try:
            _die_with(parent)
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            for fd in self._pipes:
                if fd != ready_w:
                    os.close(fd)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            _label_logs(index)

            def ready(port: int) -> None:
                os.write(ready_w, f"{index} {os.getpid()}\n".encode())

            code = self.run_worker(dataclasses.replace(self.settings, worker_id=index), self.sockets, ready)
        except BaseException:  # SystemExit and KeyboardInterrupt too: this process ends here
            logger.exception("worker %d failed", index)
        finally:
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(code)


def _note(signum: int, frame: object) -> None:
    """The parent's handler: nothing, since `set_wakeup_fd` already wrote `signum` to its pipe."""


def _drain(fd: int) -> list[int]:
    return [signum for chunk in _drain_bytes(fd) for signum in chunk]


def _drain_bytes(fd: int) -> list[bytes]:
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return chunks
        if not chunk:
            return chunks
        chunks.append(chunk)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # exited meanwhile; reaped on the next turn


def _describe(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


def _die_with(parent: int) -> None:
    """Ask the kernel for `PARENT_DIED` when the parent dies (Linux; elsewhere a no-op).

    The signal comes when the thread that forked us ends: the parent's main thread, which lives
    as long as the parent does.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, PARENT_DIED, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(0)  # it died before the prctl: the signal will never come


class _Labelled(logging.Formatter):
    """Another formatter's lines, each after a fixed label."""

    def __init__(self, inner: logging.Formatter | None, label: str) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.label = label

    def format(self, record: logging.LogRecord) -> str:
        return self.label + self.inner.format(record)


def _label_logs(index: int) -> None:
    """Start each of this worker's log lines with its index: the workers share one stderr."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_Labelled(handler.formatter, f"worker {index}: "))
