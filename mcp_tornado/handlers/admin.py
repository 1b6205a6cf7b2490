"""`/servers` and `/servers/{name}`: the management API (admin JWT), over the registry and store.

A body is the YAML schema as JSON. It is validated completely (schema, handler imports)
before anything is written; then it is written atomically to `servers.d/{name}.yaml` and
loaded, so the server is live before the response and survives a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp_tornado import auth
from mcp_tornado import definitions as specs
from mcp_tornado.errors import BadRequest, Conflict, DefinitionError, NotFound, Unauthorized
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.hosting import store
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings


class AdminHandler(BaseHandler):
    cors = False  # admin tokens do not belong in web pages: the management API stays closed to browsers

    def initialize(self, registry: ServerRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings_ = settings

    async def prepare(self) -> None:
        await self.check_host_and_origin()
        token = auth.bearer_token(self.request.headers.get("Authorization"))
        if token is None:
            raise Unauthorized("the management API needs an admin Bearer token", error="invalid_request")
        auth.require_admin(auth.verify(token, self.settings_.jwt_secret or ""))

    def describe(self, hosted: HostedServer) -> dict[str, Any]:
        described = hosted.describe()
        return {**described, "last_error": self.registry.problem_of(hosted) or described["last_error"]}


class ServersHandler(AdminHandler):
    def get(self) -> None:
        servers = [self.describe(h) for h in sorted(self.registry, key=lambda h: h.name)]
        live = {h.spec.source for h in self.registry}
        failing = [{"source": s, "last_error": p} for s, p in sorted(self.registry.problems.items()) if s not in live]
        self.write_json({"servers": servers, "failing": failing})


class ServerHandler(AdminHandler):
    def _name(self, name: str) -> str:
        if not specs.NAME_PATTERN.fullmatch(name):
            raise BadRequest("name: must match [A-Za-z0-9][A-Za-z0-9_-]{0,63}", field="name")
        return name

    def get(self, name: str) -> None:
        hosted = self.registry.get(self._name(name))
        if hosted is None:
            raise NotFound(f"no server {name!r}")
        self.write_json(self.describe(hosted))

    async def post(self, name: str) -> None:
        if self.registry.get(self._name(name)) is not None or self._target(name).exists():
            raise Conflict(f"server {name!r} already exists; PUT replaces it")
        await self._register(name, status=201)

    async def put(self, name: str) -> None:
        existed = self.registry.get(self._name(name)) is not None
        await self._register(name, status=200 if existed else 201)

    async def delete(self, name: str) -> None:
        hosted = self.registry.get(self._name(name))
        path = Path(hosted.spec.source) if hosted is not None else self._target(name)
        if hosted is None and not path.exists():
            raise NotFound(f"no server {name!r}")
        store.delete_definition(path)
        await self.registry.remove_file(path)
        self.set_status(204)
        self.finish()

    def _target(self, name: str) -> Path:
        """The file that defines `name`: its current source, else `servers.d/{name}.yaml`."""
        hosted = self.registry.get(name)
        return Path(hosted.spec.source) if hosted is not None else self.registry.directory / f"{name}.yaml"

    async def _register(self, name: str, *, status: int) -> None:
        try:
            document = json.loads(self.request.body or b"null")
        except (ValueError, RecursionError):
            raise BadRequest("body: not valid JSON", field="body") from None
        if not isinstance(document, dict):
            raise BadRequest("body: must be a JSON object (the server definition)", field="body")
        if document.get("name", name) != name:
            raise BadRequest(f"name: {document['name']!r} does not match the URL's {name!r}", field="name")
        target = self._target(name)
        try:
            spec = specs.from_document(document, source=str(target), default_name=name)
            self.registry.build_backend(spec)  # imports every handler: refuse before writing anything
        except DefinitionError as exc:
            raise BadRequest(exc.problem, field=exc.field or "body") from None
        store.write_definition(target, document)
        hosted = await self.registry.load_file(target)
        if hosted is None:  # changed under us between the check and the load
            raise BadRequest(self.registry.problems.get(str(target), "definition refused"), field="body")
        self.set_header("Location", f"/servers/{name}")
        self.write_json(self.describe(hosted), status=status)
