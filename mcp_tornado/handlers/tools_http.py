"""A server's tools as plain HTTP (what mcpo is used for): `GET /{name}/openapi.json` and
`POST /{name}/tools/{tool}`.

The document is OpenAPI 3.1, made from the server's live tool list as the caller may see it
(a tool whose scopes the token lacks is left out, as `tools/list` leaves it out): one
`POST /{name}/tools/{tool}` per tool, whose body is the tool's `inputSchema` and whose 200
answer is its `outputSchema` when it declares one. It is cached per server and scope set,
keyed on the tool list: rebuilt only when the server says its tools changed
(`notifications/tools/list_changed`), when its definition is reloaded, or when an upstream
came back as a new process or session (it may serve other tools now).

A call takes the arguments as a JSON object (an empty body is `{}`), checks them against the
input schema (400 naming the field), and runs the tool through the hosted server the way a
2026-07-28 request runs: no session, the token checked on every request, the same caps, rate
limits and readiness (`HostedServer.serve_stateless`). The answer is the tool's result as JSON:

  - its `structuredContent` when it has one;
  - else, when every content block is text, the texts joined with newlines, as a JSON string;
  - else the list of content blocks as MCP gives them.

A result with `isError` is 422 `{"error": {"code": 422, "message": <its text>, "content": [...]}}`,
as is one that asks for input (elicitation, sampling) a plain HTTP caller cannot give.
Other errors are `{"error": {"code", "message", "field"?}}`: 400 (not a JSON object, or not
what the input schema asks), 401/403 (the token, as on `/{name}/mcp`), 404 (no such server or
tool), 413, 415, 429, 502 (the backend failed), 503 (it is down), 504 (it did not answer in time).

Long because both routes go one way through the hosted server (the request's envelope, the
answer mapped to HTTP statuses, the cached tool list they both read); the document's shape
alone lives apart, in tools_document.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import weakref
from collections.abc import Mapping
from typing import Any

import anyio
import jsonschema
import jsonschema.exceptions
import referencing.exceptions
import tornado.web
from mcp.shared.inbound import encode_header_value, mcp_param_headers, x_mcp_header_map
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION_META_KEY,
    REQUEST_TIMEOUT,
    JSONRPCRequest,
)
from mcp_types.version import LATEST_MODERN_VERSION

from mcp_tornado import __version__, auth
from mcp_tornado.errors import (
    BadGateway,
    BadRequest,
    Forbidden,
    GatewayError,
    GatewayTimeout,
    NotFound,
    UnsupportedMediaType,
)
from mcp_tornado.handlers.base import CORS_MAX_AGE, BaseHandler
from mcp_tornado.handlers.tools_document import document
from mcp_tornado.hosting.hosted import HostedServer
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings
from mcp_tornado.transport import jsonrpc, stateless

logger = logging.getLogger(__name__)

CLIENT_INFO = {"name": "mcp-tornado-http", "version": __version__}
# Pages of tools/list followed for one document; a server listing more is cut there.
MAX_PAGES = 100
# Scope sets whose documents a server keeps; callers carry a handful, past this the cache is dropped.
MAX_SCOPE_SETS = 64
# Seconds the management API waits for a backend's tool list before showing what it knew.
ADMIN_LIST_TIMEOUT = 5.0
# How much of a failing argument's description a 400 quotes.
MAX_PROBLEM = 300


@dataclasses.dataclass
class Catalog:
    """One scope set's view of a server's tools, and the document made from it."""

    server: Any  # the backend's SDK server it was listed from (an upstream's is new after a restart)
    generation: int  # `HostedServer.tools_generation` when it was listed
    tools: dict[str, dict[str, Any]]
    document: dict[str, Any]
    validators: dict[str, jsonschema.protocols.Validator | None] = dataclasses.field(default_factory=dict)
    header_maps: dict[str, dict[tuple[str, ...], str]] = dataclasses.field(default_factory=dict)

    def header_map(self, name: str) -> dict[tuple[str, ...], str]:
        """The arguments the tool's input schema mirrors into `Mcp-Param-*` headers (2026-07-28)."""
        if name not in self.header_maps:
            self.header_maps[name] = x_mcp_header_map(self.tools[name].get("inputSchema"))
        return self.header_maps[name]

    def validator(self, name: str) -> jsonschema.protocols.Validator | None:
        """The tool's input schema, compiled once (None when the schema itself is not valid:
        the server then judges the arguments alone)."""
        if name not in self.validators:
            schema = self.tools[name].get("inputSchema")
            try:
                cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
                cls.check_schema(schema)
                self.validators[name] = cls(schema)
            except (jsonschema.exceptions.SchemaError, TypeError, ValueError):
                self.validators[name] = None
        return self.validators[name]


