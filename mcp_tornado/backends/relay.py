"""`StatelessRelay`: 2026-07-28 requests passed through to a remote upstream that speaks it.

A stateless request carries everything about its client (envelope, capabilities, log level,
`Mcp-Param-*` headers, `inputResponses` and `requestState` of a multi-round call), so the
most faithful proxy forwards it as it is and hands back what the upstream answered: its own
errors and HTTP status, caching hints, `InputRequiredResult`s, progress and logs. Only our
own credentials change: the client's token is for the gateway; the upstream gets the
definition's `headers`.

Whether the upstream speaks 2026-07-28 is asked once, with `server/discover`; one that does
not is served by translation onto the handshake-era link instead (see upstream.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx2
from httpx2 import EventSource
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
from mcp_types.version import LATEST_MODERN_VERSION

from mcp_tornado import __version__

logger = logging.getLogger(__name__)

# The client's headers an upstream needs to route and check a stateless request.
_PASSED_HEADERS = frozenset({"accept", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name"})
_PARAM_HEADER_PREFIX = "mcp-param-"
# How long the one-time `server/discover` probe may take.
PROBE_TIMEOUT = 10.0


@dataclasses.dataclass
class Relayed:
    """What the upstream answered: a complete JSON body, or the data of each SSE message."""

    status: int
    body: bytes | None = None
    events: AsyncIterator[bytes] | None = None


class StatelessRelay:
    def __init__(self, name: str, url: str, headers: Mapping[str, str], timeout: float) -> None:
        self._name = name
        self._url = url
        self._headers = dict(headers)
        self._timeout = timeout
        self._modern: bool | None = None  # unknown until probed

    async def speaks_modern(self) -> bool:
        """Whether the upstream serves 2026-07-28 itself (asked once; a failed probe says no, for now)."""
        if self._modern is None:
            self._modern = await self._probe()
        return self._modern

    async def _probe(self) -> bool:
        meta = {
            PROTOCOL_VERSION_META_KEY: LATEST_MODERN_VERSION,
            CLIENT_INFO_META_KEY: {"name": "mcp-tornado", "version": __version__},
            CLIENT_CAPABILITIES_META_KEY: {},
        }
        body = {"jsonrpc": "2.0", "id": "mcpt-probe", "method": "server/discover", "params": {"_meta": meta}}
        headers = {
            **self._headers,
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": LATEST_MODERN_VERSION,
            "Mcp-Method": "server/discover",
        }
        try:
            async with httpx2.AsyncClient(timeout=PROBE_TIMEOUT) as http:
                response = await http.post(self._url, json=body, headers=headers)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
                answer = json.loads(data[-1]) if data else {}
            else:
                answer = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            logger.info("%s: the upstream did not answer server/discover (%s); translating", self._name, exc)
            return False
        versions = (answer.get("result") or {}).get("supportedVersions") or []
        speaks = LATEST_MODERN_VERSION in versions
        logger.info("%s: the upstream %s 2026-07-28", self._name, "speaks" if speaks else "does not speak")
        return speaks

    @contextlib.asynccontextmanager
    async def forward(self, body: bytes, header_lines: Iterable[tuple[str, str]]) -> AsyncIterator[Relayed]:
        """POST `body` upstream with the client's routing headers; the answer, streamed."""
        headers = {
            name: value
            for name, value in header_lines
            if name.lower() in _PASSED_HEADERS or name.lower().startswith(_PARAM_HEADER_PREFIX)
        }
        headers.update(self._headers)
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(self._timeout)) as http:
            async with http.stream("POST", self._url, content=body, headers=headers) as response:
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    yield Relayed(response.status_code, events=_messages(response))
                else:
                    yield Relayed(response.status_code, body=await response.aread())


async def _messages(response: Any) -> AsyncIterator[bytes]:
    async for event in EventSource(response):
        if event.event == "message" and event.data:
            yield event.data.encode()
