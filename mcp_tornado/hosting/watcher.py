"""`ServersWatcher`: follows `servers.d/` with a watchdog observer and applies each file's change.

Events arrive on watchdog's thread and cross to the IOLoop with `add_callback`, the one
IOLoop method that is safe to call from another thread. They are debounced per file: a
file whose writer closed it (or renamed it into place) is applied after `SETTLE_SECONDS`;
a file that is only being modified waits `WRITING_SECONDS` of quiet, so a half-written file
is not loaded while its writer is still at it. `*.py` changes reload the servers whose
handlers come from that module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import tornado.ioloop
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from mcp_tornado.hosting.registry import ServerRegistry, is_definition

logger = logging.getLogger(__name__)

# A closed or renamed-into-place file is complete: apply it almost at once.
SETTLE_SECONDS = 0.02
# A file that is only being modified may be mid-write: wait for this much quiet (or its close).
WRITING_SECONDS = 0.5


class ServersWatcher(FileSystemEventHandler):
    def __init__(self, registry: ServerRegistry, loop: tornado.ioloop.IOLoop) -> None:
        self._registry = registry
        self._loop = loop
        self._timers: dict[Path, object] = {}
        self._observer: Any = None

    def start(self) -> None:
        directory = self._registry.directory
        directory.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(self, str(directory), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        for timer in self._timers.values():
            self._loop.remove_timeout(timer)
        self._timers.clear()

    # -- on watchdog's thread ----------------------------------------------------------------

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write", "attrib"):
            return
        settled = event.event_type in ("closed", "moved", "deleted")
        paths = [event.src_path] + ([event.dest_path] if event.event_type == "moved" else [])
        for raw in paths:
            path = Path(raw if isinstance(raw, str) else raw.decode())
            self._loop.add_callback(self._schedule, path, SETTLE_SECONDS if settled else WRITING_SECONDS)

    # -- on the IOLoop -----------------------------------------------------------------------

    def _schedule(self, path: Path, delay: float) -> None:
        timer = self._timers.pop(path, None)
        if timer is not None:
            self._loop.remove_timeout(timer)
        self._timers[path] = self._loop.call_later(delay, self._apply, path)

    async def _apply(self, path: Path) -> None:
        self._timers.pop(path, None)
        try:
            if path.suffix == ".py":
                await self._registry.reload_modules(path.stem)
            elif is_definition(path):
                if path.exists():  # a FIFO or a device is loaded only to be refused, with its problem shown
                    await self._registry.load_file(path)
                else:
                    await self._registry.remove_file(path)
        except Exception:  # a bug here must not stop the watcher from applying later changes
            logger.exception("applying %s failed", path)