View = tuple[frozenset[str], str | None]  # a caller's scopes and api key: what it may see
_catalogs: weakref.WeakKeyDictionary[HostedServer, dict[View, Catalog]] = weakref.WeakKeyDictionary()


class _Capture:
    """The `Sink` of a stateless reply that went SSE (progress, logs): keeps the last message,
    which is the answer; plain HTTP has nowhere to send the rest."""

    def __init__(self) -> None:
        self.last: bytes | None = None
        self.open = True

    def write_frame(self, chunk: bytes, *, replay: bool = False) -> bool:
        for line in chunk.split(b"\n"):
            if line.startswith(b"data: "):
                self.last = line[6:]
        return True

    def end(self) -> None:
        self.open = False


async def request(
    hosted: HostedServer,
    principal: auth.Principal,
    method: str,
    params: Mapping[str, Any],
    address: str | None,
    extra_headers: list[tuple[str, str]] | None = None,
    *,
    trusted: bool = False,
) -> dict[str, Any]:
    """Serve one request on `hosted` without a session (its 2026-07-28 path): the result, or a
    `GatewayError` with the status a plain HTTP caller should see. `trusted`: the gateway asks
    for itself (the management API), straight to the backend, past the token checks and caps."""
    envelope = {
        PROTOCOL_VERSION_META_KEY: LATEST_MODERN_VERSION,
        CLIENT_CAPABILITIES_META_KEY: {},
        CLIENT_INFO_META_KEY: CLIENT_INFO,
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": envelope}}
    headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", LATEST_MODERN_VERSION),
        ("Mcp-Method", method),
        *(extra_headers or []),
    ]
    capture = _Capture()
    try:
        if trusted:
            typed = JSONRPCRequest.model_validate(body)
            answer = await stateless.serve(
                hosted.backend, hosted.name, principal, typed, body, headers, lambda: capture
            )
        else:
            answer = await hosted.serve_stateless(principal, jsonrpc.dumps(body), headers, lambda: capture, address)
    except GatewayError:
        raise
    except TimeoutError:
        raise GatewayTimeout(f"{hosted.name} did not answer in time") from None
    except Exception:
        logger.warning("%s: %s over plain HTTP failed", hosted.name, method, exc_info=True)
        raise BadGateway(f"{hosted.name} failed to answer") from None
    data = answer.body if answer is not None else capture.last
    try:
        message = json.loads(data) if data else None
    except ValueError:
        message = None
    if not isinstance(message, dict):
        raise BadGateway(f"{hosted.name} gave no answer")
    error = message.get("error")
    if isinstance(error, dict):
        raise _error_of(hosted.name, method, error)
    result = message.get("result")
    if not isinstance(result, dict):
        raise BadGateway(f"{hosted.name} gave no result")
    return result


def _error_of(server: str, method: str, error: Mapping[str, Any]) -> GatewayError:
    """The HTTP error a JSON-RPC error of the backend becomes."""
    code, message = error.get("code"), str(error.get("message", ""))[:MAX_PROBLEM]
    if code == METHOD_NOT_FOUND:
        return NotFound(f"{server} serves no tools" if method.startswith("tools/") else message)
    if code == INVALID_PARAMS and message.lower().startswith("unknown tool"):
        return NotFound(message)
    if code == INVALID_PARAMS:
        return BadRequest(message, field="body")
    if code == REQUEST_TIMEOUT:
        return GatewayTimeout(message or f"{server} did not answer in time")
    return BadGateway(message or f"{server} failed")


