"""`Gateway`: the running process: registry, watcher, session reaper, HTTP server, and their order.

`start()` loads `servers.d/`, starts watching it, starts the reaper (`PeriodicCallback`) and
listens; `stop(grace)` undoes it in reverse: stop listening, stop the reaper, stop watching,
give in-flight calls up to `grace` seconds, end every session, stop every server. However
long anything below takes, `stop` returns within about `grace` seconds plus `STOP_MARGIN`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

import tornado.ioloop
import tornado.netutil

from mcp_tornado.app import make_app
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.hosting.watcher import ServersWatcher
from mcp_tornado.http_server import GatewayHTTPServer
from mcp_tornado.settings import Settings, max_connections_for

logger = logging.getLogger(__name__)

# After the grace period, ending sessions, stopping children and closing connections get this
# much more time (a child's stdin close, SIGTERM, SIGKILL take about 2 s in the SDK).
STOP_MARGIN = 5.0
# If the process has still not exited this long after the stop was asked for, it exits anyway:
# nothing (a stuck thread, a library's cleanup) may keep a stopped gateway alive.
EXIT_DEADLINE_MARGIN = 10.0


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ServerRegistry(settings)
        self.app = make_app(settings, self.registry)
        self._http: GatewayHTTPServer | None = None
        self._reaper: tornado.ioloop.PeriodicCallback | None = None
        self._reaping = False
        self._watcher: ServersWatcher | None = None
        self.port: int | None = None

    async def start(self, sockets: list[socket.socket] | None = None) -> int:
        """Load every definition, then listen. Returns the bound port (useful with port 0)."""
        await self.registry.load_all()
        self._watcher = ServersWatcher(self.registry, tornado.ioloop.IOLoop.current())
        self._watcher.start()
        self._reaper = tornado.ioloop.PeriodicCallback(self._reap, self.settings.session_cleanup_interval * 1000)
        self._reaper.start()
        if sockets is None:
            sockets = tornado.netutil.bind_sockets(self.settings.port, self.settings.host)
        # MCP routes set their own body limit (413); this one guards every other route.
        self._http = GatewayHTTPServer(
            self.app,
            max_body_size=self.settings.max_body_bytes,
            idle_connection_timeout=self.settings.header_timeout,  # Tornado's header timeout too
            body_timeout=self.settings.body_timeout,
            max_connections=max_connections_for(self.settings),
        )
        self._http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def _reap(self) -> None:
        if self._reaping:
            return
        self._reaping = True
        try:
            for hosted in self.registry:
                reaped = await hosted.reap(self.settings.session_idle_timeout)
                if reaped:
                    logger.info("%s: reaped %d idle or expired session(s)", hosted.name, reaped)
        finally:
            self._reaping = False

    @property
    def open_connections(self) -> int:
        return self._http.open_connections if self._http is not None else 0

    async def stop(self, grace: float = 0.0) -> None:
        """Stop listening, wait up to `grace` seconds for calls in flight, then end everything."""
        if self._http is not None:
            self._http.stop()
        if self._reaper is not None:
            self._reaper.stop()
        if self._watcher is not None:
            self._watcher.stop()
        if grace > 0:
            try:
                await asyncio.wait_for(self.registry.drained(), grace)
            except TimeoutError:
                logger.warning("calls still in flight after %.1f s; ending them", grace)
        try:
            await asyncio.wait_for(self._close(), STOP_MARGIN)
        except TimeoutError:
            logger.warning("shutdown took over %.1f s more; leaving the rest", STOP_MARGIN)

    async def _close(self) -> None:
        await self.registry.stop()
        tracing = self.app.settings["telemetry"].tracing
        if tracing is not None:  # the spans still queued go out (the exporter blocks: off the loop)
            await asyncio.to_thread(tracing.shutdown)
        if self._http is not None:
            await self._http.close_all_connections()
            self._http = None


async def serve_forever(gateway: Gateway, on_ready: Callable[[int], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM, then shut down in order. `on_ready(port)` runs once listening.

    The first signal starts a graceful stop (in-flight calls get `shutdown_grace` seconds); a
    second one exits at once. Either way the process is gone within a bounded time.
    """
    port = await gateway.start()
    # What start-up made (modules, the SDK's types, the definitions) lives as long as the process:
    # frozen out of the collector's sight, a full collection no longer walks it in the middle of a
    # request (the p99 of `tools/call` under load: 45 ms before, 7 ms after; bench/README.md).
    gc.collect()
    gc.freeze()
    if on_ready is not None:
        on_ready(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    await stop.wait()
    grace = gateway.settings.shutdown_grace
    logger.info("shutting down (in-flight calls get %.1f s)", grace)
    _exit_deadline(grace + STOP_MARGIN + EXIT_DEADLINE_MARGIN)
    await gateway.stop(grace)


def _exit_deadline(seconds: float) -> None:
    """A last resort: whatever is left (a stuck thread, a library's exit hook) cannot keep us alive."""

    def expire() -> None:
        logger.error("still running %.0f s after the stop began; exiting", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
