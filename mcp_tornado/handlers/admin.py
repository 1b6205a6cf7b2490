"""`/servers`, `/servers/{name}` and `/tokens`: the management API (admin JWT), over the registry and store.

A body is the YAML schema as JSON. It is validated completely (schema, `${VAR}`s, the
management API's policy before any import, then handler imports) before anything is
written; then it is written atomically to the file that defines that route name (or
`servers.d/{name}.yaml` for a new one) and loaded, so the server is live before the response
and survives a restart. A name and a file that disagree (`foo.yaml` says `name: bar`) are a
409: REST never acts on a server other than the one its URL names. Every change is logged
(INFO) with who made it: the admin token's `sub`, else "admin".
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from mcp_tornado import auth
from mcp_tornado import definitions as specs
from mcp_tornado.errors import BadRequest, Conflict, DefinitionError, MethodNotAllowed, NotFound, Unauthorized
from mcp_tornado.handlers import tools_http
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.hosting import store
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings

logger = logging.getLogger(__name__)

# A minted token's lifetime when the request names none (seconds), within MCP_TOKEN_MAX_TTL.
DEFAULT_TOKEN_TTL = 3600
TOKEN_FIELDS = frozenset({"server", "apiKey", "userId", "ttl"})


class AdminHandler(BaseHandler):
    cors = False  # admin tokens do not belong in web pages: the management API stays closed to browsers
    methods: tuple[str, ...] = ("GET",)

    def initialize(self, registry: ServerRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings_ = settings

    def set_default_headers(self) -> None:
        super().set_default_headers()
        if self.request.method not in self.methods:  # a 405, Tornado's own included, says what is allowed
            self.set_header("Allow", ", ".join(self.methods))

    async def prepare(self) -> None:
        if self.request.method not in self.methods:
            raise MethodNotAllowed(f"{self.request.method} is not allowed here", allow=", ".join(self.methods))
        await self.check_host_and_origin()
        token = auth.bearer_token(self.request.headers.get("Authorization"))
        if token is None:
            raise Unauthorized("the management API needs an admin Bearer token", error="invalid_request")
        self.principal = self.registry.verify(token)
        auth.require_admin(self.principal)

    @property
    def who(self) -> str:
        """Who is making a change, for the log: the admin token's `sub`, else "admin"."""
        return self.principal.subject or "admin"

    def describe(self, hosted: HostedServer) -> dict[str, Any]:
        described = hosted.describe()
        return {**described, "last_error": self.registry.problem_of(hosted) or described["last_error"]}

    def read_body(self) -> dict[str, Any]:
        try:
            document = json.loads(self.request.body or b"null")
        except (ValueError, RecursionError):
            raise BadRequest("body: not valid JSON", field="body") from None
        if not isinstance(document, dict):
            raise BadRequest("body: must be a JSON object", field="body")
        try:
            json.dumps(document, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate (`"\ud800"`) is valid JSON but no text a file can hold
            raise BadRequest("body: a string is not valid Unicode (a lone surrogate)", field="body") from None
        return document


class ServersHandler(AdminHandler):
    def get(self) -> None:
        servers = [self.describe(h) for h in sorted(self.registry, key=lambda h: h.name)]
        live = {h.spec.source for h in self.registry}
        failing = [{"source": s, "last_error": p} for s, p in sorted(self.registry.problems.items()) if s not in live]
        self.write_json({"servers": servers, "failing": failing})


class ServerHandler(AdminHandler):
    methods = ("GET", "POST", "PUT", "DELETE")

    def _name(self, name: str) -> str:
        if not specs.NAME_PATTERN.fullmatch(name):
            raise BadRequest("name: must match [A-Za-z0-9][A-Za-z0-9_-]{0,63}", field="name")
        return name

    async def get(self, name: str) -> None:
        hosted = self.registry.get(self._name(name))
        if hosted is None:
            raise NotFound(f"no server {name!r}")
        described = self.describe(hosted)
        if described.get("kind") != "inprocess":  # its tools are not in its file: ask what it serves
            served = await tools_http.served_tools(hosted)
            if served is not None:
                described["tools"] = served
        if described.get("kind") in ("command", "url"):
            described["upstream"] = _upstream_identity(hosted)
        self.write_json(described)

    async def post(self, name: str) -> None:
        path = self._file_for(self._name(name))
        if path is not None or name in self.registry:
            raise Conflict(f"server {name!r} already exists; PUT replaces it")
        await self._register(name, self.registry.directory / f"{name}.yaml", status=201)

    async def put(self, name: str) -> None:
        path = self._file_for(self._name(name))
        status = 201 if path is None else 200
        await self._register(name, path or self.registry.directory / f"{name}.yaml", status=status)

    async def delete(self, name: str) -> None:
        path = self._file_for(self._name(name))
        if path is None:
            raise NotFound(f"no server {name!r}")
        store.delete_definition(path)
        await self.registry.remove_file(path)
        logger.info("management API: %s deleted server %r (file %s)", self.who, name, path)
        self.set_status(204)
        self.finish()

    def _file_for(self, name: str) -> Path | None:
        """The file that defines `name`, or None when none does. A file that REST would touch for
        `name` (`servers.d/{name}.yaml`) but that defines another server is a 409 naming both."""
        path = self.registry.file_of(name)
        if path is not None:
            return path
        for candidate in (self.registry.directory / f"{name}{suffix}" for suffix in (".yaml", ".yml")):
            if candidate.exists():
                other = self.registry.declared_name(candidate)
                raise Conflict(
                    f"{candidate.name} defines server {other!r}, not {name!r}; use /servers/{other} for it",
                    field="name",
                )
        return None

    async def _register(self, name: str, target: Path, *, status: int) -> None:
        document = self.read_body()
        if document.get("name", name) != name:
            raise Conflict(f"name: the body names {document['name']!r}, the URL {name!r}", field="name")
        # The name is written out: whatever the file is called, it defines this route.
        document = {"name": name, **{key: value for key, value in document.items() if key != "name"}}
        try:
            self.registry.check_registration(document, source=str(target), name=name)
        except DefinitionError as exc:
            raise BadRequest(exc.problem, field=exc.field or "body") from None
        store.write_definition(target, document)
        hosted = await self.registry.load_file(target)
        if hosted is None:  # changed under us between the check and the load
            raise BadRequest(self.registry.problems.get(str(target), "definition refused"), field="body")
        action = "created" if status == 201 else "replaced"
        logger.info("management API: %s %s server %r (file %s)", self.who, action, name, target)
        self.set_header("Location", f"/servers/{name}")
        self.write_json(self.describe(hosted), status=status)


def _upstream_identity(hosted: HostedServer) -> dict[str, Any] | None:
    """A child's or remote upstream's own name, title and version, once it has said them."""
    backend = hosted.backend
    info = backend.init_options
    if info is backend.default_init_options:
        return None  # not connected yet
    return {"name": info.server_name, "title": info.title, "version": info.server_version}


class TokensHandler(AdminHandler):
    """`POST /tokens`: a token for one server, `{"server", "apiKey"?, "userId"?, "ttl"?}` ->
    `{"token", "expires_at"}`; the lifetime is capped by `MCP_TOKEN_MAX_TTL`."""

    methods = ("POST",)

    def post(self) -> None:
        body = self.read_body()
        for key in body:
            if key not in TOKEN_FIELDS:
                raise BadRequest(f"{key}: unknown field (expected {', '.join(sorted(TOKEN_FIELDS))})", field=key)
        server = body.get("server")
        if not isinstance(server, str) or not specs.NAME_PATTERN.fullmatch(server):
            raise BadRequest("server: a server name is required", field="server")
        for key in ("apiKey", "userId"):
            if key in body and not (isinstance(body[key], str) and body[key]):
                raise BadRequest(f"{key}: must be a non-empty string", field=key)
        ttl = body.get("ttl", DEFAULT_TOKEN_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl < 1:
            raise BadRequest("ttl: must be a number of seconds, at least 1", field="ttl")
        if server not in self.registry:
            raise NotFound(f"no server {server!r}")
        ttl = int(min(ttl, self.settings_.token_max_ttl, self.settings_.jwt_max_lifetime))
        issued = int(time.time())
        token = auth.mint(
            self.settings_.jwt_secret or "",
            server_name=server,
            api_key=body.get("apiKey"),
            user_id=body.get("userId"),
            ttl=ttl,
            now=issued,
            issuer=self.settings_.jwt_issuer,
            audience=self.settings_.jwt_audience,
        )
        logger.info("management API: %s minted a token for server %r (ttl %d s)", self.who, server, ttl)
        self.write_json({"token": token, "expires_at": issued + ttl})