async def catalog(hosted: HostedServer, principal: auth.Principal, address: str | None) -> Catalog:
    """The tools `principal` may see on `hosted`, and their document: cached until they change."""
    views = _catalogs.setdefault(hosted, {})
    # By scopes and api key: both decide what a caller sees (a composed server's members with keys).
    view = (principal.scopes, principal.api_key)
    cached = views.get(view)
    if cached is not None and cached.generation == hosted.tools_generation and cached.server is hosted.backend.server:
        return cached
    generation = hosted.tools_generation  # a change while listing makes the next caller list again
    tools = await list_tools(hosted, principal, address)
    built = Catalog(hosted.backend.server, generation, tools, document(hosted, tools))
    if len(views) >= MAX_SCOPE_SETS:
        views.clear()
    views[view] = built
    return built


async def list_tools(
    hosted: HostedServer, principal: auth.Principal, address: str | None, *, trusted: bool = False
) -> dict[str, dict[str, Any]]:
    """Every tool `principal` may see on `hosted`, by name, every page of `tools/list` followed."""
    tools: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {}
    for _ in range(MAX_PAGES):
        result = await request(hosted, principal, "tools/list", params, address, trusted=trusted)
        listed = result.get("tools")
        for tool in listed if isinstance(listed, list) else []:
            if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                tools.setdefault(tool["name"], tool)
        cursor = result.get("nextCursor")
        if not isinstance(cursor, str) or not cursor:
            break
        params = {"cursor": cursor}
    return tools


async def served_tools(hosted: HostedServer) -> list[str] | None:
    """The names of the tools `hosted`'s backend serves now, for the management API; None when
    it cannot say (not running: a lazy child is not started for it; or no answer in time)."""
    if hosted.describe().get("state") != "running":
        return None
    try:
        with anyio.fail_after(ADMIN_LIST_TIMEOUT):
            return list(await list_tools(hosted, auth.anonymous(hosted.name), None, trusted=True))
    except (GatewayError, TimeoutError):
        return None


def problem_with(validator: jsonschema.protocols.Validator, arguments: Any) -> BadRequest | None:
    """A 400 naming the first argument the input schema refuses, or None (also when the schema
    cannot be applied, e.g. a `$ref` to nowhere: the server then judges the arguments alone)."""
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    except referencing.exceptions.Unresolvable:
        return None
    if error is None:
        return None
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        path += [str(missing[0])] if missing else []
    field = ".".join(path) or "body"
    message = error.message if len(error.message) <= MAX_PROBLEM else error.message[:MAX_PROBLEM] + "..."
    return BadRequest(f"{field}: {message}", field=field)


def answer_of(result: Mapping[str, Any]) -> Any:
    """What a plain HTTP caller gets for a tool's result (see the module docstring)."""
    if "structuredContent" in result:
        return result["structuredContent"]
    content = result.get("content")
    blocks = content if isinstance(content, list) else []
    if all(isinstance(b, dict) and b.get("type") == "text" for b in blocks):
        return "\n".join(str(b.get("text", "")) for b in blocks)
    return blocks


