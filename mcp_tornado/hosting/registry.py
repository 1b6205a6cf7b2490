"""`ServerRegistry`: route name -> `HostedServer`, loaded from `servers.d/`.

Every change happens on the IOLoop: a definition is loaded and validated completely
(parse, schema, handler imports) before it replaces anything, and a failure leaves the last
good version serving and is remembered (`problems`) so operators can see it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mcp_tornado.backends.base import Backend
from mcp_tornado.backends.inprocess import InProcessBackend
from mcp_tornado.errors import DefinitionError
from mcp_tornado.hosting import spec as specs
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.settings import Settings

logger = logging.getLogger(__name__)

DEFINITION_SUFFIXES = (".yaml", ".yml")


class ServerRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = settings.servers_dir
        self._servers: dict[str, HostedServer] = {}
        self.problems: dict[str, str] = {}  # source file -> "file:line: problem"

    def get(self, name: str) -> HostedServer | None:
        return self._servers.get(name)

    def __iter__(self) -> Any:
        return iter(list(self._servers.values()))

    def __len__(self) -> int:
        return len(self._servers)

    def definition_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(
            p for p in self.directory.iterdir() if p.suffix in DEFINITION_SUFFIXES and not p.name.startswith(".")
        )

    async def load_all(self) -> None:
        """Load every definition; one bad file never stops the others."""
        for path in self.definition_files():
            await self.load_file(path)

    async def load_file(self, path: Path) -> HostedServer | None:
        try:
            spec = specs.load_file(path)
            previous = self._servers.get(spec.name)
            if previous is not None and previous.spec.source != spec.source:
                raise DefinitionError(
                    spec.source, 1, f"name {spec.name!r} is already defined by {previous.spec.source}"
                )
            backend = self.build_backend(spec)
        except DefinitionError as exc:
            self.problems[str(path)] = str(exc)
            logger.error("%s", exc)
            return None
        self.problems.pop(str(path), None)
        return await self.install(spec, backend)

    def build_backend(self, spec: specs.ServerSpec) -> Backend:
        if spec.backend == "inprocess":
            return InProcessBackend(spec, search_path=self.directory, threads=self.settings.handler_threads)
        raise DefinitionError(spec.source, 1, f"backend {spec.backend!r} is not available in this version")

    async def install(self, spec: specs.ServerSpec, backend: Backend) -> HostedServer:
        hosted = HostedServer(spec, backend, self.settings)
        previous = self._servers.get(spec.name)
        await hosted.start()
        if previous is not None:
            # Live sessions move to the new definition: their next request sees it.
            hosted.adopt_sessions(previous)
        self._servers[spec.name] = hosted
        if previous is not None:
            await previous.stop()
        logger.info("%s: serving %s (%s)", spec.name, spec.source, backend.kind)
        return hosted

    async def remove(self, name: str) -> None:
        hosted = self._servers.pop(name, None)
        if hosted is not None:
            await hosted.stop()

    async def stop(self) -> None:
        for hosted in self:
            await self.remove(hosted.name)
