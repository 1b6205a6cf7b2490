"""`ToolContext`: the second argument of every in-process handler.

`handler(arguments, context)` learns who is calling (`api_key`, `user_id`, `server`,
`session_id`) and can talk back to the client while it works: `progress`, `log`, and (on
clients that offer them) `elicit` and `sample`. Async handlers `await` these; a sync handler,
which runs on a worker thread, gets a `SyncToolContext` whose same methods block until the
message is on its way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast, get_args

import mcp_types as types
from mcp.server.connection import allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp.shared.message import ServerMessageMetadata

from mcp_tornado.backends.rounds import NOTHING_ASKED, Asked
from mcp_tornado.request_info import RequestInfo

LOG_LEVELS: Final[tuple[str, ...]] = get_args(types.LoggingLevel)  # least to most severe, as the spec orders them


def may_log(ctx: ServerRequestContext[Any, Any], level: str) -> bool:
    """Whether a log message at `level` may go to the client of `ctx`'s request: at 2026-07-28
    only to requests that opted in (`_meta` logLevel), before that what logging/setLevel allows."""
    if level not in allowed_log_levels(ctx.protocol_version, (ctx.params or {}).get("_meta")):
        return False
    threshold = getattr(ctx.request, "log_level", None) or "debug"
    return LOG_LEVELS.index(level) >= LOG_LEVELS.index(threshold) if level in LOG_LEVELS else True


class ToolContext:
    """Who is calling, and a channel back to them for the duration of one request."""

    def __init__(
        self,
        ctx: ServerRequestContext[Any, Any],
        server_name: str,
        asked: Asked = NOTHING_ASKED,
        resource_updated: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._ctx = ctx
        self._resource_updated = resource_updated
        # Answers to what this handler asked for in its last `InputRequiredResult`, and the
        # `request_state` it left there (only ever state it minted itself: see backends/rounds.py).
        self.input_responses = asked.input_responses
        self.request_state = asked.request_state
        info = ctx.request if isinstance(ctx.request, RequestInfo) else None
        self._info = info
        self.server = server_name
        self.api_key: str | None = info.api_key if info else None
        self.user_id: str | None = info.user_id if info else None
        self.session_id: str | None = info.session_id if info else None
        self.request_id = ctx.request_id

    @property
    def client_capabilities(self) -> types.ClientCapabilities | None:
        """What the client declared it can do (at 2026-07-28, on this very request)."""
        return self._ctx.session.client_capabilities

    @property
    def session(self) -> Any:
        """The SDK's `ServerSession` for anything not covered here."""
        return self._ctx.session

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; sent only when the client asked for it with a progress token."""
        await self._ctx.session.report_progress(progress, total, message)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """Send a `notifications/message` to the client, honouring its `logging/setLevel`."""
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; one of {', '.join(LOG_LEVELS)}")
        if not may_log(self._ctx, level):
            return
        notification = types.LoggingMessageNotification(
            params=types.LoggingMessageNotificationParams(
                level=cast(types.LoggingLevel, level), data=data, logger=logger
            )
        )
        await self._ctx.session.send_notification(notification, related_request_id=self.request_id)

    async def resource_updated(self, uri: str) -> None:
        """Tell the clients subscribed to `uri` (resources/subscribe) that it changed."""
        if self._resource_updated is not None:
            await self._resource_updated(uri)

    async def close_stream(self) -> None:
        """End this call's SSE response now and go on working (SSE polling): a client of a
        revision that resumes (2025-11-25 and later) reconnects and receives the rest; for
        older clients this does nothing."""
        if self._ctx.close_sse_stream is not None:
            await self._ctx.close_sse_stream()

    async def elicit(self, message: str, requested_schema: dict[str, Any]) -> types.ElicitResult:
        """Ask the user for input (form mode); raises `MCPError` if the client cannot."""
        return await self._ctx.session.elicit_form(message, requested_schema, related_request_id=self.request_id)

    async def sample(self, prompt: str, *, max_tokens: int = 256, system_prompt: str | None = None) -> Any:
        """Ask the client's model for a completion of `prompt`."""
        # Sent as a plain request: the SDK's `create_message` warns that sampling leaves the 2026 revision.
        request = types.CreateMessageRequest(
            params=types.CreateMessageRequestParams(
                messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
                max_tokens=max_tokens,
                system_prompt=system_prompt,
            )
        )
        return await self._ctx.session.send_request(
            request, types.CreateMessageResult, metadata=ServerMessageMetadata(related_request_id=self.request_id)
        )


class SyncToolContext(ToolContext):
    """The same context for a handler on a worker thread: each call blocks until it is sent."""

    def __init__(
        self,
        ctx: ServerRequestContext[Any, Any],
        server_name: str,
        loop: asyncio.AbstractEventLoop,
        asked: Asked = NOTHING_ASKED,
        resource_updated: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(ctx, server_name, asked, resource_updated)
        self._loop = loop

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:  # type: ignore[override]
        self._run(ToolContext.progress(self, progress, total, message))

    def log(self, level: str, data: Any, logger: str | None = None) -> None:  # type: ignore[override]
        self._run(ToolContext.log(self, level, data, logger))

    def resource_updated(self, uri: str) -> None:  # type: ignore[override]
        self._run(ToolContext.resource_updated(self, uri))

    def close_stream(self) -> None:  # type: ignore[override]
        self._run(ToolContext.close_stream(self))

    def elicit(self, message: str, requested_schema: dict[str, Any]) -> types.ElicitResult:  # type: ignore[override]
        return self._run(ToolContext.elicit(self, message, requested_schema))

    def sample(self, prompt: str, *, max_tokens: int = 256, system_prompt: str | None = None) -> Any:
        return self._run(ToolContext.sample(self, prompt, max_tokens=max_tokens, system_prompt=system_prompt))
