"""`GET /health`: what runs, how it is, no secrets (the console at `/` shows the same to people:
`handlers/console.py`).

It is public, so it shows no detail: no file path, no exception text, no definition
problem beyond how many there are. Those are in the log and in the management API (`GET /servers`).
"""

from __future__ import annotations

import os
import time
from typing import Any

from mcp_tornado import __version__
from mcp_tornado.backends.state import BackendState
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.hosting.registry import ServerRegistry

_STARTED = time.monotonic()


def status(registry: ServerRegistry) -> dict[str, Any]:
    servers = {}
    healthy = True
    for hosted in registry:
        info = hosted.backend.describe()
        entry = servers[hosted.name] = {"state": info["state"], "kind": info["kind"], "sessions": len(hosted.sessions)}
        # A lazy server not started yet is fine; one that is down is not.
        healthy = healthy and not BackendState(info["state"]).down
        if stuck := info.get("abandoned_threads"):
            entry["abandoned_threads"] = stuck
            # At its cap a server refuses every sync call until some stuck thread returns.
            healthy = healthy and stuck < info["max_abandoned_threads"]
    return {
        "status": "ok" if healthy else "degraded",
        "version": __version__,
        "uptime_seconds": round(time.monotonic() - _STARTED, 1),
        "servers": servers,
        "problems": len(registry.problems),
        # Which process answered (`serve --workers N` runs N behind one port).
        "worker": {"id": registry.settings.worker_id, "pid": os.getpid()},
    }


class HealthHandler(BaseHandler):
    def initialize(self, registry: ServerRegistry) -> None:
        self.registry = registry

    def get(self) -> None:
        self.write_json(status(self.registry))
