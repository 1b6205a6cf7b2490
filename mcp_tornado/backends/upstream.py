"""Backends that are other MCP servers: a stdio child (`command:`) or a remote URL (`url:`).

`UpstreamBackend` speaks to the upstream with the `mcp` client (`ClientSession`) and exposes it
as a lowlevel SDK `Server` whose handlers forward each request, so the transport cannot tell
it from an in-process server. It answers with the upstream's own capabilities and identity.
What the upstream sends back is routed: progress to the call that asked (by the SDK's
progress tokens), sampling/elicitation/roots requests to the session whose call is in flight,
log messages to the sessions with calls in flight (or all), list_changed to every session,
resource updates to the sessions that subscribed. A `Supervisor` keeps the connection alive;
`connect()` is the one thing a subclass supplies.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import ClientSession
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import INTERNAL_ERROR, REQUEST_TIMEOUT

from mcp_tornado.backends.base import Backend
from mcp_tornado.backends.supervisor import Supervisor
from mcp_tornado.errors import Unavailable
from mcp_tornado.hosting.spec import ServerSpec
from mcp_tornado.transport.sessions import RequestInfo

logger = logging.getLogger(__name__)

# How long the upstream may take to answer initialize (a cold `npx` start is slow).
CONNECT_TIMEOUT = 30.0

Publish = Callable[[str, Mapping[str, Any] | None, "set[str] | None"], Awaitable[None]]


class UpstreamBackend(Backend):
    kind = "upstream"

    def __init__(self, spec: ServerSpec, *, lazy: bool = False) -> None:
        self.spec = spec
        self.lazy = lazy
        self.client: ClientSession | None = None
        self.supervisor = Supervisor(spec.name, self._live)
        self._callers: list[ServerRequestContext[Any, Any]] = []
        self._subscribers: dict[str, set[str]] = {}
        # Set by the hosting server: sends a notification to its sessions (all, or the ids given).
        self.publish: Publish | None = None
        super().__init__(self._build_server())

    # -- what a subclass supplies -----------------------------------------------------------

    def connect(self) -> contextlib.AbstractAsyncContextManager[tuple[Any, Any]]:
        """A fresh connection: `(read_stream, write_stream)` for a `ClientSession`."""
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.lazy:
            self.supervisor.start()

    async def stop(self) -> None:
        await self.supervisor.stop()

    async def ready(self) -> None:
        """Wait for the upstream (starting it if lazy); `Unavailable` (503) while it is down."""
        if self.supervisor.running:
            return
        if self.supervisor.state in ("stopped", "starting") and await self.supervisor.wait_ready(CONNECT_TIMEOUT):
            return  # a first start (lazy, or the gateway just started): worth waiting for
        raise Unavailable(
            f"{self.spec.name} is {self.supervisor.state}: {self.supervisor.last_error or 'not ready'}",
            retry_after=round(self.supervisor.retry_after()),
        )

    def describe(self) -> dict[str, Any]:
        supervisor = self.supervisor
        return {
            "kind": self.kind,
            "state": supervisor.state,
            "last_error": supervisor.last_error,
            "restarts": supervisor.restarts,
        }

    async def _live(self, ready: Callable[[], None]) -> None:
        """One life of the connection, for the supervisor."""
        async with contextlib.AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self.connect())
            ended = anyio.Event()
            read = await stack.enter_async_context(_watched(read, ended))
            client = await stack.enter_async_context(
                ClientSession(
                    read,
                    write,
                    sampling_callback=self._sampling,
                    elicitation_callback=self._elicitation,
                    list_roots_callback=self._roots,
                    logging_callback=self._log,
                    message_handler=self._notification,
                )
            )
            with anyio.fail_after(CONNECT_TIMEOUT):
                init = await client.initialize()
            self.init_options = InitializationOptions(
                server_name=init.server_info.name,
                server_version=init.server_info.version,
                title=init.server_info.title,
                capabilities=init.capabilities,
                instructions=init.instructions,
            )
            self.client = client
            self.supervisor._end_life = ended.set
            ready()
            try:
                await ended.wait()
            finally:
                self.client = None
                self.supervisor._end_life = None

    # -- the forwarding server --------------------------------------------------------------

    def _build_server(self) -> Server[Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # logging/setLevel is still a 2025 method
            return Server(
                self.spec.name,
                version=self.spec.version,
                on_list_tools=self._forward(lambda c, p: c.list_tools(params=p)),
                on_call_tool=self._call_tool,
                on_list_resources=self._forward(lambda c, p: c.list_resources(params=p)),
                on_list_resource_templates=self._forward(lambda c, p: c.list_resource_templates(params=p)),
                on_read_resource=self._forward(lambda c, p: c.read_resource(p.uri)),
                on_subscribe_resource=self._subscribe,
                on_unsubscribe_resource=self._unsubscribe,
                on_list_prompts=self._forward(lambda c, p: c.list_prompts(params=p)),
                on_get_prompt=self._forward(lambda c, p: c.get_prompt(p.name, p.arguments)),
                on_completion=self._forward(lambda c, p: c.complete(p.ref, p.argument.model_dump(), p.context)),
                on_set_logging_level=self._forward(_set_level),
            )

    def _forward(self, call: Callable[[ClientSession, Any], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handler(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
            return await self._upstream(ctx, lambda client: call(client, params))

        return handler

    async def _upstream(
        self, ctx: ServerRequestContext[Any, Any], call: Callable[[ClientSession], Awaitable[Any]]
    ) -> Any:
        """Run `call` on the upstream; if it had forgotten our session, renew it and run `call` once more
        (the request never reached a handler, so repeating it is safe)."""
        try:
            async with self._calling(ctx) as client:
                return await call(client)
        except MCPError as exc:
            if not _session_lost(exc):
                raise
        logger.info("%s: the upstream lost our session; opening a new one", self.spec.name)
        self.supervisor.renew()
        if not await self.supervisor.wait_ready(CONNECT_TIMEOUT):
            raise MCPError(code=INTERNAL_ERROR, message=f"{self.spec.name} is {self.supervisor.state}")
        async with self._calling(ctx) as client:
            return await call(client)

    @contextlib.asynccontextmanager
    async def _calling(self, ctx: ServerRequestContext[Any, Any]) -> AsyncIterator[ClientSession]:
        client = self.client
        if client is None:
            raise MCPError(code=INTERNAL_ERROR, message=f"{self.spec.name} is {self.supervisor.state}")
        self._callers.append(ctx)
        try:
            yield client
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self.supervisor.kick()
            raise MCPError(code=INTERNAL_ERROR, message=f"{self.spec.name} is unreachable") from exc
        finally:
            self._callers.remove(ctx)

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
        async with self._calling(ctx) as client:
            result = await client.subscribe_resource(str(params.uri))
        if isinstance(ctx.request, RequestInfo) and ctx.request.session_id:
            self._subscribers.setdefault(str(params.uri), set()).add(ctx.request.session_id)
        return result

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams) -> Any:
        subscribers = self._subscribers.get(str(params.uri), set())
        if isinstance(ctx.request, RequestInfo):
            subscribers.discard(ctx.request.session_id or "")
        if subscribers:
            return types.EmptyResult()  # other sessions still want it
        self._subscribers.pop(str(params.uri), None)
        async with self._calling(ctx) as client:
            return await client.unsubscribe_resource(str(params.uri))

    # -- what the upstream sends us ----------------------------------------------------------

    def _asker(self) -> ServerRequestContext[Any, Any] | None:
        """The downstream request an upstream request belongs to: the latest call in flight."""
        return self._callers[-1] if self._callers else None

    async def _ask_downstream(self, request: Any, result_type: type[Any]) -> Any:
        ctx = self._asker()
        if ctx is None:
            return types.ErrorData(code=types.INVALID_REQUEST, message="no client request is in flight to ask")
        try:
            return await ctx.session.send_request(
                request, result_type, metadata=ServerMessageMetadata(related_request_id=ctx.request_id)
            )
        except MCPError as exc:
            return exc.error

    async def _sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        return await self._ask_downstream(types.CreateMessageRequest(params=params), types.CreateMessageResult)

    async def _elicitation(self, context: Any, params: types.ElicitRequestParams) -> Any:
        return await self._ask_downstream(types.ElicitRequest(params=params), types.ElicitResult)

    async def _roots(self, context: Any) -> Any:
        return await self._ask_downstream(types.ListRootsRequest(), types.ListRootsResult)

    async def _log(self, params: types.LoggingMessageNotificationParams) -> None:
        message = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        ctxs = list(self._callers)
        if ctxs:
            for ctx in ctxs:  # a log during calls belongs to them
                await ctx.session.send_notification(
                    types.LoggingMessageNotification(params=params), related_request_id=ctx.request_id
                )
        elif self.publish is not None:
            await self.publish("notifications/message", message, None)

    async def _notification(self, message: Any) -> None:
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


def _session_lost(exc: MCPError) -> bool:
    """An HTTP upstream answered 404 for our session: it restarted or expired it."""
    message = exc.error.message.lower()
    return "session" in message and ("not found" in message or "terminated" in message)


async def _set_level(client: ClientSession, params: types.SetLevelRequestParams) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return await client.set_logging_level(params.level)


@contextlib.asynccontextmanager
async def _watched(read: MemoryObjectReceiveStream[Any], ended: anyio.Event) -> AsyncIterator[Any]:
    """Relay `read`, setting `ended` when the upstream closes it (the child exited, the link broke)."""
    send, receive = anyio.create_memory_object_stream[Any](16)

    async def relay() -> None:
        try:
            async with send:
                async for item in read:
                    await send.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(relay)
        try:
            yield receive
        finally:
            tg.cancel_scope.cancel()
            receive.close()
