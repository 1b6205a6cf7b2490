"""`ConsoleFeed`: what the console's SSE streams (`GET /console/events`) are told, and when.

There are two views. The public one is what `/health` shows (each server's state, backend kind
and session count, the gateway's status, how many definitions have problems) and never a
detail; the admin one adds, per server, its tools, restarts, last error, the last lines of a
child's stderr and whether it needs a token, and the failing definitions with their problems.

One sampler serves every stream: while at least one console is open it takes a snapshot of
each view someone watches every `interval` seconds and sends the streams of that view only what
changed (`diff`: whole server entries, `null` for one that is gone, and the gateway's part),
encoded once for all of them. Nothing runs while nobody watches, and the backends and the
hot path know nothing of it: state changes are seen by looking, never announced. The streams
are capped per view (`max_streams`: 503 past it), so anonymous pages cannot crowd out admins.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import tornado.ioloop

from mcp_tornado.errors import Unavailable
from mcp_tornado.handlers.health import status
from mcp_tornado.hosting.registry import ServerRegistry

# Seconds between two looks: a change reaches the page within this, and never more often.
INTERVAL = 0.25
# Open console streams per view (public, admin).
MAX_STREAMS = 16

Send = Callable[[bytes], bool]
"""Queues one SSE frame on a stream; False once that stream is over."""


def snapshot(registry: ServerRegistry, *, admin: bool) -> dict[str, Any]:
    """The console's state as one view sees it: `{"admin", "gateway", "servers": {name: entry}}`."""
    health = status(registry)
    gateway: dict[str, Any] = {key: health[key] for key in ("status", "version", "problems", "worker")}
    if not admin:
        servers = {name: {"name": name, "route": f"/{name}/mcp", **entry} for name, entry in health["servers"].items()}
        return {"admin": False, "gateway": gateway, "servers": servers}
    servers = {}
    for hosted in sorted(registry, key=lambda h: h.name):
        described = hosted.describe()
        servers[hosted.name] = {
            "name": hosted.name,
            "route": f"/{hosted.name}/mcp",
            "kind": described["kind"],
            "state": described["state"],
            "sessions": described["sessions"],
            "title": described.get("title"),
            "description": described.get("description"),
            "source": described.get("source"),
            "tools": described.get("tools", []),
            "restarts": described.get("restarts", 0),
            "processes": described.get("processes"),
            "abandoned_threads": described.get("abandoned_threads", 0),
            "last_error": registry.problem_of(hosted) or described.get("last_error"),
            "stderr": described.get("stderr", []),
            "auth": "none" if hosted.spec.public else "jwt",
            "api_key": bool(hosted.spec.api_keys),
        }
    live = {hosted.spec.source for hosted in registry}
    gateway["failing"] = [
        {"source": source, "problem": problem}
        for source, problem in sorted(registry.problems.items())
        if source not in live
    ]
    return {"admin": True, "gateway": gateway, "servers": servers}


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """What changed from `old` to `new`: the gateway's part when it changed, and each server entry
    that is new or changed (whole), `None` for each one gone. None when nothing changed."""
    changes: dict[str, Any] = {}
    if old["gateway"] != new["gateway"]:
        changes["gateway"] = new["gateway"]
    servers: dict[str, Any] = {
        name: entry for name, entry in new["servers"].items() if old["servers"].get(name) != entry
    }
    servers.update({name: None for name in old["servers"] if name not in new["servers"]})
    if servers:
        changes["servers"] = servers
    return changes or None


def frame(event: str, data: Any, *, retry_ms: int | None = None) -> bytes:
    """One SSE event; the JSON is on one line, so it is one `data:` field."""
    retry = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    return f"{retry}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class ConsoleFeed:
    def __init__(self, registry: ServerRegistry, *, interval: float = INTERVAL, max_streams: int = MAX_STREAMS) -> None:
        self.registry = registry
        self.interval = interval
        self.max_streams = max_streams
        self._streams: dict[bool, dict[Send, None]] = {False: {}, True: {}}  # by view: admin or not
        self._last: dict[bool, dict[str, Any]] = {}  # the snapshot each view's streams are at
        self._timer: tornado.ioloop.PeriodicCallback | None = None

    def streams(self, *, admin: bool) -> int:
        return len(self._streams[admin])

    def subscribe(self, send: Send, *, admin: bool) -> dict[str, Any]:
        """Add a stream; returns the snapshot its diffs will start from. Raises `Unavailable`
        (503) when its view already has `max_streams` streams."""
        streams = self._streams[admin]
        if len(streams) >= self.max_streams:
            raise Unavailable(f"{self.max_streams} consoles are open; try again later", retry_after=10)
        self._sample(admin)  # the others catch up first, so the newcomer starts where they are
        streams[send] = None
        if self._timer is None:
            self._timer = tornado.ioloop.PeriodicCallback(self._tick, self.interval * 1000)
            self._timer.start()
        return self._last[admin]

    def unsubscribe(self, send: Send) -> None:
        for admin, streams in self._streams.items():
            if streams.pop(send, 0) is None and not streams:
                self._last.pop(admin, None)
        if self._timer is not None and not any(self._streams.values()):
            self._timer.stop()
            self._timer = None

    def _tick(self) -> None:
        for admin, streams in self._streams.items():
            if streams:
                self._sample(admin)

    def _sample(self, admin: bool) -> None:
        new = snapshot(self.registry, admin=admin)
        old, self._last[admin] = self._last.get(admin), new
        changes = diff(old, new) if old is not None else None
        if changes is None:
            return
        chunk = frame("diff", changes)
        for send in list(self._streams[admin]):
            if not send(chunk):
                self.unsubscribe(send)
