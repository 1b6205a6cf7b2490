"""Backends that are other MCP servers: a stdio child (`command:`) or a remote URL (`url:`).

`UpstreamBackend` exposes the upstream as a lowlevel SDK `Server` whose handlers forward each
request with the `mcp` client, so the transport cannot tell it from an in-process server.
Requests travel over an `UpstreamLink`: one shared by all sessions of the route, or, with
`per_session: true`, one per session (capped by `max_processes`). What the upstream sends
back is routed: progress to the call that asked (the SDK maps progress tokens), its requests
and logs to the calls in flight on that link, list_changed to every session, resource
updates to the sessions that subscribed. `connect()` is the one thing a subclass supplies.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    INTERNAL_ERROR,
    LOG_LEVEL_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    REQUEST_TIMEOUT,
)

from mcp_tornado.backends.base import Backend, quiet_server
from mcp_tornado.backends.curation import curated
from mcp_tornado.backends.link import CONNECT_TIMEOUT, UpstreamLink
from mcp_tornado.backends.link_pool import LinkPool, wait_for
from mcp_tornado.definitions import ServerSpec
from mcp_tornado.request_info import RequestInfo

logger = logging.getLogger(__name__)


class UpstreamBackend(Backend):
    kind = "upstream"
    always_ready = False

    def __init__(self, spec: ServerSpec, *, lazy: bool, per_session: bool = False, max_links: int = 1) -> None:
        self.spec = spec
        self.lazy = lazy
        self.links = LinkPool(
            spec.name, self.connect, self.upstream_notification, per_session=per_session, max_links=max_links
        )
        self._subscribers: dict[str, set[str]] = {}
        self._tool_schemas: dict[str, dict[str, Any]] = {}
        self._built_for: types.InitializeResult | None = None
        super().__init__(self._build_server())

    def connect(self) -> contextlib.AbstractAsyncContextManager[tuple[Any, Any]]:
        """A fresh connection: `(read_stream, write_stream)` for a `ClientSession`."""
        raise NotImplementedError

    @property
    def init_options(self) -> InitializationOptions:
        """The upstream's own identity and capabilities, once a link has learned them."""
        learned = next((link.initialized for link in self.links if link.initialized is not None), None)
        if learned is None:
            return self.default_init_options
        return InitializationOptions(
            server_name=learned.server_info.name,
            server_version=learned.server_info.version,
            title=learned.server_info.title,
            capabilities=learned.capabilities,
            instructions=learned.instructions,
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.links.shared is not None and not self.lazy:
            self.links.shared.supervisor.start()

    async def stop(self) -> None:
        await self.links.stop()

    async def ready(self) -> None:
        """Wait for the shared upstream (starting it if lazy); `Unavailable` (503) while it is down."""
        if self.links.shared is not None:
            await wait_for(self.links.shared, self.spec.name)  # per-session children start with their session

    async def session_opened(self, session_id: str) -> None:
        await self.links.open(session_id)

    async def session_ready(self, session_id: str) -> None:
        link = self.links.of(session_id)
        if link is not None and link is not self.links.shared:
            await wait_for(link, self.spec.name)

    async def session_closed(self, session_id: str) -> None:
        await self.links.close(session_id)
        for subscribers in self._subscribers.values():
            subscribers.discard(session_id)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.links.describe()}

    def _link(self, ctx: ServerRequestContext[Any, Any]) -> UpstreamLink:
        session_id = ctx.request.session_id if isinstance(ctx.request, RequestInfo) else None
        link = self.links.of(session_id)
        if link is None:
            raise MCPError(code=INTERNAL_ERROR, message=f"{self.spec.name} has no process for this session")
        return link

    # -- the forwarding server --------------------------------------------------------------

    @property
    def server(self) -> Server[Any]:
        """The forwarding server, rebuilt once an upstream has said who it is: its identity, its
        instructions, and handlers for exactly the capabilities it declares (so the SDK refuses
        an undeclared method as the upstream itself would, and `server/discover` tells the truth)."""
        learned = self._learned()
        if learned is not self._built_for:
            self._server, self._built_for = self._build_server(learned), learned
        return self._server

    @server.setter
    def server(self, value: Server[Any]) -> None:
        self._server = value

    def _learned(self) -> types.InitializeResult | None:
        return next((link.initialized for link in self.links if link.initialized is not None), None)

    def _build_server(self, learned: types.InitializeResult | None = None) -> Server[Any]:
        caps = learned.capabilities if learned is not None else None
        handlers: dict[str, Any] = {}
        if caps is None or caps.tools is not None:
            handlers.update(
                on_list_tools=self._list_tools,
                on_call_tool=self._call_tool,
                get_tool_input_schema=self._tool_schemas.get,
            )
        else:  # no tools: `tools/list` is an empty list, not "Method not found" (multi-server clients ask everyone)
            handlers.update(on_list_tools=_no_tools)
        if caps is None or caps.resources is not None:
            handlers.update(
                on_list_resources=self._forward(lambda c, p: c.list_resources(params=p)),
                on_list_resource_templates=self._forward(lambda c, p: c.list_resource_templates(params=p)),
                on_read_resource=self._forward(lambda c, p: c.read_resource(p.uri)),
            )
            if caps is None or (caps.resources is not None and caps.resources.subscribe):
                handlers.update(on_subscribe_resource=self._subscribe, on_unsubscribe_resource=self._unsubscribe)
        if caps is None or caps.prompts is not None:
            handlers.update(
                on_list_prompts=self._forward(lambda c, p: c.list_prompts(params=p)),
                on_get_prompt=self._forward(lambda c, p: c.get_prompt(p.name, p.arguments)),
            )
        if caps is None or caps.completions is not None:
            handlers.update(
                on_completion=self._forward(lambda c, p: c.complete(p.ref, p.argument.model_dump(), p.context))
            )
        if caps is None or caps.logging is not None:
            handlers.update(on_set_logging_level=self._set_level)
        info = learned.server_info if learned is not None else None
        server = quiet_server(
            info.name if info is not None else self.spec.name,
            version=info.version if info is not None else self.spec.version,
            title=info.title if info is not None else self.spec.title,
            description=info.description if info is not None else self.spec.description,
            instructions=learned.instructions if learned is not None else self.spec.instructions,
            **handlers,
        )
        return curated(server, self.spec.curation)  # `tools: {include, exclude, rename, ...}`

    def _forward(self, call: Callable[[ClientSession, Any], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handler(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
            upstream_params = _without_envelope(params)
            try:
                with anyio.fail_after(self.spec.timeout):  # a hung upstream holds no request for ever
                    return await self._upstream(ctx, lambda client: call(client, upstream_params))
            except TimeoutError:
                message = f"{self.spec.name} did not answer within {self.spec.timeout:g} s"
                raise MCPError(code=REQUEST_TIMEOUT, message=message) from None

        return handler

    async def _upstream(
        self, ctx: ServerRequestContext[Any, Any], call: Callable[[ClientSession], Awaitable[Any]]
    ) -> Any:
        """Run `call` on the upstream; if it had forgotten our session, renew it and run `call` once more
        (the request never reached a handler, so repeating it is safe)."""
        link = self._link(ctx)
        try:
            async with link.calling(ctx) as client:
                return await call(client)
        except MCPError as exc:
            if not _session_lost(exc):
                raise
        logger.info("%s: the upstream lost our session; opening a new one", self.spec.name)
        link.supervisor.renew()
        if not await link.supervisor.wait_ready(CONNECT_TIMEOUT):
            raise MCPError(code=INTERNAL_ERROR, message=f"{self.spec.name} is {link.supervisor.state.value}")
        async with link.calling(ctx) as client:
            return await call(client)

    async def _list_tools(self, ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
        """`tools/list`, remembering each tool's input schema: a 2026-07-28 call's `Mcp-Param-*`
        headers are checked against it, as the upstream itself would."""
        result = await self._forward(lambda c, p: c.list_tools(params=p))(ctx, params)
        for tool in result.tools:
            self._tool_schemas[tool.name] = tool.input_schema
        return result

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
        async def progress(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        try:
            return await self._upstream(
                ctx,
                lambda client: client.call_tool(
                    params.name, params.arguments, read_timeout_seconds=self.spec.timeout, progress_callback=progress
                ),
            )
        except MCPError as exc:
            if exc.error.code != REQUEST_TIMEOUT:
                raise
            # The SDK client already told the upstream to stop (notifications/cancelled).
            text = f"Tool {params.name} timed out after {self.spec.timeout:g} s"
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> Any:
        result = await self._upstream(ctx, lambda client: _quietly(client.subscribe_resource, str(params.uri)))
        if isinstance(ctx.request, RequestInfo) and ctx.request.session_id:
            self._subscribers.setdefault(str(params.uri), set()).add(ctx.request.session_id)
        return result

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams) -> Any:
        subscribers = self._subscribers.get(str(params.uri), set())
        if isinstance(ctx.request, RequestInfo):
            subscribers.discard(ctx.request.session_id or "")
        if subscribers and self.links.shared is not None:
            return types.EmptyResult()  # other sessions on the shared upstream still want it
        self._subscribers.pop(str(params.uri), None)
        return await self._upstream(ctx, lambda client: _quietly(client.unsubscribe_resource, str(params.uri)))

    # -- what the upstream tells everyone -------------------------------------------------------

    async def upstream_notification(self, message: Any) -> None:
        """The `ClientSession` message handler: list_changed and resource updates to our sessions."""
        if isinstance(message, Exception):
            logger.debug("%s: upstream transport error: %s", self.spec.name, message)
            return
        root = getattr(message, "root", message)
        method = getattr(root, "method", None)
        if self.publish is None or method is None:
            return
        params = root.params.model_dump(by_alias=True, mode="json", exclude_none=True) if root.params else None
        if method == "notifications/resources/updated" and params is not None:
            await self.publish(method, params, self._subscribers.get(params.get("uri", ""), set()))
        elif method.endswith("/list_changed"):
            await self.publish(method, params, None)

    async def _set_level(self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams) -> Any:
        if self.links.shared is not None:
            return types.EmptyResult()  # one session may not change the level every session sees
        return await self._upstream(ctx, lambda client: _set_level(client, params))


# What a 2026-07-28 request carries in `_meta` about itself: it describes the downstream
# client's request, not ours, and a handshake-era upstream refuses requests that carry it.
_ENVELOPE = frozenset(
    {PROTOCOL_VERSION_META_KEY, CLIENT_INFO_META_KEY, CLIENT_CAPABILITIES_META_KEY, LOG_LEVEL_META_KEY}
)


def _without_envelope(params: Any) -> Any:
    """`params` with the downstream's 2026-07-28 envelope taken out of `_meta` (the rest stays)."""
    meta = getattr(params, "meta", None)
    if not meta or _ENVELOPE.isdisjoint(meta):
        return params
    kept = {key: value for key, value in meta.items() if key not in _ENVELOPE}
    return params.model_copy(update={"meta": kept or None})


async def _no_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[])


def _session_lost(exc: MCPError) -> bool:
    """An HTTP upstream answered 404 for our session: it restarted or expired it."""
    message = exc.error.message.lower()
    return "session" in message and ("not found" in message or "terminated" in message)


async def _set_level(client: ClientSession, params: types.SetLevelRequestParams) -> Any:
    return await _quietly(client.set_logging_level, params.level)


async def _quietly(method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Call a client method the SDK marks deprecated from 2026-07-28 on; the handshake revisions
    we proxy still have it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return await method(*args)
