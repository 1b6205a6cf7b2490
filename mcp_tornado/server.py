"""`Gateway`: the running process: registry, watcher, session reaper, HTTP server, and their order.

`start()` loads `servers.d/`, starts watching it, starts the reaper (`PeriodicCallback`) and
listens; `stop()` undoes it in reverse: stop listening, stop the reaper, stop watching, end
every session, stop every server.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable

import tornado.httpserver
import tornado.ioloop
import tornado.netutil

from mcp_tornado.app import make_app
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.hosting.watcher import ServersWatcher
from mcp_tornado.settings import Settings

logger = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ServerRegistry(settings)
        self.app = make_app(settings, self.registry)
        self._http: tornado.httpserver.HTTPServer | None = None
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
        self._http = tornado.httpserver.HTTPServer(
            self.app, max_body_size=self.settings.max_body_bytes, idle_connection_timeout=3600
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

    async def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
        if self._reaper is not None:
            self._reaper.stop()
        if self._watcher is not None:
            self._watcher.stop()
        await self.registry.stop()
        if self._http is not None:
            await self._http.close_all_connections()
            self._http = None


async def serve_forever(gateway: Gateway, on_ready: Callable[[int], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM, then shut down in order. `on_ready(port)` runs once listening."""
    port = await gateway.start()
    if on_ready is not None:
        on_ready(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutting down")
    await gateway.stop()
