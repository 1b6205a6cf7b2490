"""`url:` a remote Streamable HTTP MCP server, proxied.

The URL and headers come from the definition, with `${VAR}` taken from the variables the
operator lists (`mcp_tornado.expansion`). The connection is one upstream session; when the
upstream loses it (404) or restarts, the supervisor opens a new one, and the request that
found out is retried once on it, so a client never sees a stale upstream session.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from mcp.client.streamable_http import streamable_http_client

from mcp_tornado import tracing
from mcp_tornado.backends.link import CONNECT_TIMEOUT
from mcp_tornado.backends.relay import StatelessRelay
from mcp_tornado.backends.upstream import UpstreamBackend
from mcp_tornado.definitions import ServerSpec
from mcp_tornado.expansion import Variables


class RemoteBackend(UpstreamBackend):
    kind = "url"

    def __init__(self, spec: ServerSpec, *, variables: Variables) -> None:
        remote = spec.remote
        assert remote is not None

        def expand(value: str, *where: str) -> str:
            return variables.expand(value, source=spec.source, line=spec.lines.get(where), field=".".join(where))

        self.url = expand(remote.url, "url")
        self.headers = {key: expand(value, "headers", key) for key, value in remote.headers.items()}
        super().__init__(spec, lazy=remote.lazy)
        self.relay = StatelessRelay(spec.name, self.url, self.headers, spec.timeout)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[Any, Any]]:
        timeout = httpx2.Timeout(self.spec.timeout, connect=CONNECT_TIMEOUT)
        # Each request carries the calling request's trace context, when traced (`traceparent`).
        hooks = {"request": [tracing.inject_request]}
        async with httpx2.AsyncClient(headers=self.headers, timeout=timeout, event_hooks=hooks) as http:
            async with streamable_http_client(self.url, http_client=http) as streams:
                yield streams
