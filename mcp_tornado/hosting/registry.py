"""`ServerRegistry`: route name -> `HostedServer`, following the files of `servers.d/`.

Every change runs on the IOLoop, one at a time. A definition is loaded and validated
completely (parse, schema, handler imports) before it replaces anything; a failure leaves
the last good version serving and is remembered in `problems` (`file:line: problem`) until
the file is fixed. Each file is applied on its own: changing one never touches the others.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

from mcp_tornado import auth
from mcp_tornado import definitions as specs
from mcp_tornado.backends.base import Backend
from mcp_tornado.backends.inprocess import InProcessBackend
from mcp_tornado.backends.remote import RemoteBackend
from mcp_tornado.backends.sdk_app import SdkAppBackend
from mcp_tornado.backends.stdio import StdioBackend
from mcp_tornado.errors import DefinitionError
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.settings import Settings

logger = logging.getLogger(__name__)

DEFINITION_SUFFIXES = (".yaml", ".yml")


def is_definition(path: Path) -> bool:
    return path.suffix in DEFINITION_SUFFIXES and not path.name.startswith(".")


class ServerRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = settings.servers_dir
        self._servers: dict[str, HostedServer] = {}
        self._sources: dict[Path, tuple[str, str]] = {}  # file -> (server name, digest of what was loaded)
        self.problems: dict[str, str] = {}  # file -> "file:line: problem"
        self._lock = asyncio.Lock()
        self.verify = functools.partial(auth.verify, secret=settings.jwt_secret or "")

    def get(self, name: str) -> HostedServer | None:
        return self._servers.get(name)

    def __iter__(self) -> Any:
        return iter(list(self._servers.values()))

    def __len__(self) -> int:
        return len(self._servers)

    def __contains__(self, name: object) -> bool:
        return name in self._servers

    def problem_of(self, hosted: HostedServer) -> str | None:
        return self.problems.get(hosted.spec.source)

    def definition_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if is_definition(p))

    async def load_all(self) -> None:
        """Load every definition; one bad file never stops the others."""
        for path in self.definition_files():
            await self.load_file(path)

    async def load_file(self, path: Path, *, force: bool = False) -> HostedServer | None:
        """Apply `path`'s current content. Returns the server it now defines, or None on failure.

        Unchanged content is a no-op unless `force` (a handler module changed under it).
        """
        async with self._lock:
            return await self._load(path, force=force)

    async def _load(self, path: Path, *, force: bool) -> HostedServer | None:
        key = path.resolve()
        source = str(path)
        try:
            data = specs.read_definition(path)  # a regular file of bounded size, never a blocking read
        except DefinitionError as exc:
            self._fail(source, exc)
            return None
        digest = hashlib.sha256(data).hexdigest()
        previous = self._sources.get(key)
        if previous is not None and previous[1] == digest and not force and previous[0] in self._servers:
            return self._servers[previous[0]]
        try:
            spec = specs.parse(data.decode("utf-8"), source=source, default_name=path.stem)
            owner = self._servers.get(spec.name)
            if owner is not None and Path(owner.spec.source).resolve() != key:
                raise DefinitionError(source, 1, f"name: {spec.name!r} is already served from {owner.spec.source}")
            backend = self.build_backend(spec)
        except DefinitionError as exc:
            self._fail(source, exc)
            return None
        except Exception as exc:  # whatever a definition does, it must not stop the gateway
            logger.debug("loading %s failed", source, exc_info=True)
            self._fail(source, DefinitionError(source, None, f"{type(exc).__name__}: {exc}"))
            return None
        self.problems.pop(source, None)
        if previous is not None and previous[0] != spec.name:
            await self._remove(previous[0])  # the file now names another server
        hosted = await self._install(spec, backend)
        self._sources[key] = (spec.name, digest)
        return hosted

    def _fail(self, source: str, exc: DefinitionError) -> None:
        self.problems[source] = str(exc)
        logger.error("%s", exc)

    def build_backend(self, spec: specs.ServerSpec) -> Backend:
        """The backend a spec asks for, with every handler imported. Raises `DefinitionError`."""
        if spec.backend == "inprocess":
            return InProcessBackend(
                spec,
                search_path=self.directory,
                threads=self.settings.handler_threads,
                max_abandoned=self.settings.max_abandoned_threads,
            )
        if spec.backend == "app":
            return SdkAppBackend(spec, search_path=self.directory)
        if spec.backend == "command":
            return StdioBackend(spec, directory=self.directory, environ=self.settings.environ)
        if spec.backend == "url":
            return RemoteBackend(spec, environ=self.settings.environ)
        raise DefinitionError(spec.source, 1, f"backend {spec.backend!r} is not available in this version")

    async def _install(self, spec: specs.ServerSpec, backend: Backend) -> HostedServer:
        hosted = HostedServer(spec, backend, self.settings, self.verify)
        previous = self._servers.get(spec.name)
        old_catalog = await previous.backend.catalog() if previous is not None else None
        await hosted.start()
        if previous is not None:
            await hosted.adopt_sessions(previous)  # live sessions move over: their next request sees the change
        self._servers[spec.name] = hosted
        if previous is not None:
            await previous.backend.stop()
            await hosted.announce_changes(old_catalog)
        logger.info("%s: serving %s (%s)", spec.name, spec.source, backend.kind)
        if spec.public:
            logger.warning("%s: PUBLIC (auth: none): anyone who can reach /%s/mcp may use it", spec.name, spec.name)
        return hosted

    async def remove_file(self, path: Path) -> None:
        """The file is gone: so is the server it defined, and its sessions."""
        async with self._lock:
            self.problems.pop(str(path), None)
            entry = self._sources.pop(path.resolve(), None)
            if entry is not None:
                await self._remove(entry[0])

    async def reload_modules(self, module: str) -> None:
        """A handler module changed: reload every server whose handlers come from it."""
        async with self._lock:
            affected = [h for h in self._servers.values() if module in h.backend.modules]
            if not affected:
                return
            sys.modules.pop(module, None)  # the next import runs the new code
            # Bytecode is keyed by mtime in whole seconds and size: a quick same-size edit would be missed.
            for stale in (self.directory / "__pycache__").glob(f"{module}.*.pyc"):
                stale.unlink(missing_ok=True)
            importlib.invalidate_caches()
            for hosted in affected:
                await self._load(Path(hosted.spec.source), force=True)

    async def remove(self, name: str) -> None:
        async with self._lock:
            await self._remove(name)

    async def _remove(self, name: str) -> None:
        hosted = self._servers.pop(name, None)
        if hosted is not None:
            self._sources = {k: v for k, v in self._sources.items() if v[0] != name}
            await hosted.stop()
            logger.info("%s: removed", name)

    async def drained(self) -> None:
        """Return once no server has a call in flight."""
        await asyncio.gather(*(hosted.drained() for hosted in self))

    async def stop(self) -> None:
        """Remove every server at once (their children stop side by side, not one after another)."""
        async with self._lock:
            servers, self._servers = list(self._servers.values()), {}
            self._sources.clear()
        await asyncio.gather(*(hosted.stop() for hosted in servers), return_exceptions=True)
