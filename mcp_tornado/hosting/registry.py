"""`ServerRegistry`: route name -> `HostedServer`, following the files of `servers.d/`.

Every change runs on the IOLoop, one at a time. A definition is loaded and validated
completely (parse, schema, handler imports) before it replaces anything; a failure leaves
the last good version serving and is remembered in `problems` (`file:line: problem`) until
the file is fixed. Each file is applied on its own: changing one never touches the others.

The management API goes through here too: `file_of(name)` finds the file that defines a route
name, and `check_registration` validates a REST body as a file would be validated, plus the
management API's policy (`policy.check`), before anything is imported. A problem never quotes
an `api_keys` value, neither in `problems` (the log, the admin view) nor to a REST caller.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import importlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mcp_tornado import auth
from mcp_tornado import definitions as specs
from mcp_tornado.backends.base import Backend
from mcp_tornado.backends.composed import ComposedBackend
from mcp_tornado.backends.inprocess import InProcessBackend
from mcp_tornado.backends.remote import RemoteBackend
from mcp_tornado.backends.sdk_app import SdkAppBackend
from mcp_tornado.backends.stdio import StdioBackend
from mcp_tornado.errors import DefinitionError, NotFound
from mcp_tornado.expansion import Variables
from mcp_tornado.hosting import policy
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.settings import Settings

if TYPE_CHECKING:
    from mcp_tornado.hosting.shared_sessions import SharedSessions

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
        # (server, "applied" | "failed") -> definitions loaded or refused: `/metrics` reads it.
        self.reloads: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = asyncio.Lock()
        # Every token of the gateway is checked here; raises `SettingsError` for bad key settings.
        self.verifier = auth.TokenVerifier.from_settings(settings)
        self.verify = self.verifier.verify
        # The session store every worker and host shares (MCP_REDIS_URL); None: sessions in memory.
        self.shared: SharedSessions | None = None
        if settings.redis_url:  # imported only here: the redis client is 7 MB of a process's memory
            from mcp_tornado.hosting.shared_sessions import SharedSessions

            self.shared = SharedSessions(settings, self.get)

    def get(self, name: str) -> HostedServer | None:
        return self._servers.get(name)

    def require(self, name: str) -> HostedServer:
        """The server a route names; `NotFound` (404) when there is none."""
        hosted = self._servers.get(name)
        if hosted is None:
            raise NotFound(f"unknown server {name!r}")
        return hosted

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
        if self.settings.admin_allow_code:
            logger.warning("MCP_ADMIN_ALLOW_CODE is on: an admin token can run code on this host")
        if self.shared is not None:
            await self.shared.start()
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
            self._fail(source, _without_keys(exc, data))
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
        loaded = self._sources.get(Path(source).resolve())  # the server it serves, else the file's stem
        self.reloads[(loaded[0] if loaded is not None else Path(source).stem, "failed")] += 1
        logger.error("%s", exc)

    def file_of(self, name: str) -> Path | None:
        """The file that defines route `name`: the live server's source, else a definition file
        that names it (one that failed to load, say); None when no file does."""
        hosted = self._servers.get(name)
        if hosted is not None:
            return Path(hosted.spec.source)
        return next((path for path in self.definition_files() if self.declared_name(path) == name), None)

    def declared_name(self, path: Path) -> str:
        """The route name `path` defines, as the file says now (its `name:`, else its stem); what
        it was loaded as when it can no longer be read or parsed."""
        try:
            document = yaml.safe_load(specs.read_definition(path))
        except (DefinitionError, yaml.YAMLError, ValueError):
            loaded = self._sources.get(path.resolve())
            return loaded[0] if loaded is not None else path.stem
        if isinstance(document, dict) and "name" in document:
            return str(document["name"])
        return path.stem

    def check_registration(self, document: Any, *, source: str, name: str) -> specs.ServerSpec:
        """A REST body, validated completely before anything is written: as a file would be, and
        (unless `MCP_ADMIN_ALLOW_CODE`) held to the management API's policy before any import.

        Raises `DefinitionError` for a body that is not a valid definition (400), `Forbidden`
        for one the management API may not register (403).
        """
        try:
            spec = specs.from_document(document, source=source, default_name=name)
        except DefinitionError as exc:
            raise _without_keys(exc, document) from None
        if not self.settings.admin_allow_code:
            policy.check(spec, self.directory)
        try:
            self.build_backend(spec)  # imports every handler, expands every ${VAR}
        except DefinitionError:
            raise
        except Exception as exc:  # as in `_load`: whatever a definition does, it is the body's problem
            raise DefinitionError(source, None, f"{type(exc).__name__}: {exc}") from None
        return spec

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
        if spec.backend == "compose":
            return ComposedBackend(spec, resolve=self._servers.get)  # members by name, as they are now
        variables = Variables(self.settings.environ, self.settings.expand_vars)
        if spec.backend == "command":
            return StdioBackend(spec, directory=self.directory, variables=variables)
        if spec.backend == "url":
            return RemoteBackend(spec, variables=variables)
        raise DefinitionError(spec.source, 1, f"backend {spec.backend!r} is not available in this version")

    async def _install(self, spec: specs.ServerSpec, backend: Backend) -> HostedServer:
        hosted = HostedServer(spec, backend, self.settings, self.verify, self.verifier.revoked, self.shared)
        previous = self._servers.get(spec.name)
        old_catalog = await previous.backend.catalog() if previous is not None else None
        await hosted.start()
        if previous is not None:
            await hosted.adopt_sessions(previous)  # live sessions move over: their next request sees the change
        self._servers[spec.name] = hosted
        self.reloads[(spec.name, "applied")] += 1
        if previous is not None:
            await previous.backend.stop()
            await hosted.announce_changes(old_catalog)
        logger.info("%s: serving %s (%s)", spec.name, spec.source, backend.kind)
        self._members_changed()
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
            self._members_changed()

    def _members_changed(self) -> None:
        """A server came, went or changed: composed servers look at their members now."""
        for hosted in self._servers.values():
            if isinstance(hosted.backend, ComposedBackend):
                hosted.backend.members_changed()

    async def drained(self) -> None:
        """Return once no server has a call in flight."""
        await asyncio.gather(*(hosted.drained() for hosted in self))

    async def stop(self) -> None:
        """Remove every server at once (their children stop side by side, not one after another)."""
        self.verifier.stop()
        async with self._lock:
            servers = list(self._servers.values())
            if self.shared is None:
                self._servers = {}
            self._sources.clear()
        # With a shared store the routes stay while their servers stop: a request that comes on a
        # kept-alive connection meanwhile (a proxy's) is served from the store, not refused.
        await asyncio.gather(*(hosted.stop() for hosted in servers), return_exceptions=True)
        self._servers = {}
        if self.shared is not None:
            await self.shared.stop()


def _without_keys(exc: DefinitionError, document: Any) -> DefinitionError:
    """`exc` without any `api_keys` value in its text: a key is a secret, and a schema error
    would quote it (`'...' is not of type 'array'`, or a whole mapping it was part of).

    `document` is the definition as parsed, or a file's bytes (parsed here only when they
    mention `api_keys`).
    """
    if isinstance(document, bytes):
        if b"api_keys" not in document:
            return exc
        try:
            document = yaml.safe_load(document)
        except (yaml.YAMLError, ValueError):
            return exc  # unparseable: the problem is where parsing stopped, and quotes no value
    keys = document.get("api_keys") if isinstance(document, dict) else None
    if keys is None:
        return exc
    field = exc.field or ""
    if field == "api_keys":
        problem = "api_keys: must be a list of keys, each a non-empty key or sha256: and 64 hex digits (not shown)"
    elif field.startswith("api_keys."):
        problem = f"{field}: not a valid key: a non-empty key, or sha256: and 64 hex digits (the value is not shown)"
    else:
        problem = exc.problem
        for secret in _strings_in(keys):
            problem = problem.replace(repr(secret), "'<redacted>'")
        if problem == exc.problem:
            return exc
    return DefinitionError(exc.path, exc.line, problem, field=exc.field)


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings_in(k), *_strings_in(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings_in(item)]
    return []