def _text_of(result: Mapping[str, Any]) -> str:
    content = result.get("content")
    texts = [b.get("text") for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    return "\n".join(t for t in texts if isinstance(t, str)) or "the tool reported an error"


# -- HTTP ---------------------------------------------------------------------------------------


class _ToolsHandler(BaseHandler):
    allowed = "GET"

    def initialize(self, registry: ServerRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings_ = settings

    def set_default_headers(self) -> None:
        super().set_default_headers()
        if self.request.method not in (self.allowed, "OPTIONS"):
            self.set_header("Allow", self.allowed)

    async def options(self, *args: Any) -> None:
        """A CORS preflight (an Origin the check refused is a 403 by now), or a plain OPTIONS:
        the methods of this route only."""
        methods = f"{self.allowed}, OPTIONS"
        if self.request.headers.get("Origin") is not None:
            if self._cors_origin is None:
                raise Forbidden("cross-origin requests are not enabled on this server")
            self.set_header("Access-Control-Allow-Methods", methods)
            self.set_header("Access-Control-Allow-Headers", ", ".join(self._allowed_request_headers()))
            self.set_header("Access-Control-Max-Age", str(CORS_MAX_AGE))
        self.set_header("Allow", methods)
        self.set_status(204)
        self.finish()

    def _principal(self, hosted: HostedServer) -> auth.Principal:
        """Who calls: the Bearer token for this server (none on an `auth: none` server), checked as
        a 2026-07-28 request's is, on every request."""
        principal = hosted.principal_for(auth.bearer_token(self.request.headers.get("Authorization")))
        hosted.authorize(principal)
        return principal


class ToolsDocumentHandler(_ToolsHandler):
    """`GET /{name}/openapi.json`: the server's tools, as the token may see them."""

    async def prepare(self) -> None:
        await self.check_host_and_origin()

    async def get(self, name: str) -> None:
        hosted = self.registry.require(name)
        address = self.request.remote_ip
        hosted.limit_address(address)
        found = await catalog(hosted, self._principal(hosted), address)
        self.write_json(found.document)


@tornado.web.stream_request_body  # a body over MCP_MAX_BODY_BYTES is refused with 413, however it is sent
class ToolCallHandler(_ToolsHandler):
    """`POST /{name}/tools/{tool}`: call one tool with a JSON object of arguments."""

    allowed = "POST"
    _scope: anyio.CancelScope | None = None
    _gone = False

    async def prepare(self) -> None:
        await self.check_host_and_origin()
        if self.request.method == "POST":
            self.start_body(self.settings_.max_body_bytes)

    async def post(self, name: str, tool: str) -> None:
        hosted = self.registry.require(name)
        address = self.request.remote_ip
        hosted.limit_address(address)
        content_type = self.request.headers.get("Content-Type")
        if content_type is not None and content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise UnsupportedMediaType("Content-Type must be application/json")
        body = self.streamed_body()  # 413 over the limit, before anything else is judged
        principal = self._principal(hosted)
        arguments = self._arguments(body)
        found = await catalog(hosted, principal, address)
        listed = found.tools.get(tool)
        if listed is None:
            hidden = JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/call", params={"name": tool})
            hosted.check_tools(principal, [hidden])  # 403 for a tool the token lacks the scopes of
            raise NotFound(f"{name} has no tool {tool!r}")
        validator = found.validator(tool)
        if validator is not None and (problem := problem_with(validator, arguments)) is not None:
            raise problem
        headers = [("Mcp-Name", encode_header_value(tool))]
        headers += list(mcp_param_headers(found.header_map(tool), arguments).items())
        params = {"name": tool, "arguments": arguments}
        result: dict[str, Any] | None = None
        with anyio.CancelScope() as self._scope:  # the caller hanging up cancels the call
            result = await request(hosted, principal, "tools/call", params, address, headers)
        if result is None or self._gone:
            return
        if result.get("isError") or result.get("resultType") == "input_required":
            message = _text_of(result) if result.get("isError") else "the tool asks for input; call it over MCP"
            content = result.get("content") if isinstance(result.get("content"), list) else []
            self.write_json({"error": {"code": 422, "message": message, "content": content}}, status=422)
            return
        self.write_json(answer_of(result))

    def _arguments(self, body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            arguments = jsonrpc.loads(body)
        except BadRequest as exc:
            raise BadRequest(f"body: not valid JSON ({exc.message})", field="body") from None
        if not isinstance(arguments, dict):
            raise BadRequest("body: must be a JSON object of the tool's arguments", field="body")
        return arguments

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._gone = True
        if self._scope is not None:
            self._scope.cancel()
