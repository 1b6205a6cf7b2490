"""`UpstreamLink`: one connection to an upstream MCP server, kept alive by a `Supervisor`.

A link is one child process (or one remote session) with the `mcp` client's `ClientSession`
on it. It is given how to connect and where the upstream's notifications go, and exposes
what it learned (`initialized`: the upstream's identity and capabilities). It remembers
which downstream requests are in flight on it, because that is where the upstream's own
requests (sampling, elicitation, roots) and its log messages belong.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import ClientSession
from mcp.client.session import MessageHandlerFnT
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import INTERNAL_ERROR

from mcp_tornado import tracing
from mcp_tornado.backends.context import may_log
from mcp_tornado.backends.supervisor import Life, Supervisor

logger = logging.getLogger(__name__)

# How long the upstream may take to answer initialize (a cold `npx` start is slow).
CONNECT_TIMEOUT = 30.0

Connect = Callable[[], contextlib.AbstractAsyncContextManager[tuple[Any, Any]]]
"""A fresh connection: `(read_stream, write_stream)` for a `ClientSession`."""
OnMessage = MessageHandlerFnT
"""The upstream's notifications (and transport errors), as the `ClientSession` hands them over."""


class UpstreamLink:
    def __init__(self, name: str, connect: Connect, on_message: OnMessage) -> None:
        self._connect = connect
        self._on_message = on_message
        self.client: ClientSession | None = None
        # What the upstream said about itself at its last initialize.
        self.initialized: types.InitializeResult | None = None
        self.supervisor = Supervisor(name, self._live)
        self.callers: list[ServerRequestContext[Any, Any]] = []

    @contextlib.asynccontextmanager
    async def calling(self, ctx: ServerRequestContext[Any, Any]) -> AsyncIterator[ClientSession]:
        """The client, with `ctx` registered as in flight on this link while it is used."""
        client = self.client
        if client is None:
            raise MCPError(code=INTERNAL_ERROR, message=f"{self.supervisor.name} is {self.supervisor.state.value}")
        self.callers.append(ctx)
        try:
            name = self.supervisor.name
            with tracing.client_span(f"{ctx.method} {name}", _span_attributes(ctx, name)):
                yield client
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self.supervisor.kick()
            raise MCPError(code=INTERNAL_ERROR, message=f"{self.supervisor.name} is unreachable") from exc
        finally:
            self.callers.remove(ctx)

    async def _live(self, life: Life) -> None:
        """One life of the connection, for the supervisor."""
        tracing.untraced()  # started by whichever request came first: not part of its trace
        async with contextlib.AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._connect())
            read = await stack.enter_async_context(_watched(read, life.end))
            client = await stack.enter_async_context(
                ClientSession(
                    read,
                    write,
                    sampling_callback=self._sampling,
                    elicitation_callback=self._elicitation,
                    list_roots_callback=self._roots,
                    logging_callback=self._log,
                    message_handler=self._on_message,
                )
            )
            with anyio.fail_after(CONNECT_TIMEOUT):
                self.initialized = await client.initialize()
            self.client = client
            life.ready()
            try:
                await life.wait_end()
            finally:
                self.client = None

    # -- the upstream's requests and logs go to the calls in flight ---------------------------

    def _one_session_calling(self) -> list[ServerRequestContext[Any, Any]]:
        """The calls in flight, if they all come from one session; else none.

        The upstream's requests and logs carry no link to the call they belong to, so on a link
        shared by several sessions they can only go where there is no doubt (`per_session: true`
        removes the doubt).
        """
        sessions = {getattr(ctx.request, "session_id", None) for ctx in self.callers}
        return list(self.callers) if len(sessions) == 1 else []

    async def _ask_downstream(self, request: Any, result_type: type[Any]) -> Any:
        callers = self._one_session_calling()
        if not callers:
            why = "calls from several sessions are in flight" if self.callers else "no client request is in flight"
            return types.ErrorData(code=types.INVALID_REQUEST, message=f"cannot tell which client to ask: {why}")
        ctx = callers[-1]
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
        if not self.callers:
            return types.ListRootsResult(roots=[])  # asked outside any call (e.g. at start): no client roots
        return await self._ask_downstream(types.ListRootsRequest(), types.ListRootsResult)

    async def _log(self, params: types.LoggingMessageNotificationParams) -> None:
        """A log during calls belongs to them, if they are one session's; otherwise it stays here."""
        for ctx in self._one_session_calling():
            if not may_log(ctx, params.level):  # the client's own log gate, as its server would apply it
                continue
            notification = types.LoggingMessageNotification(params=params)
            await ctx.session.send_notification(notification, related_request_id=ctx.request_id)
        if not self.callers:
            logger.debug("%s: upstream log outside any call: %s", self.supervisor.name, params.data)


def _span_attributes(ctx: ServerRequestContext[Any, Any], server: str) -> dict[str, Any]:
    """What an upstream call's trace span says: the server, the method, the tool."""
    tool = ctx.params.get("name") if ctx.method == "tools/call" and ctx.params else None
    return {"mcp_tornado.server": server, "mcp.method.name": ctx.method, "gen_ai.tool.name": tool}


@contextlib.asynccontextmanager
async def _watched(read: MemoryObjectReceiveStream[Any], on_close: Callable[[], None]) -> AsyncIterator[Any]:
    """Relay `read`, calling `on_close` when the upstream closes it (the child exited, the link broke)."""
    send, receive = anyio.create_memory_object_stream[Any](16)

    async def relay() -> None:
        try:
            async with send:
                async for item in read:
                    await send.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            on_close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(relay)
        try:
            yield receive
        finally:
            tg.cancel_scope.cancel()
            receive.close()
