"""`url:` a remote Streamable HTTP MCP server, proxied.

Headers come from the definition with `${VAR}` taken from the host environment. The
connection is one upstream session; when the upstream loses it (404) or restarts, the
supervisor opens a new one, and the request that found out is retried once on it, so a
client never sees a stale upstream session.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
from mcp.client.streamable_http import streamable_http_client

from mcp_tornado.backends.link import CONNECT_TIMEOUT
from mcp_tornado.backends.relay import StatelessRelay
from mcp_tornado.backends.upstream import UpstreamBackend, expand
from mcp_tornado.definitions import ServerSpec


class RemoteBackend(UpstreamBackend):
    kind = "url"

    def __init__(self, spec: ServerSpec, *, environ: Mapping[str, str]) -> None:
        remote = spec.remote
        assert remote is not None
        self.url = expand(remote.url, environ, spec, "url")
        self.headers = {k: expand(v, environ, spec, f"headers.{k}") for k, v in remote.headers.items()}
        super().__init__(spec, lazy=remote.lazy)
        self.relay = StatelessRelay(spec.name, self.url, self.headers, spec.timeout)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[Any, Any]]:
        timeout = httpx2.Timeout(self.spec.timeout, connect=CONNECT_TIMEOUT)
        async with httpx2.AsyncClient(headers=self.headers, timeout=timeout) as http:
            async with streamable_http_client(self.url, http_client=http) as streams:
                yield streams
